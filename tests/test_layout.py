"""The house rules of the layout (docs/architecture.md): layers, no cycles, small files.

    app            HTTP and the command line; imported by nothing
    eval           benchmarks; uses integrations, engine, retrievers
    integrations   LlamaIndex, LangChain, the HTTP client; uses engine, retrievers
    engine  retrievers   the bottom, independent of each other; engine/local and
                         engine/remote independent too, and the engine's core uses neither
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "eval", "integrations", "engine", "retrievers")
LAYER = {"engine": 0, "retrievers": 0, "integrations": 1, "eval": 2, "app": 3}
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules `path` imports, anywhere in the file (function-level imports included),
    except under `if TYPE_CHECKING:` (annotations only)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def _group(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "engine" and len(parts) > 1 and parts[1] in ("local", "remote"):
        return f"engine.{parts[1]}"
    return parts[0]


def test_layers_point_down():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        for target in _imports(path, modules):
            mine, theirs = _group(name), _group(target)
            top_mine, top_theirs = mine.split(".")[0], theirs.split(".")[0]
            if LAYER[top_theirs] > LAYER[top_mine] or {top_mine, top_theirs} == {"engine", "retrievers"}:
                wrong.append(f"{name} -> {target}")
            elif top_mine == top_theirs == "engine" and mine != theirs and mine != "engine.__init__":
                if mine == "engine" and name != "engine" or {mine, theirs} == {"engine.local", "engine.remote"}:
                    wrong.append(f"{name} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    # Tarjan's strongly connected components; a component of more than one module is a cycle.
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    # A package's __init__ re-exporting its own modules is not a cycle of logic.
    cycles = [c for c in cycles if not all(m.split(".")[0] == c[0].split(".")[0] and
                                           any(modules[x].name == "__init__.py" for x in c) and len(c) == 2 for m in c)]
    assert not cycles, cycles


@pytest.mark.parametrize("package", PACKAGES)
def test_no_file_over_300_lines(package):
    long = [f"{p.relative_to(ROOT)}: {n}" for p in (ROOT / package).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, long


def test_a_client_of_a_server_never_loads_vllm():
    code = ("import sys, engine, integrations.langchain, integrations.llamaindex, integrations.http_client\n"
            "from integrations.langchain import StreamRAGChatModel\n"
            "assert 'vllm' not in sys.modules and 'torch' not in sys.modules, 'vllm or torch was imported'")
    _runs_clean(code)


def test_the_context_stream_protocol_needs_no_store():
    """`from retrievers import Chunk` (what the engine's tests and eval use) loads neither Qdrant
    nor the embedder nor the frameworks: the engine's tests run where only vLLM is installed."""
    code = ("import sys\nfrom retrievers import Chunk, Append, content_id, RetrievalError\n"
            "heavy = [m for m in ('qdrant_client', 'sentence_transformers', 'llama_index', 'langchain_core')"
            " if m in sys.modules]\nassert not heavy, heavy")
    _runs_clean(code)


def _runs_clean(code: str) -> None:
    """`code` in a fresh interpreter (a clean sys.modules) exits 0."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_deferred_import_resolves():
    """Imports written inside functions (to keep `import engine` and `streamrag --help` light)
    run only when that path does; check each name exists, so a rename cannot break a command
    that no other test runs (`streamrag models prepare` once imported a name that had moved)."""
    import importlib

    missing = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.level == 0 and inner.module:
                    if inner.module.split(".")[0] not in PACKAGES:
                        continue
                    target = importlib.import_module(inner.module)
                    missing += [f"{module}: from {inner.module} import {a.name}" for a in inner.names
                                if not hasattr(target, a.name)
                                and not (hasattr(target, "__path__")  # a submodule of a package
                                         and importlib.util.find_spec(f"{inner.module}.{a.name}"))]
    assert not missing, missing
