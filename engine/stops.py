"""`StopCutter`: ends an answer at the first stop string, for every backend alike.

vLLM's streaming-input sessions take no stop strings, so streamrag applies them itself, on the
decoded text: the answer ends just before the first occurrence, with `finish_reason="stop"`.
Text that could be the start of a stop string is held back until the next delta decides, so a
client never sees part of a stop string. The caller ends the model's request once `done`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from engine.types import Delta


class StopCutter:
    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""
        self.done = False

    def push(self, delta: Delta) -> Delta:
        """The part of `delta` to show; `finish_reason` "stop" when a stop string was reached."""
        if not self._stops:
            return delta
        text = self._held + delta.text
        self._held = ""
        cut = min((i for s in self._stops if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.done = True
            return replace(delta, text=text[:cut], finish_reason="stop")
        if delta.finish_reason is not None:
            return replace(delta, text=text)
        longest = max(map(len, self._stops))
        hold = next((n for n in range(min(len(text), longest - 1), 0, -1)
                     if any(s.startswith(text[-n:]) for s in self._stops)), 0)
        self._held = text[len(text) - hold:]
        return replace(delta, text=text[: len(text) - hold], finish_reason=None)
