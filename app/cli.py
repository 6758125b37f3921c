"""The `streamrag` command: one sub-command per module under app/commands/.

Each command module exposes `register(subparsers)`, which adds its parser and sets `func`
(a callable taking the parsed args and returning an exit code). Heavy imports (vLLM, torch,
sentence-transformers) happen inside `func`, so `streamrag --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

DESCRIPTION = ("streamrag: RAG serving that prefills the prompt while retrieval streams in. "
               "Start with `streamrag serve` (after `streamrag models prepare`), then `streamrag chat`.")
# Modules under app/commands/, in the order `--help` lists them.
COMMAND_MODULES = ("models", "corpus", "ingest", "serve", "chat", "profile", "demo", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamrag", description=DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"app.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
