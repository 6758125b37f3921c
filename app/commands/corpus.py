"""`streamrag corpus NAME`: write a sample corpus as documents, ready for `streamrag ingest`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "corpus",
        help="write a sample corpus as documents (python-docs: the Python language reference)",
        description="Write a sample corpus as markdown documents. python-docs is the Python language "
        "reference that ships with CPython (pydoc_data.topics), one file per topic.",
    )
    parser.add_argument("name", metavar="NAME", help="the corpus: python-docs")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder to write (default: <data dir>/corpus/NAME)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="data folder (default: $STREAMRAG_DATA_DIR, else data/ in a source checkout, "
        "else ~/.local/share/streamrag)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retrievers.corpus import UnknownCorpusError, write_corpus
    from retrievers.paths import corpus_path, data_dir

    folder = args.out or corpus_path(args.data_dir or data_dir(), args.name)
    try:
        report = write_corpus(args.name, folder)
    except UnknownCorpusError as error:
        print(f"streamrag corpus: error: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {report.documents} documents ({report.characters:,} characters, Python "
        f"{report.python_version}) to {report.folder}"
    )
    return 0
