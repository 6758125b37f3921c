"""Every code block of README.md and docs/*.md runs as written, against live test servers.

Python blocks run as scripts; shell blocks run in bash. Only the addresses and model names are
substituted (the tests serve the tiny model on free ports); everything else is the docs' own
text. A block that cannot run in a test (it installs, starts servers or needs Docker) carries
`<!-- not run by the tests: why -->` on the line before it, and this test requires the reason.
The README's curl blocks are run by tests/test_readme_examples.py, which checks their output.
docs/benchmarks.md is the record of measurements: its blocks are the commands that produced each
figure (minutes to an hour of load each), so they are the benchmarks themselves, not examples.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "benchmarks.md")]
NOT_RUN = re.compile(r"<!-- not run by the tests: (.+?) -->")


@dataclass(frozen=True)
class Block:
    path: str
    line: int
    language: str
    code: str
    not_run: str | None

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].startswith("```"):
                start, language = i, lines[i][3:].strip()
                end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
                reason = NOT_RUN.search(lines[start - 1]) if start else None
                found.append(Block(doc.name, start + 1, language, "\n".join(lines[start + 1:end]) + "\n",
                                   reason.group(1) if reason else None))
                i = end
            i += 1
    return found


CODE = [b for b in blocks() if b.language in ("python", "bash", "sh")]


def test_every_code_block_is_run_or_says_why_not():
    for block in blocks():
        if block.language == "" and re.match(r"\s*(streamrag|make|python|curl|pip)\b", block.code):
            pytest.fail(f"{block.name}: a command block without a language; mark it ```bash so it is run")
    assert [b for b in CODE if b.language == "python"], "the docs lost their Python examples"


def _localize(code: str, server: str, replicas: list[str]) -> str:
    host = server.removeprefix("http://")
    code = code.replace("http://127.0.0.1:8000", server).replace("localhost:8000", host)
    code = code.replace('["http://127.0.0.1:8001", "http://127.0.0.1:8002"]', repr(replicas))
    return code.replace("smollm2-135m-instruct", "tiny").replace('model="default"', 'model="tiny"')


async def _run(argv: list[str], cwd: Path, env: dict) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=480)
    except TimeoutError:
        proc.kill()
        raise
    assert proc.returncode == 0, out.decode()[-4000:]
    return out.decode()


@pytest.fixture
def replica_urls(request, block) -> list[str]:
    # Sync on purpose (as tests/test_contract.py's `backend`): the vLLM servers start only for
    # the block that needs them.
    return request.getfixturevalue("replicas").urls if "VLLMServersEngine(" in block.code else []


@pytest.mark.parametrize("block", CODE, ids=lambda b: b.name)
async def test_block_runs_as_written(block, app_server, replica_urls, tmp_path):
    if block.not_run:
        pytest.skip(f"not run by the tests: {block.not_run}")  # the reason is in the docs, next to it
    if block.language != "python" and "curl" in block.code:
        pytest.skip("run and checked by tests/test_readme_examples.py")
    code = _localize(block.code, app_server, replica_urls)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STREAMRAG_DATA_DIR": str(tmp_path / "data"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if block.language == "python":
        script = tmp_path / "block.py"
        script.write_text(code)
        out = await _run([sys.executable, str(script)], ROOT, env)
    else:  # in a folder of its own: what it writes under data/ stays in the test's tmp_path
        out = await _run(["bash", "-euo", "pipefail", "-c", code], tmp_path, env)
    assert out.strip(), f"{block.name} printed nothing"
