"""`IncrementalDetokenizer`: token ids in, text deltas out, never splitting a character.

The engine decodes its own tokens instead of using vLLM's text: in a streaming-input session
vLLM's detokenizer has also seen the throw-away tokens sampled after each context chunk.
"""

from __future__ import annotations


class IncrementalDetokenizer:
    def __init__(self, decode) -> None:
        self._decode = decode  # token ids -> text (special tokens skipped)
        self._ids: list[int] = []
        self._emitted = 0  # characters of the decoded text already handed out

    def push(self, token_ids) -> str:
        """Add tokens; return the text they complete (may be "" mid-character)."""
        self._ids.extend(token_ids)
        text = self._decode(self._ids)
        # A trailing U+FFFD means a multi-byte character is still incomplete: hold it back.
        stable = len(text.rstrip("\ufffd"))
        delta = text[self._emitted : stable]
        self._emitted = max(self._emitted, stable)
        return delta

    def flush(self) -> str:
        """Whatever is left at the end, incomplete characters included."""
        text = self._decode(self._ids)
        delta = text[self._emitted :]
        self._emitted = len(text)
        return delta
