"""Token logprobs in OpenAI's two shapes, as vLLM's server writes them.

    chat         {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]}
    completions  {"tokens": [...], "token_logprobs": [...], "top_logprobs": [{token: logprob}], "text_offset": [...]}

A token is named by its text, or "token_id:<id>" when the request sent vLLM's
`return_tokens_as_token_ids` (what streamrag's own HTTP client asks, to map logprobs back to
ids exactly). `text_offset` counts characters of the answer before each token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.logprobs import token_name
from engine.types import TokenLogprob


class LogprobsFormat:
    def __init__(self, kind: str, token_text: Callable[[int], str], by_id: bool = False) -> None:
        self.kind = kind
        self._text = token_text
        self._name = token_name if by_id else token_text
        self._offset = 0

    def _entry(self, token_id: int, logprob: float) -> dict:
        name = self._name(token_id)
        return {"token": name, "logprob": logprob, "bytes": list(name.encode("utf-8"))}

    def render(self, logprobs: Sequence[TokenLogprob]) -> dict | None:
        """One delta's logprobs (None when there are none: the request asked for none)."""
        if not logprobs:
            return None
        if self.kind == "chat":
            return {"content": [{**self._entry(t.token_id, t.logprob),
                                 "top_logprobs": [self._entry(i, lp) for i, lp in t.top]} for t in logprobs]}
        offsets = []
        for t in logprobs:
            offsets.append(self._offset)
            self._offset += len(self._text(t.token_id))
        return {"tokens": [self._name(t.token_id) for t in logprobs],
                "token_logprobs": [t.logprob for t in logprobs],
                "top_logprobs": [{self._name(i): lp for i, lp in t.top} for t in logprobs],
                "text_offset": offsets}

    @staticmethod
    def merge(parts: Sequence[dict]) -> dict | None:
        """The logprobs of a whole answer from its deltas' (the non-streaming response)."""
        if not parts:
            return None
        return {key: [item for part in parts for item in part[key]] for key in parts[0]}
