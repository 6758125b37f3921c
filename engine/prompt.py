"""`PromptTemplate`: renders a session's prompt so that what is prefilled never changes.

Only tokens rendered identically from the first one on can be reused, so the prompt is laid
out stable-first and tokenized piece by piece:

    [ prefix: chat template up to the context (system, earlier turns, question, "Context:") ]
    [ chunk 1 ][ chunk 2 ] ... [ chunk n ]          <- appended / re-ranked as they come
    [ closing: instruction, end of user turn, assistant turn ]   <- only at the gate

The chat template is rendered once with a sentinel where the context goes and split there.
Each chunk is tokenized on its own (with a fixed separator), so appending chunk n+1 never
re-tokenizes chunks 1..n: the prompt's token ids are the concatenation of the pieces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Turn = tuple[str, str]  # (role, text) of an earlier chat turn: "user", "assistant" or "tool"
HISTORY_ROLES = frozenset({"user", "assistant", "tool"})
_SENTINEL = "<<<streamrag-context>>>"
DEFAULT_SYSTEM = (
    "You answer questions using the numbered context passages you are given. "
    "If they do not contain the answer, say so."
)


def check_history(history: Sequence[Turn]) -> tuple[Turn, ...]:
    """`history` as a tuple of (role, text), or a ValueError naming what is wrong."""
    turns = tuple(history)
    for i, turn in enumerate(turns):
        if not (isinstance(turn, tuple) and len(turn) == 2 and turn[0] in HISTORY_ROLES and isinstance(turn[1], str)):
            raise ValueError(f"history[{i}]: expected a (role, text) pair with role one of {sorted(HISTORY_ROLES)}, "
                             f"got {turn!r}")
    return turns


@dataclass(frozen=True)
class RenderedPrompt:
    """The fixed parts of one session's prompt, as token ids."""

    prefix_ids: tuple[int, ...]
    closing_ids: tuple[int, ...]


class PromptTemplate:
    """Turns (system, question, chunks) into token ids with the model's own chat template."""

    def __init__(self, tokenizer) -> None:
        # A Hugging Face tokenizer with a chat template (both prepared models have one).
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the model's tokenizer has no chat template; streamrag needs one")
        self._tokenizer = tokenizer

    @property
    def tokenizer(self):
        return self._tokenizer

    def render(self, question: str, system: str | None = None, history: Sequence[Turn] = ()) -> RenderedPrompt:
        """`history`: the conversation's earlier turns, oldest first, placed before the question."""
        user = f"{question.strip()}\n\nContext:\n{_SENTINEL}\nAnswer the question above using the context."
        messages = [
            {"role": "system", "content": system if system is not None else DEFAULT_SYSTEM},
            *({"role": role, "content": text} for role, text in history),
            {"role": "user", "content": user},
        ]
        text = self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        before, sep, after = text.partition(_SENTINEL)
        if not sep:
            raise ValueError("the chat template dropped the user message; cannot place context")
        return RenderedPrompt(prefix_ids=tuple(self.encode(before)), closing_ids=tuple(self.encode(after)))

    def chat_ids(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> list[int]:
        """A plain chat (no context) with the model's chat template, ready for the assistant turn."""
        text = self._tokenizer.apply_chat_template(messages, tokenize=False,
                                                   add_generation_prompt=add_generation_prompt)
        return self.encode(text)  # the rendered text carries BOS and role markers itself

    def chunk_ids(self, text: str, position: int) -> list[int]:
        """Token ids of the chunk shown at 1-based `position` in the context."""
        return self.encode(f"[{position}] {text.strip()}\n")

    def encode(self, text: str) -> list[int]:
        # add_special_tokens=False: the template text already carries BOS and role markers.
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def decode(self, token_ids) -> str:
        return self._tokenizer.decode(list(token_ids), skip_special_tokens=True)
