"""Chunking: a document's text cut into overlapping pieces of about `size` characters.

Cuts fall on the strongest boundary in the second half of the window (blank line, then line
break, then sentence end, then space), so a chunk rarely stops mid-word and usually stops at a
paragraph. The next chunk starts `overlap` characters before the cut, moved forward to a word
start, so a sentence cut in two is still whole in one of the chunks:

    text   |-------------------------------------------------------------|
    span 0 |=============cut|            size ≥ cut - start ≥ size / 2
    span 1            |ovl|==============cut|
    span 2                           |ovl|===============|   (end of text)

Spans keep their character offset, so a chunk can be traced back to its document. Markdown
headings are remembered so each span knows the section it starts in.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from retrievers.errors import RetrievalError

# Strongest first. A cut is placed right after the separator.
_BREAKS = ("\n\n", "\n", ". ", " ")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
# Fixed forever: changing it would change every chunk id and duplicate every stored collection.
_ID_NAMESPACE = uuid.UUID("5a1c3f0e-7b4d-4c2a-9e61-2f0d8b6a9c13")


class ChunkingError(RetrievalError):
    """A chunking setting out of range."""


@dataclass(frozen=True)
class ChunkingConfig:
    """`size`: the most characters in a chunk; `overlap`: characters repeated from the previous one.

    700/100 fits nine chunks in ten of the Python reference (median 157 tokens) inside
    all-MiniLM-L6-v2's 256-token window, past which the model ignores the rest of a chunk; only
    symbol-dense tables run longer.
    """

    size: int = 700
    overlap: int = 100

    def __post_init__(self) -> None:
        if self.size < 64:
            raise ChunkingError(f"chunk size must be at least 64 characters, got {self.size}")
        if not 0 <= self.overlap <= self.size // 2:
            raise ChunkingError(
                f"chunk overlap must be between 0 and half the chunk size ({self.size // 2}), "
                f"got {self.overlap}: lower the overlap or raise the size"
            )


@dataclass(frozen=True)
class TextSpan:
    """One chunk of a document: its position in the document and the section it starts in."""

    index: int
    start: int
    text: str
    section: str | None = None


def split_text(text: str, config: ChunkingConfig, *, markdown: bool = False) -> list[TextSpan]:
    """Cut `text` into spans; whitespace-only text has none. Deterministic for a given input."""
    headings = _headings(text) if markdown else []
    spans: list[TextSpan] = []
    start = _skip_space(text, 0)
    while start < len(text):
        end = min(start + config.size, len(text))
        if end < len(text):
            end = _cut(text, start + config.size // 2, end)
        piece = text[start:end].rstrip()
        if piece:
            spans.append(TextSpan(len(spans), start, piece, _section(headings, start)))
        if end >= len(text):
            break
        start = _skip_space(text, _overlap_start(text, end, config.overlap))
    return spans


def chunk_id(document: str, index: int) -> str:
    """The stable id (a UUID, as Qdrant wants) of chunk `index` of `document` (a path or URL)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{document}#{index}"))


def content_id(text: str) -> str:
    """A stable id for a text that comes without one: equal texts get equal ids."""
    return str(uuid.uuid5(_ID_NAMESPACE, text))


def _cut(text: str, lowest: int, end: int) -> int:
    """The position right after the strongest break in text[lowest:end], or `end` if none."""
    for separator in _BREAKS:
        found = text.rfind(separator, lowest, end)
        if found != -1:
            return found + len(separator)
    return end


def _overlap_start(text: str, end: int, overlap: int) -> int:
    """Where the next span starts: `overlap` before `end`, moved forward past a partial word."""
    if overlap == 0:
        return end
    start = end - overlap
    space = re.compile(r"\s").search(text, start, end)
    # No whitespace in the overlap: one long token; repeating a fragment of it helps nobody.
    return space.end() if space else end


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _headings(text: str) -> list[tuple[int, str]]:
    return [(match.start(), match.group(2).strip()) for match in _HEADING.finditer(text)]


def _section(headings: list[tuple[int, str]], position: int) -> str | None:
    """The last heading at or before `position`."""
    current = None
    for offset, title in headings:
        if offset > position:
            break
        current = title
    return current
