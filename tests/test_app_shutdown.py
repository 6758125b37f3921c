"""SIGTERM with streams in flight, against a real `streamrag serve` (issue 14, case 9): every
stream gets a final event, the process exits, and no engine process is left behind."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import psutil
from httpx_sse import aconnect_sse

from app.quiet_logs import HARMLESS
from engine.models import build_tiny_model
from eval.server_process import StreamRAGServerProcess
from tests.sse import ending

ARGS = ("--model", "tiny", "--no-retrieval", "--max-model-len", "2048")
ENV = {"STREAMRAG_KV_CACHE_GIB": "0.25"}  # vLLM's logging as `serve` sets it (app/quiet_logs.py)
LONG = {"messages": [{"role": "user", "content": "go on"}], "max_tokens": 1800, "ignore_eos": True,
        "temperature": 0, "stream": True}


async def _serve(tmp_path_factory, drain_s: float) -> StreamRAGServerProcess:
    build_tiny_model()
    server = StreamRAGServerProcess(tmp_path_factory.mktemp("serve") / "server.log",
                                    (*ARGS, "--drain-s", str(drain_s)), env=ENV)
    server.start()
    await server.wait_ready(timeout_s=300)
    return server


async def _stream(http: httpx.AsyncClient, path: str, body: dict, started: asyncio.Event) -> list:
    """(event, data) pairs; a response refused before it streamed is ("status", code, body)."""
    out: list = []
    async with aconnect_sse(http, "POST", path, json=body) as source:
        if source.response.status_code != 200:
            await source.response.aread()
            return [("status", source.response.status_code, source.response.json())]
        async for sse in source.aiter_sse():
            out.append((sse.event, sse.data if sse.data == "[DONE]" else json.loads(sse.data)))
            if sse.event == "message" and sse.data != "[DONE]":
                started.set()
    return out


async def _in_flight(http: httpx.AsyncClient) -> tuple[list[asyncio.Task], asyncio.Task]:
    """Three long answers streaming, and one session generate waiting at a gate that never opens."""
    sid = (await http.post("/v1/sessions", json={"question": "who waits?"})).json()["id"]
    starts = [asyncio.Event() for _ in range(3)]
    streams = [asyncio.create_task(_stream(http, "/v1/chat/completions", LONG, s)) for s in starts]
    gated = asyncio.create_task(_stream(http, f"/v1/sessions/{sid}/generate", {"stream": True}, asyncio.Event()))
    await asyncio.wait_for(asyncio.gather(*(s.wait() for s in starts)), 120)
    return streams, gated


async def test_sigterm_ends_every_stream_with_a_final_event_and_exits(tmp_path_factory):
    drain_s = 5.0
    server = await _serve(tmp_path_factory, drain_s)
    try:
        children = psutil.Process(server.pid).children(recursive=True)
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            streams, gated = await _in_flight(http)
            server.terminate()
            ended = []
            for events in await asyncio.wait_for(asyncio.gather(*streams), 60):
                # Every stream gets a final event: the drain's error, or its own end when it
                # finished inside the drain (a loaded client may read it seconds late).
                assert events[-1] == ("message", "[DONE]"), events[-3:]
                ended.append(ending(events, LONG["max_tokens"]))
                assert ended[-1] in ("server_shutting_down", "complete"), events[-3:]
            waited = await asyncio.wait_for(gated, 60)
            assert waited[0][:2] == ("status", 503) and waited[0][2]["error"]["code"] == "server_shutting_down"
        assert await asyncio.to_thread(server.wait, drain_s + 10) == 0, server.log_tail()
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
        # Start-up printed none of vLLM's known-harmless warnings, from any of its processes,
        # and no INFO lines; the server's own lines are there.
        log = server.log_path.read_text(errors="replace")
        assert "Uvicorn running on" in log or "Application startup complete" in log, log[-2000:]
        noise = [line for line in log.splitlines() if any(h in line for h in HARMLESS) or ") INFO " in line]
        assert noise == [], noise[:5]
    finally:
        server.stop()


async def test_a_second_sigterm_exits_at_once(tmp_path_factory):
    server = await _serve(tmp_path_factory, drain_s=600)  # a drain that would outlast the test
    try:
        children = psutil.Process(server.pid).children(recursive=True)
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            streams, gated = await _in_flight(http)
            sending = asyncio.Event()

            async def endless_body():  # a request whose body never ends keeps the drain waiting
                yield b'{"messages": '
                sending.set()
                await asyncio.sleep(3600)

            blocker = asyncio.create_task(http.post("/v1/chat/completions", content=endless_body(),
                                                    headers={"content-type": "application/json"}))
            await sending.wait()
            server.terminate()
            await asyncio.gather(*streams, gated, return_exceptions=True)
            server.terminate()
            code = await asyncio.to_thread(server.wait, 30)
            blocker.cancel()
        assert code == 128 + signal.SIGTERM, server.log_tail()
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        server.stop()
