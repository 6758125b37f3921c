"""Chunking, the sample corpus and the data folders: pure functions over the real Python reference."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import pytest

from retrievers import paths
from retrievers.chunking import ChunkingConfig, ChunkingError, chunk_id, split_text
from retrievers.corpus import (
    UnknownCorpusError,
    python_doc_topics,
    topic_markdown,
    write_corpus,
    write_python_docs,
)


@pytest.fixture(scope="module")
def try_topic() -> str:
    return topic_markdown(python_doc_topics()["try"])


def test_spans_cover_the_text_within_size_and_overlap(try_topic: str) -> None:
    config = ChunkingConfig(size=500, overlap=80)
    spans = split_text(try_topic, config, markdown=True)
    assert len(spans) > 5
    assert [span.index for span in spans] == list(range(len(spans)))
    for span, following in pairwise(spans):
        assert len(span.text) <= config.size
        assert try_topic[span.start : span.start + len(span.text)] == span.text
        end = span.start + len(span.text)
        # Neighbours share text (the overlap) but never more than `overlap` characters of it.
        assert end - config.overlap <= following.start <= end
    # Every word of the document is in some chunk.
    covered = " ".join(span.text for span in spans)
    assert set(re.findall(r"\w+", try_topic)) <= set(re.findall(r"\w+", covered))


def test_cuts_fall_between_words(try_topic: str) -> None:
    for span in split_text(try_topic, ChunkingConfig(size=300, overlap=60)):
        before = try_topic[span.start - 1] if span.start else " "
        assert before.isspace(), f"span {span.index} starts inside a word: {span.text[:20]!r}"


def test_markdown_spans_know_their_section(try_topic: str) -> None:
    spans = split_text(try_topic, ChunkingConfig(), markdown=True)
    assert spans[0].section == 'The "try" statement'
    assert any(span.section == '"finally" clause' for span in spans)
    assert all(span.section is None for span in split_text(try_topic, ChunkingConfig()))


def test_splitting_is_deterministic_and_ids_are_stable(try_topic: str) -> None:
    config = ChunkingConfig()
    assert split_text(try_topic, config) == split_text(try_topic, config)
    assert chunk_id("python-docs/try.md", 3) == chunk_id("python-docs/try.md", 3)
    assert chunk_id("python-docs/try.md", 3) != chunk_id("python-docs/try.md", 4)


def test_whitespace_only_text_has_no_spans() -> None:
    assert split_text(" \n\n \t", ChunkingConfig()) == []


@pytest.mark.parametrize(
    ("size", "overlap", "field"), [(10, 0, "size"), (700, 400, "overlap"), (700, -1, "overlap")]
)
def test_bad_chunking_settings_name_the_field(size: int, overlap: int, field: str) -> None:
    with pytest.raises(ChunkingError, match=f"chunk {field}"):
        ChunkingConfig(size=size, overlap=overlap)


def test_python_docs_corpus_is_every_reference_topic_as_markdown(tmp_path: Path) -> None:
    topics = python_doc_topics()
    report = write_corpus("python-docs", tmp_path)
    files = sorted(tmp_path.glob("*.md"))
    assert report.documents == len(topics) == len(files)
    assert len(topics) >= 70 and report.characters > 400_000
    text = (tmp_path / "try.md").read_text(encoding="utf-8")
    assert text.startswith('# The "try" statement\n')
    assert '\n## "finally" clause\n' in text
    # A second run rewrites nothing.
    stamps = {file: file.stat().st_mtime_ns for file in files}
    write_python_docs(tmp_path)
    assert {file: file.stat().st_mtime_ns for file in files} == stamps


def test_unknown_corpus_and_topics_are_named(tmp_path: Path) -> None:
    with pytest.raises(UnknownCorpusError, match="python-docs"):
        write_corpus("wikipedia", tmp_path)
    with pytest.raises(UnknownCorpusError, match="trye"):
        write_python_docs(tmp_path, ["try", "trye"])


def test_data_and_cache_folders_follow_the_environment_then_the_checkout(tmp_path: Path) -> None:
    env = {paths.DATA_DIR_ENV: str(tmp_path / "d"), paths.CACHE_DIR_ENV: str(tmp_path / "c")}
    assert paths.data_dir(env) == tmp_path / "d"
    assert paths.cache_dir(env) == tmp_path / "c"
    root = paths.project_root()
    assert root is not None and (root / "retrievers").is_dir()  # the tests run from a checkout
    assert paths.data_dir({}) == root / "data"
    assert paths.cache_dir({}) == root / ".cache"
    assert paths.qdrant_path(tmp_path) == tmp_path / "qdrant"
