"""`streamrag serve --vllm-url ...`: the app on the remote backend, end to end on real servers.

The app builds its own `VLLMServersEngine` from the settings (as `serve` does), so these tests go
through the same path as a deployment: HTTP in, retrieval, sessions on vLLM servers, SSE out.
"""

from __future__ import annotations

import httpx
import pytest

from app.cli import build_parser
from app.commands.serve import settings_of
from app.main import create_app
from app.retrieval import Retrieval
from app.settings import Settings
from engine import Sampling
from tests.app_fixtures import start_server, stop_server
from tests.sse import read_events


@pytest.fixture
async def remote_app(replicas, embedder, reference_store):
    store, _ = reference_store
    settings = Settings(model="tiny", vllm_url=replicas.urls, session_ttl_s=60, max_tokens_default=16)
    server, task, url = await start_server(create_app(settings, retrieval=Retrieval(store, embedder)))
    yield url
    await stop_server(server, task)


def test_serve_takes_repeated_vllm_urls():
    args = build_parser().parse_args(["serve", "--vllm-url", "http://a:8001", "--vllm-url", "http://b:8001"])
    assert settings_of(args).vllm_url == ["http://a:8001", "http://b:8001"]
    assert settings_of(build_parser().parse_args(["serve"])).vllm_url == []


async def test_session_api_on_vllm_servers_equals_their_completion(remote_app, remote_engine):
    async with httpx.AsyncClient(base_url=remote_app, timeout=60) as http:
        sid = (await http.post("/v1/sessions", json={"question": "What is prefill?"})).json()["id"]
        for op, chunks in (("append", [{"id": "a", "text": "Prefill computes the KV cache of the prompt."}]),
                           ("update", [{"id": "b", "text": "Decoding produces one token per step."},
                                       {"id": "a", "text": "Prefill computes the KV cache of the prompt."}])):
            r = await http.post(f"/v1/sessions/{sid}/context", json={"op": op, "chunks": chunks})
            assert r.status_code == 200 and r.json()["accepted"] == len(chunks)
        await http.post(f"/v1/sessions/{sid}/context", json={"op": "done"})
        out = (await http.post(f"/v1/sessions/{sid}/generate",
                               json={"max_tokens": 7, "temperature": 0, "stream": False})).json()
        ids = out["choices"][0]["token_ids"]
        state = (await http.get(f"/v1/sessions/{sid}")).json()
        assert state["state"] == "finished" and state["stats"]["updates"] == 1
        # The app's own one-shot route goes to the servers too; both equal each server's answer.
        via_app = (await http.post("/v1/completions", json={
            "prompt": state["prompt_token_ids"], "max_tokens": 7, "temperature": 0})).json()
        assert via_app["choices"][0]["token_ids"] == ids
        for url in remote_engine.replicas.urls:
            done = await remote_engine.complete(prompt_token_ids=state["prompt_token_ids"], replica=url, sampling=Sampling(max_tokens=7))
            assert list(done.token_ids) == ids
        health = (await http.get("/health")).json()
        assert health["status"] == "ok" and isinstance(health["kv_blocks_in_use"], int)


async def test_chat_with_retrieval_streams_context_gate_and_tokens(remote_app):
    async with httpx.AsyncClient(base_url=remote_app, timeout=60) as http:
        events = await read_events(http, "/v1/chat/completions", {
            "messages": [{"role": "user", "content": "When does the finally clause of a try statement run?"}],
            "stream": True, "max_tokens": 5, "temperature": 0, "stream_options": {"include_usage": True},
            "retrieval": {"collection": "python-docs", "top_k": 3, "mode": "update", "events": True},
        })
    names = [n for n, _ in events]
    assert "context" in names and names.index("context") < names.index("gate")
    tokens = [d for n, d in events if n == "message" and d != "[DONE]" and d["choices"]]
    assert sum(len(c["choices"][0].get("token_ids") or ()) for c in tokens) >= 1
    usage = [d for n, d in events if n == "message" and d != "[DONE]" and d.get("usage")][-1]["usage"]
    assert usage["streamrag"]["chunks"] == 3 and usage["streamrag"]["gate_reason"] == "done"
