"""The README's curl and `openai` examples, run as written against a live test server.

Only the address and the model name are substituted (the tests serve the tiny model on a
free port); everything else is the README's own text.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def _localize(text: str, base_url: str) -> str:
    host = base_url.removeprefix("http://")
    text = text.replace("http://127.0.0.1:8000", base_url).replace("localhost:8000", host)
    return text.replace("smollm2-135m-instruct", "tiny")


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_examples(app_server):
    scripts = [b for b in _blocks("bash") if "curl" in b]
    assert len(scripts) >= 2, "the README lost its curl examples"
    chat = next(b for b in scripts if "/v1/chat/completions" in b)
    out = await _run("bash", "-c", _localize(chat, app_server))
    assert "event: context" in out and "event: gate" in out and "data: [DONE]" in out
    sessions = next(b for b in scripts if "/v1/sessions" in b)
    out = await _run("bash", "-c", "set -euo pipefail\n" + _localize(sessions, app_server))
    assert "chat.completion.chunk" in out and "data: [DONE]" in out


async def test_openai_client_example(app_server):
    example = next(b for b in _blocks("python") if "from openai import OpenAI" in b)
    out = await _run(sys.executable, "-c", _localize(example, app_server))
    assert out.strip(), "the example printed no answer"
