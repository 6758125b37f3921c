"""`AnswerText`: an answer's token ids, as the text deltas a client sees.

Every backend streams an answer the same way: decode incrementally (never splitting a
character), end at the first stop string (engine/stops.py), and skip steps that carry nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.detokenizer import IncrementalDetokenizer
from engine.stops import StopCutter
from engine.types import Delta, TokenLogprob


class AnswerText:
    def __init__(self, decode: Callable[[Sequence[int]], str], stops: Sequence[str] = ()) -> None:
        self._detok = IncrementalDetokenizer(decode)
        self._cut = StopCutter(stops)

    @property
    def done(self) -> bool:
        """A stop string was reached: the caller ends the model's request now."""
        return self._cut.done

    def delta(self, token_ids: Sequence[int], finish_reason: str | None,
              logprobs: Sequence[TokenLogprob] = ()) -> Delta | None:
        """The delta to show for one step (None when it carries nothing)."""
        ids = tuple(token_ids)
        text = self._detok.push(ids)
        if finish_reason is not None:
            text += self._detok.flush()
        if not ids and finish_reason is None:
            return None
        return self._cut.push(Delta(text, ids, finish_reason, tuple(logprobs)))
