"""The package boundary: `retrievers` knows nothing of the engine and stays light to import."""

from __future__ import annotations

import subprocess
import sys

import retrievers


def test_importing_retrievers_loads_no_engine_no_torch_and_no_framework() -> None:
    code = (
        "import sys, retrievers\n"
        "heavy = ('engine', 'vllm', 'torch', 'sentence_transformers', 'llama_index', 'langchain_core')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_package_exports_what_its_all_lists() -> None:
    assert all(hasattr(retrievers, name) for name in retrievers.__all__)
    assert len(set(retrievers.__all__)) == len(retrievers.__all__)
