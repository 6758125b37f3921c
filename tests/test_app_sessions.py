"""The session API round-trips, and its greedy tokens equal /v1/completions on its prompt."""

from __future__ import annotations

import asyncio

import httpx

from tests.app_fixtures import API_KEY
from tests.sse import read_events


async def test_session_round_trip_equals_completion(app_server):
    async with httpx.AsyncClient(base_url=app_server, timeout=60) as http:
        sid = (await http.post("/v1/sessions", json={"question": "What is prefill?", "gate": {"min_chunks": 9}})).json()["id"]
        r = await http.post(f"/v1/sessions/{sid}/context", json={"op": "append", "chunks": [
            {"id": "a", "text": "Prefill computes the KV cache of the prompt.", "score": 0.9}]})
        assert r.status_code == 200 and r.json()["accepted"] == 1
        r = await http.post(f"/v1/sessions/{sid}/context", json={"op": "update", "chunks": [
            {"id": "b", "text": "Decoding produces one token per step."},
            {"id": "a", "text": "Prefill computes the KV cache of the prompt.", "score": 0.9}]})
        assert r.json()["accepted"] == 2 and not r.json()["gate_open"]
        r = await http.post(f"/v1/sessions/{sid}/context", json={"op": "done"})
        assert r.json()["gate_open"]
        out = (await http.post(f"/v1/sessions/{sid}/generate",
                               json={"max_tokens": 7, "temperature": 0, "stream": False})).json()
        ids = out["choices"][0]["token_ids"]
        assert len(ids) == 7 and out["usage"]["streamrag"]["gate_reason"] == "done"
        state = (await http.get(f"/v1/sessions/{sid}")).json()
        assert state["state"] == "finished" and state["stats"]["updates"] == 1
        assert [c["id"] for c in state["chunks"]] == ["b", "a"]
        one_shot = (await http.post("/v1/completions", json={
            "prompt": state["prompt_token_ids"], "max_tokens": 7, "temperature": 0})).json()
        assert one_shot["choices"][0]["token_ids"] == ids
        assert (await http.delete(f"/v1/sessions/{sid}")).json()["deleted"]
        assert (await http.get(f"/v1/sessions/{sid}")).status_code == 404


async def test_session_generate_streams_like_chat(app_server):
    async with httpx.AsyncClient(base_url=app_server, timeout=60) as http:
        sid = (await http.post("/v1/sessions", json={"question": "q"})).json()["id"]
        await http.post(f"/v1/sessions/{sid}/context", json={"op": "append", "chunks": [{"text": "ctx"}]})
        await http.post(f"/v1/sessions/{sid}/context", json={"op": "done"})
        events = await read_events(http, f"/v1/sessions/{sid}/generate",
                                   {"max_tokens": 3, "temperature": 0, "stream": True,
                                    "stream_options": {"include_usage": True}})
        names = [n for n, _ in events]
        assert names[0] == "gate" and events[-1][1] == "[DONE]"
        chunks = [d for n, d in events if n == "message" and d != "[DONE]" and d["choices"]]
        assert sum(len(c["choices"][0]["token_ids"]) for c in chunks) == 3
        assert chunks[0]["object"] == "chat.completion.chunk"
        await http.delete(f"/v1/sessions/{sid}")


async def test_idle_session_is_reaped_and_freed(keyed_server, engine):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=keyed_server, headers=headers) as http:
        sid = (await http.post("/v1/sessions", json={"question": "forgotten"})).json()["id"]
        await http.post(f"/v1/sessions/{sid}/context", json={"op": "append", "chunks": [{"text": "x " * 200}]})
        await asyncio.sleep(1.5)  # TTL is 0.5 s
        record = (await http.get(f"/v1/sessions/{sid}")).json()  # an ended session's record stays a while
        assert record["state"] == "aborted"
        assert engine.session(sid) is None
        push = await http.post(f"/v1/sessions/{sid}/context", json={"op": "append", "chunks": [{"text": "y"}]})
        assert push.status_code == 409 and push.json()["error"]["code"] == "session_state"


async def test_a_deadline_gate_warns_and_counts_what_it_dropped(app_server):
    """The README's `max_wait_s` under a slow retriever: the deadline passes with no context, the
    first chunk opens the gate (never an answer from nothing), and the client is told."""
    async with httpx.AsyncClient(base_url=app_server, timeout=60) as http:
        sid = (await http.post("/v1/sessions", json={"question": "q", "gate": {"max_wait_s": 0.05}})).json()["id"]
        await asyncio.sleep(0.2)  # past the deadline, no context yet
        assert not (await http.get(f"/v1/sessions/{sid}")).json()["gate_open"]
        first = await http.post(f"/v1/sessions/{sid}/context", json={"op": "append", "chunks": [{"text": "first"}]})
        assert first.json()["accepted"] == 1 and first.json()["gate_open"]
        late = await http.post(f"/v1/sessions/{sid}/context", json={"op": "append", "chunks": [{"text": "late"}]})
        assert late.json()["dropped"] == 1
        await http.post(f"/v1/sessions/{sid}/context", json={"op": "done"})
        events = await read_events(http, f"/v1/sessions/{sid}/generate",
                                   {"max_tokens": 2, "stream": True, "stream_options": {"include_usage": True}})
        gate = next(d for n, d in events if n == "gate")["streamrag"]["gate"]
        assert gate["reason"] == "deadline" and "1 chunks" in gate["warning"]
        usage = next(d for n, d in events if n == "message" and d != "[DONE]" and d.get("usage"))["usage"]
        assert usage["streamrag"]["warning"] == "1 chunks arrived after the gate opened and were not used"
