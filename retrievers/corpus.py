"""Sample corpora: real documents written to disk for the demo, the tests and the benchmarks.

`python-docs` is the Python language reference as CPython ships it for `help()`:
`pydoc_data.topics` holds the reference's topics ("try", "with", "for", "class", ...) as plain
text with reStructuredText-style underlined headings. Each topic becomes one markdown file, its
headings turned into `#`, `##`, `###`, so the chunker knows which section a chunk belongs to.
On CPython 3.11 that is 79 topics and about 465k characters; the exact set follows the running
interpreter, which is why the files are generated rather than checked in.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from retrievers.errors import RetrievalError

PYTHON_DOCS = "python-docs"
CORPORA = (PYTHON_DOCS,)

# Underline character -> markdown heading level, as the reference's sources use them.
_LEVELS = {"*": "#", "=": "##", "-": "###", "~": "####"}
_UNDERLINE = re.compile(r"^([*=\-~])\1*$")


class UnknownCorpusError(RetrievalError):
    """A corpus name that is not one of CORPORA."""


@dataclass(frozen=True)
class CorpusReport:
    """What was written: one file per document."""

    name: str
    folder: Path
    documents: int
    characters: int
    python_version: str


def write_corpus(name: str, folder: Path) -> CorpusReport:
    """Write the corpus called `name` into `folder` (created if missing, files overwritten)."""
    if name != PYTHON_DOCS:
        raise UnknownCorpusError(f"corpus {name!r} is unknown: choose one of {list(CORPORA)}")
    return write_python_docs(folder)


def python_doc_topics() -> dict[str, str]:
    """The reference topics of the running interpreter, by topic name."""
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # some distributions split pydoc_data into its own package
        raise UnknownCorpusError(
            f"corpus {PYTHON_DOCS!r} needs the standard library's pydoc_data, which this Python "
            "lacks: install your distribution's full Python standard library"
        ) from exc
    return dict(sorted(topics.items()))


def write_python_docs(folder: Path, topics: Iterable[str] | None = None) -> CorpusReport:
    """One `<topic>.md` per reference topic in `folder`; `topics` picks some (tests, small demos)."""
    every = python_doc_topics()
    chosen = sorted(every if topics is None else set(topics))
    unknown = [topic for topic in chosen if topic not in every]
    if unknown:
        raise UnknownCorpusError(f"no reference topics named {unknown}: pick among {list(every)}")
    folder.mkdir(parents=True, exist_ok=True)
    characters = 0
    for topic in chosen:
        document = topic_markdown(every[topic])
        characters += len(document)
        _write_if_changed(folder / f"{topic}.md", document)
    version = ".".join(str(part) for part in sys.version_info[:3])
    return CorpusReport(PYTHON_DOCS, folder, len(chosen), characters, version)


def topic_markdown(text: str) -> str:
    """A topic's text with underlined headings turned into markdown headings; nothing else moves."""
    lines = text.strip("\n").split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        below = lines[index + 1] if index + 1 < len(lines) else ""
        if line.strip() and not line.startswith(" ") and _is_underline(below, line):
            out.append(f"{_LEVELS[below[0]]} {line.strip()}")
            index += 2
            continue
        out.append(line)
        index += 1
    return "\n".join(out) + "\n"


def _is_underline(line: str, title: str) -> bool:
    # The underline is as long as the title; checking the length keeps a rule of dashes inside
    # a code sample from turning the line above it into a heading.
    return bool(_UNDERLINE.match(line)) and len(line) == len(title.rstrip())


def _write_if_changed(path: Path, text: str) -> None:
    # Leaves unchanged files untouched so a second run changes no modification time.
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    path.write_text(text, encoding="utf-8")
