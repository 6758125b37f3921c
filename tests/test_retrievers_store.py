"""Ingest and search on embedded Qdrant (memory and folder; a server when one is configured).

Real model, real corpus: questions taken from the Python reference must find their topic.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from retrievers.chunking import ChunkingConfig
from retrievers.embedder import Embedder
from retrievers.events import Chunk
from retrievers.ingest import (
    Document,
    IngestError,
    IngestReport,
    ingest,
    ingest_documents,
)
from retrievers.store import QdrantStore, StoreError
from tests.retrievers_fixtures import COLLECTION, REFERENCE_TOPICS, SMALL_TOPICS

# (question, the topic files that count as the right section)
QUESTIONS = [
    ("What does the finally clause do when the try suite raises an exception?", {"try.md"}),
    (
        "How does the with statement call __enter__ and __exit__ on a context manager?",
        {"with.md", "context-managers.md"},
    ),
    ("When is the else clause of a for loop executed?", {"for.md"}),
    ("What happens to assert statements when Python runs with optimization?", {"assert.md"}),
    ("How does a yield expression make a function a generator?", {"yield.md"}),
    ("How do I chain exceptions with raise ... from?", {"raise.md"}),
    ("How does the import statement find and load a module?", {"import.md"}),
    ("How are default parameter values evaluated in a function definition?", {"function.md"}),
    ("What does the break statement do inside a loop?", {"break.md"}),
    ("How does del remove a name binding?", {"del.md"}),
]
TRY_QUESTION = QUESTIONS[0][0]


def topics_of(chunks: Sequence[Chunk]) -> list[str]:
    return [chunk.source.rsplit("/", 1)[-1] for chunk in chunks]


@pytest.mark.parametrize(("question", "expected"), QUESTIONS, ids=[sorted(e)[0] for _, e in QUESTIONS])
async def test_questions_from_the_reference_find_their_section_in_the_top_3(
    reference_store: tuple[QdrantStore, IngestReport], embedder: Embedder, question: str, expected: set[str]
) -> None:
    store, _ = reference_store
    [vector] = await embedder.aembed([question])
    top = await store.search(COLLECTION, vector, 3)
    assert expected & set(topics_of(top)), f"{question!r} found {topics_of(top)}"
    assert top[0].score is not None and top[0].score >= top[-1].score
    assert top[0].metadata["collection"] == COLLECTION and top[0].metadata["title"]


async def test_reference_ingest_counts(reference_store: tuple[QdrantStore, IngestReport]) -> None:
    store, report = reference_store
    assert report.documents == len(REFERENCE_TOPICS)
    assert report.embedded == report.chunks > report.documents
    assert await store.count(COLLECTION) == report.chunks


async def test_ingest_then_reingest_adds_nothing(
    any_store: QdrantStore, embedder: Embedder, small_docs: Path
) -> None:
    first = await ingest([small_docs], collection="small", store=any_store, embedder=embedder, progress=False)
    assert first.documents == len(SMALL_TOPICS) and first.embedded == first.chunks
    assert await any_store.count("small") == first.chunks

    again = await ingest([small_docs], collection="small", store=any_store, embedder=embedder, progress=False)
    assert (again.chunks, again.embedded, again.unchanged, again.removed) == (
        first.chunks,
        0,
        first.chunks,
        0,
    )
    assert await any_store.count("small") == first.chunks

    [vector] = await embedder.aembed([TRY_QUESTION])
    assert "try.md" in topics_of(await any_store.search("small", vector, 3))


async def test_a_folder_store_survives_closing_and_reopening(
    tmp_path: Path, embedder: Embedder, small_docs: Path
) -> None:
    location = tmp_path / "qdrant"
    async with await QdrantStore.open(location) as store:
        report = await ingest(
            [small_docs], collection="small", store=store, embedder=embedder, progress=False
        )
    async with await QdrantStore.open(location) as reopened:
        assert await reopened.collection_names() == ["small"]
        assert await reopened.count("small") == report.chunks
        [vector] = await embedder.aembed([TRY_QUESTION])
        assert "try.md" in topics_of(await reopened.search("small", vector, 3))
        # The same folder spelled differently is the same documents: still nothing to add.
        again = await ingest(
            [small_docs / ".." / small_docs.name],
            collection="small",
            store=reopened,
            embedder=embedder,
            progress=False,
        )
        assert again.embedded == 0 and await reopened.count("small") == report.chunks


async def test_a_shortened_document_loses_its_stale_chunks(
    tmp_path: Path, embedder: Embedder, small_docs: Path
) -> None:
    folder = tmp_path / "docs"
    shutil.copytree(small_docs, folder)
    chunking = ChunkingConfig(size=1500, overlap=0)  # few, large chunks: cheap to embed
    async with await QdrantStore.open(":memory:") as store:
        first = await ingest(
            [folder / "try.md"],
            collection="c",
            store=store,
            embedder=embedder,
            chunking=chunking,
            progress=False,
        )
        text = (folder / "try.md").read_text(encoding="utf-8")
        (folder / "try.md").write_text(text[: len(text) // 3], encoding="utf-8")
        second = await ingest(
            [folder / "try.md"],
            collection="c",
            store=store,
            embedder=embedder,
            chunking=chunking,
            progress=False,
        )
        assert second.chunks < first.chunks and second.removed == first.chunks - second.chunks
        assert second.embedded <= 1  # only the chunk cut at the new end changed
        assert await store.count("c") == second.chunks


async def test_a_collection_of_another_embedding_size_is_refused(
    any_store: QdrantStore, embedder: Embedder
) -> None:
    await any_store.ensure_collection("other", 8, "Cosine")
    with pytest.raises(StoreError, match="use another --collection"):
        await any_store.ensure_collection("other", embedder.dim, embedder.distance)
    assert await any_store.ensure_collection("other", 8, "Cosine") is False


async def test_searching_a_missing_collection_says_how_to_create_it(any_store: QdrantStore) -> None:
    with pytest.raises(StoreError, match="streamrag ingest"):
        await any_store.search("nowhere", [0.0] * 384, 3)


async def test_bad_paths_are_named(tmp_path: Path, embedder: Embedder) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    async with await QdrantStore.open(":memory:") as store:
        for path, message in [
            (tmp_path / "missing", "does not exist"),
            (tmp_path / "empty", "no text or markdown files"),
            (tmp_path / "image.png", "not a text or markdown file"),
        ]:
            with pytest.raises(IngestError, match=message):
                await ingest([path], collection="c", store=store, embedder=embedder, progress=False)


async def test_documents_without_files_are_ingested_under_their_ids(embedder: Embedder) -> None:
    """The app's upload path: texts with ids, no files."""
    documents = [
        Document("notes/a", Path("notes/a"), "The try statement runs a finally clause on the way out.", "a"),
        Document(
            "notes/b", Path("notes/b.md"), "# Loops\n\nA for loop's else clause runs without break.", "Loops"
        ),
    ]
    async with await QdrantStore.open(":memory:") as store:
        report = await ingest_documents(
            documents, collection="notes", store=store, embedder=embedder, progress=False
        )
        assert (report.documents, report.chunks, report.embedded) == (2, 2, 2)
        again = await ingest_documents(
            documents, collection="notes", store=store, embedder=embedder, progress=False
        )
        assert again.embedded == 0 and await store.count("notes") == 2
        [vector] = await embedder.aembed(["When does the else of a for loop run?"])
        best = (await store.search("notes", vector, 1))[0]
        assert (best.source, best.metadata["section"]) == ("notes/b", "Loops")
        with pytest.raises(IngestError, match="more than once"):
            await ingest_documents(documents * 2, collection="notes", store=store, embedder=embedder)
