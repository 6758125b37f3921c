"""Ingest: text and markdown files into a Qdrant collection, idempotently.

    files ─read─▶ documents ─split─▶ spans ─id, hash─▶ plan ─┬─ unchanged: skipped
                                                             ├─ new or changed: embedded, upserted
                                      stored points of these ┘
                                      documents not in plan ──▶ deleted (a document got shorter)

Ids are stable across runs: a chunk's id is a UUID derived from its document id and its index,
and a document's id is its path relative to the folder given (prefixed with that folder's name),
or the file name for a file given directly. Re-ingesting the same folder therefore rewrites
nothing: every chunk's stored content hash matches and no vector is computed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from retrievers.chunking import ChunkingConfig, chunk_id, split_text
from retrievers.embedder import Embedder
from retrievers.errors import RetrievalError
from retrievers.sharded import shard_names, shard_of
from retrievers.store import DOC_ID, SOURCE, TEXT, Point, QdrantStore

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
MARKDOWN_SUFFIXES = (".md", ".markdown")
HASH = "content_hash"


class IngestError(RetrievalError):
    """A path or document that cannot be ingested, or an ingest setting out of range."""


@dataclass(frozen=True)
class Document:
    """A text to ingest. `id` names it in the collection (chunk ids derive from it)."""

    id: str
    path: Path
    text: str
    title: str


@dataclass(frozen=True)
class IngestReport:
    """What one ingest did. `embedded + unchanged == chunks`; `removed` were stale chunks."""

    collection: str
    shards: tuple[str, ...]
    documents: int
    chunks: int
    embedded: int
    unchanged: int
    removed: int
    seconds: float


def discover(paths: Sequence[Path]) -> list[Document]:
    """The documents under `paths` (files, or folders searched recursively), in a stable order."""
    if not paths:
        raise IngestError("no PATH given: pass text or markdown files, or folders holding them")
    documents: dict[str, Document] = {}
    for root in paths:
        root = Path(root).expanduser()
        for doc_id, path in _files(root):
            if doc_id in documents and documents[doc_id].path.resolve() != path.resolve():
                raise IngestError(
                    f"{path} and {documents[doc_id].path} would both be document {doc_id!r}: "
                    "ingest their folders instead, or ingest them into different collections"
                )
            documents.setdefault(doc_id, _read(doc_id, path))
    return list(documents.values())


def plan(documents: Sequence[Document], chunking: ChunkingConfig, model: str) -> list[tuple[Point, str]]:
    """Each chunk to store, without its vector yet, and the text to embed for it.

    The embedded text leads with the document title and section: a chunk deep in the "try"
    topic often never says "try", and the title is what ties it to questions about it.
    """
    planned: list[tuple[Point, str]] = []
    for document in documents:
        markdown = document.path.suffix.lower() in MARKDOWN_SUFFIXES
        for span in split_text(document.text, chunking, markdown=markdown):
            header = (
                document.title
                if span.section in (None, document.title)
                else f"{document.title} > {span.section}"
            )
            embed_text = f"{header}\n{span.text}"
            digest = hashlib.sha256(f"{model}\0{embed_text}".encode()).hexdigest()[:32]
            payload = {
                TEXT: span.text,
                SOURCE: document.id,
                DOC_ID: document.id,
                "title": document.title,
                "section": span.section,
                "chunk_index": span.index,
                "start": span.start,
                HASH: digest,
            }
            planned.append((Point(chunk_id(document.id, span.index), [], payload), embed_text))
    return planned


async def ingest(
    paths: Sequence[Path],
    *,
    collection: str,
    store: QdrantStore,
    embedder: Embedder,
    chunking: ChunkingConfig | None = None,
    shards: int = 1,
    batch_size: int = 64,
    progress: bool = True,
) -> IngestReport:
    """Bring `collection` (or its `shards`) in line with the files under `paths`."""
    started = time.monotonic()
    documents = await asyncio.to_thread(discover, paths)
    report = await ingest_documents(
        documents,
        collection=collection,
        store=store,
        embedder=embedder,
        chunking=chunking,
        shards=shards,
        batch_size=batch_size,
        progress=progress,
    )
    return replace(report, seconds=time.monotonic() - started)


async def ingest_documents(
    documents: Sequence[Document],
    *,
    collection: str,
    store: QdrantStore,
    embedder: Embedder,
    chunking: ChunkingConfig | None = None,
    shards: int = 1,
    batch_size: int = 64,
    progress: bool = True,
) -> IngestReport:
    """Bring `collection` in line with `documents` (documents of other ids are left alone).

    For documents that are not files (an HTTP upload): give each a stable `id`; the `path`
    only tells markdown (`.md`) from plain text.
    """
    started = time.monotonic()
    if batch_size < 1:
        raise IngestError(f"batch_size must be at least 1, got {batch_size}")
    ids = [document.id for document in documents]
    if len(set(ids)) != len(ids):
        repeated = sorted({doc_id for doc_id in ids if ids.count(doc_id) > 1})
        raise IngestError(f"document ids {repeated} appear more than once: give each document its own id")
    names = shard_names(collection, shards)
    planned = await asyncio.to_thread(plan, documents, chunking or ChunkingConfig(), embedder.name)
    doc_ids = [document.id for document in documents]
    stored: dict[str, tuple[str, str | None]] = {}  # point id -> (shard, stored hash)
    for name in names:
        await store.ensure_collection(name, embedder.dim, embedder.distance)
        for point_id, payload in (await store.payloads(name, DOC_ID, doc_ids, [HASH])).items():
            stored[point_id] = (name, payload.get(HASH))

    wanted = {point.id for point, _ in planned}
    for name in names:
        await store.delete(
            name, [pid for pid, (shard, _) in stored.items() if shard == name and pid not in wanted]
        )
    todo = [
        (point, text) for point, text in planned if stored.get(point.id, ("", None))[1] != point.payload[HASH]
    ]

    with tqdm(
        total=len(todo), desc=f"embedding into {collection}", unit="chunk", disable=not progress
    ) as bar:
        for first in range(0, len(todo), batch_size):
            batch = todo[first : first + batch_size]
            vectors = await embedder.aembed([text for _, text in batch])
            by_shard: dict[str, list[Point]] = {}
            for (point, _), vector in zip(batch, vectors, strict=True):
                shard = names[shard_of(point.id, len(names))]
                by_shard.setdefault(shard, []).append(Point(point.id, vector, point.payload))
            for shard, points in by_shard.items():
                await store.upsert(shard, points)
            bar.update(len(batch))

    return IngestReport(
        collection=collection,
        shards=tuple(names),
        documents=len(documents),
        chunks=len(planned),
        embedded=len(todo),
        unchanged=len(planned) - len(todo),
        removed=sum(1 for pid in stored if pid not in wanted),
        seconds=time.monotonic() - started,
    )


def _files(root: Path) -> list[tuple[str, Path]]:
    if root.is_file():
        if root.suffix.lower() not in TEXT_SUFFIXES:
            raise IngestError(
                f"{root} is not a text or markdown file: ingest files ending in {', '.join(TEXT_SUFFIXES)}"
            )
        return [(root.name, root)]
    if not root.is_dir():
        raise IngestError(f"{root} does not exist: pass an existing file or folder")
    prefix = root.resolve().name
    found = [
        (f"{prefix}/{path.relative_to(root).as_posix()}", path)
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and path.suffix.lower() in TEXT_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    if not found:
        raise IngestError(f"{root} holds no text or markdown files (ending in {', '.join(TEXT_SUFFIXES)})")
    return found


def _read(doc_id: str, path: Path) -> Document:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path} is not UTF-8 text: convert it to UTF-8 or leave it out") from exc
    title = path.stem
    if path.suffix.lower() in MARKDOWN_SUFFIXES:
        for line in text.splitlines():
            if line.startswith("# "):
                title = line[2:].strip()
                break
    return Document(doc_id, path, text, title)
