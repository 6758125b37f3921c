"""`streamrag ingest PATH... --collection NAME`: chunk, embed and store documents in Qdrant."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retrievers.chunking import ChunkingConfig
    from retrievers.embedder import EmbedderConfig
    from retrievers.ingest import IngestReport

QDRANT_URL_ENV = "STREAMRAG_QDRANT_URL"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="chunk, embed and store text and markdown files in a Qdrant collection",
        description="Chunk, embed and store text and markdown files (or folders of them) in a Qdrant "
        "collection. Idempotent: chunks already stored with the same text are not embedded again.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a .txt/.md file or a folder")
    parser.add_argument(
        "--collection", required=True, metavar="NAME", help="the collection (created if missing)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="data folder; embedded Qdrant lives in its qdrant/ (default: $STREAMRAG_DATA_DIR, else "
        "data/ in a source checkout, else ~/.local/share/streamrag)",
    )
    parser.add_argument(
        "--qdrant-url",
        default=os.environ.get(QDRANT_URL_ENV),
        metavar="URL",
        help=f"a Qdrant server instead of the embedded store (default: ${QDRANT_URL_ENV})",
    )
    parser.add_argument(
        "--chunk-size", type=int, default=None, metavar="N", help="characters per chunk (700)"
    )
    parser.add_argument(
        "--chunk-overlap", type=int, default=None, metavar="N", help="characters shared by neighbours (100)"
    )
    parser.add_argument(
        "--shards", type=int, default=1, metavar="N", help="split the collection over N shards (1)"
    )
    parser.add_argument(
        "--embedding-model",
        default=None,
        metavar="MODEL",
        help="packaged model name or folder (all-MiniLM-L6-v2)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so `streamrag --help` does not pay for torch and qdrant-client.
    from retrievers.chunking import ChunkingConfig
    from retrievers.embedder import EmbedderConfig
    from retrievers.errors import RetrievalError

    if args.shards < 1:
        print(f"streamrag ingest: error: --shards must be at least 1, got {args.shards}", file=sys.stderr)
        return 2
    defaults = ChunkingConfig()
    try:
        chunking = ChunkingConfig(
            size=args.chunk_size if args.chunk_size is not None else defaults.size,
            overlap=args.chunk_overlap if args.chunk_overlap is not None else defaults.overlap,
        )
        embedder_config = EmbedderConfig(model=args.embedding_model or EmbedderConfig().model)
        report, where = asyncio.run(_ingest(args, chunking, embedder_config))
    except RetrievalError as error:
        print(f"streamrag ingest: error: {error}", file=sys.stderr)
        return 2
    print(
        f"ingested {report.documents} documents into {report.collection!r} ({where}): "
        f"{report.chunks} chunks, {report.embedded} embedded, {report.unchanged} unchanged, "
        f"{report.removed} removed, in {report.seconds:.1f} s"
    )
    return 0


async def _ingest(
    args: argparse.Namespace, chunking: ChunkingConfig, embedder_config: EmbedderConfig
) -> tuple[IngestReport, str]:
    from retrievers.embedder import Embedder
    from retrievers.ingest import ingest
    from retrievers.paths import data_dir, qdrant_path
    from retrievers.store import QdrantStore

    location = args.qdrant_url or str(qdrant_path(args.data_dir or data_dir()))
    embedder = await asyncio.to_thread(Embedder.load, embedder_config)
    async with await QdrantStore.open(location) as store:
        report = await ingest(
            args.paths,
            collection=args.collection,
            store=store,
            embedder=embedder,
            chunking=chunking,
            shards=args.shards,
            progress=not args.no_progress,
        )
    return report, location
