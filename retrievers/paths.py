"""Where streamrag keeps its data (Qdrant storage, corpora) and its cache (unzipped models).

Both are chosen the same way, first match wins:

1. an environment variable (`STREAMRAG_DATA_DIR`, `STREAMRAG_CACHE_DIR`);
2. a folder inside the checkout when the code runs from one (`data/`, `.cache/`, both git-ignored),
   so `make serve` in a clone keeps everything inside the clone;
3. the user's XDG folders (`~/.local/share/streamrag`, `~/.cache/streamrag`) for an installed package.

The environment is passed in rather than read from a global so that tests and the app's settings
can hand over their own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DATA_DIR_ENV = "STREAMRAG_DATA_DIR"
CACHE_DIR_ENV = "STREAMRAG_CACHE_DIR"


def project_root() -> Path | None:
    """The checkout this package runs from, or None for an installed (non-editable) package."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    # An installed package sits in site-packages, whose parent has no pyproject.toml of ours.
    if pyproject.is_file() and 'name = "streamrag"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder for Qdrant's embedded storage and generated corpora (not created here)."""
    return _choose(env, DATA_DIR_ENV, "data", Path.home() / ".local" / "share" / "streamrag")


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder for files that can be rebuilt, such as unzipped models (not created here)."""
    return _choose(env, CACHE_DIR_ENV, ".cache", Path.home() / ".cache" / "streamrag")


def qdrant_path(data: Path) -> Path:
    """Qdrant's embedded storage inside a data folder."""
    return data / "qdrant"


def corpus_path(data: Path, name: str) -> Path:
    """A named corpus of documents inside a data folder."""
    return data / "corpus" / name


def _choose(env: Mapping[str, str] | None, variable: str, in_checkout: str, installed: Path) -> Path:
    env = os.environ if env is None else env
    if env.get(variable):
        return Path(env[variable]).expanduser()
    root = project_root()
    return root / in_checkout if root is not None else installed
