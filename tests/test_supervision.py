"""Engine death and server death, against real `streamrag serve` processes (tiny model).

Order and causality only: every wait is bounded, nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import httpx
import psutil
import pytest
from httpx_sse import aconnect_sse

from engine.models import build_tiny_model
from eval.server_process import StreamRAGServerProcess
from tests.sse import ending

ARGS = ("--model", "tiny", "--no-retrieval", "--max-model-len", "2048")
ENV = {"STREAMRAG_KV_CACHE_GIB": "0.25", "VLLM_LOGGING_LEVEL": "WARNING"}
CHAT = {"messages": [{"role": "user", "content": "count"}], "max_tokens": 1500, "ignore_eos": True,
        "temperature": 0, "stream": True}


async def _start(tmp_path_factory, *extra: str) -> StreamRAGServerProcess:
    build_tiny_model()
    server = StreamRAGServerProcess(tmp_path_factory.mktemp("serve") / "server.log", (*ARGS, *extra), env=ENV)
    server.start()
    await server.wait_ready(timeout_s=300)
    return server


def _engine_core(server: StreamRAGServerProcess) -> psutil.Process:
    children = psutil.Process(server.pid).children(recursive=True)
    cores = [p for p in children if "EngineCore" in " ".join(p.cmdline())]
    assert len(cores) == 1, [p.cmdline() for p in children]
    return cores[0]


async def _until(check, timeout_s: float = 120.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.2)


async def _stream(http: httpx.AsyncClient, path: str, body: dict, started: asyncio.Event) -> list[tuple[str, dict | str]]:
    """Every SSE event of one stream as (event name, data); `started` is set on the first token."""
    events = []
    async with aconnect_sse(http, "POST", path, json=body) as source:
        if source.response.status_code != 200:  # refused before the stream began: a JSON error
            await source.response.aread()
            return [("status", source.response.status_code), ("error", source.response.json())]
        async for sse in source.aiter_sse():
            data = sse.data if sse.data == "[DONE]" else json.loads(sse.data)
            events.append((sse.event, data))
            if isinstance(data, dict) and data.get("choices"):
                started.set()
    return events


@pytest.fixture(scope="module")
async def served(tmp_path_factory):
    server = await _start(tmp_path_factory)
    yield server
    server.stop()


async def test_engine_death_ends_every_stream_and_the_engine_restarts(served):
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:
        sid = (await http.post("/v1/sessions", json={"question": "who waits at the gate?"})).json()["id"]
        await http.post(f"/v1/sessions/{sid}/context", json={"op": "append", "chunks": [{"text": "a passage"}]})
        decoding, waiting = asyncio.Event(), asyncio.Event()
        streams = [asyncio.create_task(_stream(http, "/v1/chat/completions", CHAT, decoding)),
                   asyncio.create_task(_stream(http, f"/v1/sessions/{sid}/generate", {"stream": True}, waiting))]
        await asyncio.wait_for(decoding.wait(), 120)  # one answer is mid-way; the other waits at its gate
        core = _engine_core(served)
        core.send_signal(signal.SIGKILL)
        mid_answer, at_gate = await asyncio.wait_for(asyncio.gather(*streams), 60)
        # A stream that had begun ends with an error event and [DONE] (or, when the answer was
        # complete before the kill and a loaded client reads it late, with its own end); one
        # whose headers were not sent yet (it waited at its gate) is answered 503, same error.
        assert mid_answer[-1] == ("message", "[DONE]"), mid_answer[-3:]
        assert ending(mid_answer, CHAT["max_tokens"]) in ("engine_dead", "complete"), mid_answer[-3:]
        # (engine_unavailable: a loaded client's request reached the server after the death was seen)
        assert at_gate[0] == ("status", 503), at_gate
        assert at_gate[1][1]["error"]["code"] in ("engine_dead", "engine_unavailable"), at_gate
        assert not waiting.is_set()
        health = await http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        refused = await http.post("/v1/sessions", json={"question": "during the restart"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] in ("engine_unavailable", "engine_dead")

        async def healthy() -> bool:
            return (await http.get("/health")).status_code == 200

        await _until(healthy, what="the restarted engine")
        assert (await http.get("/health")).json()["restarts"] == 1
        assert not core.is_running()
        answer = await http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 4, "stream": False})
        assert answer.status_code == 200 and len(answer.json()["choices"][0]["token_ids"]) == 4
        record = (await http.get(f"/v1/sessions/{sid}")).json()
        assert record["state"] == "aborted"


async def test_sigkill_of_the_server_leaves_no_engine_process(served):
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:
        async def healthy() -> bool:
            return (await http.get("/health")).status_code == 200

        await _until(healthy, what="an engine (a restart may still be under way)")
    children = psutil.Process(served.pid).children(recursive=True)
    assert any("EngineCore" in " ".join(p.cmdline()) for p in children)
    served.kill(group=False)  # the server alone, as the OOM killer would
    _, alive = psutil.wait_procs(children, timeout=60)
    assert not alive, [p.cmdline() for p in alive]


async def test_no_restart_exits_with_status_3(tmp_path_factory):
    server = await _start(tmp_path_factory, "--no-restart")
    try:
        _engine_core(server).send_signal(signal.SIGKILL)
        code = await asyncio.to_thread(server.wait, 120)
        assert code == 3, server.log_tail()
    finally:
        server.stop()


async def test_a_server_started_by_a_killed_bench_stops_with_it(tmp_path):
    """`StreamRAGServerProcess` passes --stop-with-parent: SIGKILL the process that started the
    server (a bench killed mid-run: no `finally` runs) and the server and its engine core exit."""
    build_tiny_model()
    code = (
        "import sys, time\n"
        "from eval.server_process import StreamRAGServerProcess\n"
        f"s = StreamRAGServerProcess({str(tmp_path / 'server.log')!r}, {ARGS!r}, env={ENV!r})\n"
        "s.start()\n"
        "print(s.pid, s.port, flush=True)\n"
        "time.sleep(600)\n"
    )
    bench = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE)
    try:
        pid, port = map(int, (await asyncio.wait_for(bench.stdout.readline(), 60)).split())

        async def ready() -> bool:
            try:
                async with httpx.AsyncClient(timeout=2) as http:
                    return (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200
            except httpx.TransportError:
                return False

        await _until(ready, timeout_s=300, what="the server to answer /health")
        server = psutil.Process(pid)
        core = [p for p in server.children(recursive=True) if "EngineCore" in " ".join(p.cmdline())]
        bench.kill()
        await bench.wait()
        gone, alive = await asyncio.to_thread(psutil.wait_procs, [server, *core], 60)
        assert not alive, [p.pid for p in alive]
    finally:
        if bench.returncode is None:
            bench.kill()
