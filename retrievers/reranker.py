"""`Reranker`: scores (question, passage) pairs together; `CrossEncoder` is one from a model folder.

A cross-encoder reads the question and a passage in one pass, so it judges relevance better than
comparing two separately made embeddings, at the cost of one model call per candidate. That cost
is why it is the last stage of `StagedRetriever`: the engine is already prefilling the earlier
stages' ranking while it runs.

`CrossEncoder.load(folder)` takes a Hugging Face sequence-classification model saved in a folder
(for example an MS MARCO MiniLM cross-encoder); nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from retrievers.errors import RetrievalError


class RerankerError(RetrievalError):
    """The reranker's model folder cannot be loaded."""


class Reranker(Protocol):
    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        """Relevance of each passage to `question`, higher is better (blocking: run it in a thread)."""
        ...


class CrossEncoder:
    """A sequence-classification model scoring (question, passage) pairs, on the CPU."""

    def __init__(self, tokenizer, model, max_length: int, batch_size: int) -> None:
        self._tokenizer = tokenizer
        self._model = model
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load(cls, folder: str | Path, *, max_length: int = 512, batch_size: int = 16) -> CrossEncoder:
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise RerankerError(f"reranker model: {folder} holds no config.json; give a folder with a "
                                "Hugging Face sequence-classification model (a cross-encoder)")
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as error:
            raise RerankerError(f"reranker model: cannot load {folder}: {error}") from error
        model.eval()
        return cls(tokenizer, model, min(max_length, tokenizer.model_max_length), batch_size)

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        import torch

        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(passages), self.batch_size):
                batch = list(passages[start:start + self.batch_size])
                inputs = self._tokenizer([question] * len(batch), batch, padding=True, truncation=True,
                                         max_length=self.max_length, return_tensors="pt")
                logits = self._model(**inputs).logits.float()
                # One logit: a relevance score (sigmoid to 0..1). Two: (not relevant, relevant).
                probs = logits[:, 0].sigmoid() if logits.shape[1] == 1 else logits.softmax(-1)[:, -1]
                scores.extend(probs.tolist())
        return scores
