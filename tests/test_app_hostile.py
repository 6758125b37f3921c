"""The server under hostile input and careless clients (issue 14), one test per case, on a real
uvicorn with the tiny model. Each asserts the status, the OpenAI-style error body, and that
the server kept serving meanwhile (the next request on the same connection, /health)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.app_fixtures import API_KEY

USER = [{"role": "user", "content": "hi"}]
BAD = "x\ud800y"  # a lone UTF-16 surrogate: valid JSON (escaped), not encodable text


@pytest.fixture
async def http(app_server):
    async with httpx.AsyncClient(base_url=app_server, timeout=60) as client:
        yield client


async def _refused(http: httpx.AsyncClient, response: httpx.Response, status: int, param: str | None,
                   code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    assert (await http.get("/health")).status_code == 200  # the same connection still serves
    return error


async def _post_raw(http: httpx.AsyncClient, path: str, text: str) -> httpx.Response:
    return await http.post(path, content=text.encode(), headers={"content-type": "application/json"})


async def _post_json(http: httpx.AsyncClient, path: str, body: dict) -> httpx.Response:
    # json.dumps escapes a lone surrogate (\\ud800), as any client's JSON encoder may; httpx's would refuse it.
    return await _post_raw(http, path, json.dumps(body))


async def _session(http: httpx.AsyncClient, **body) -> str:
    return (await http.post("/v1/sessions", json={"question": "q", **body})).json()["id"]


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "user", "content": BAD}]}, "messages.0.content"),
    ({"messages": [{"role": "system", "content": BAD}, *USER]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": BAD}]}]}, "messages.0.content.0.text"),
    ({"messages": [{"role": "user", "content": BAD}], "stream": True}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": BAD}], "retrieval": {"collection": "python-docs"}},
     "messages.0.content"),
])
async def test_1_unencodable_text_in_chat(http, body, param):
    await _refused(http, await _post_json(http, "/v1/chat/completions", body), 400, param, "invalid_value")


async def test_1_unencodable_text_elsewhere(http):
    await _refused(http, await _post_json(http, "/v1/completions", {"prompt": BAD}), 400, "prompt")
    await _refused(http, await _post_json(http, "/v1/sessions", {"question": "q", "system": BAD}), 400, "system")
    sid = await _session(http)
    r = await _post_json(http, f"/v1/sessions/{sid}/context", {"op": "append", "chunks": [{"text": BAD}]})
    await _refused(http, r, 400, "chunks.0.text")
    await http.delete(f"/v1/sessions/{sid}")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_2_non_finite_numbers(http, number):
    sid = await _session(http)
    r = await _post_raw(http, f"/v1/sessions/{sid}/context",
                        f'{{"op": "append", "chunks": [{{"text": "t", "score": {number}}}]}}')
    await _refused(http, r, 400, "chunks.0.score")
    for field in ("min_score", "max_wait_s"):
        r = await _post_raw(http, "/v1/sessions", f'{{"question": "q", "gate": {{"{field}": {number}}}}}')
        await _refused(http, r, 400, f"gate.{field}")
    described = await http.get(f"/v1/sessions/{sid}")
    assert described.status_code == 200 and described.json()["chunks"] == []
    await http.delete(f"/v1/sessions/{sid}")


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, 2**70])
async def test_3_seeds_outside_64_bits(http, seed):
    await _refused(http, await http.post("/v1/chat/completions", json={"messages": USER, "seed": seed}), 400, "seed")
    await _refused(http, await http.post("/v1/completions", json={"prompt": "p", "seed": seed}), 400, "seed")
    sid = await _session(http)
    await http.post(f"/v1/sessions/{sid}/context", json={"op": "done"})
    await _refused(http, await http.post(f"/v1/sessions/{sid}/generate", json={"seed": seed}), 400, "seed")
    assert (await http.get(f"/v1/sessions/{sid}")).json()["state"] == "open"  # the refusal touched nothing
    await http.delete(f"/v1/sessions/{sid}")


async def test_4_a_huge_message_is_refused_before_it_is_read(http):
    huge = {"messages": [{"role": "user", "content": "word " * 4_000_000}]}  # 20 MB
    health = asyncio.create_task(http.get("/health"))
    await _refused(http, await http.post("/v1/chat/completions", json=huge), 413, None, "request_too_large")
    assert (await health).status_code == 200
    many = {"messages": USER * 300}
    await _refused(http, await http.post("/v1/chat/completions", json=many), 413, "messages", "request_too_large")
    wide = {"messages": [{"role": "user", "content": "w" * 250_000}]}
    await _refused(http, await http.post("/v1/chat/completions", json=wide), 413, "messages", "request_too_large")


async def test_5_a_non_ascii_key_is_a_401(keyed_server):
    async with httpx.AsyncClient(base_url=keyed_server) as http:
        r = await http.get("/v1/models", headers={"Authorization": "Bearer caf\xe9".encode("latin-1")})
        await _refused(http, r, 401, None, "invalid_api_key")
        r = await http.get("/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
        assert r.status_code == 200


async def _idle(http: httpx.AsyncClient, engine) -> None:
    """Sessions and KV blocks back to idle, as /metrics says (bounded wait)."""
    for _ in range(100):
        metrics = (await http.get("/metrics")).text
        values = {line.split()[0]: float(line.split()[-1]) for line in metrics.splitlines()
                  if line.startswith(("streamrag_active_sessions", "streamrag_kv_blocks_in_use"))}
        if values == {"streamrag_active_sessions": 0.0, "streamrag_kv_blocks_in_use": 0.0}:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not idle: {values}")


async def test_6_a_client_that_leaves_a_gated_generate_frees_it(http, engine, idle_blocks):
    sid = await _session(http)
    await http.post(f"/v1/sessions/{sid}/context", json={"op": "append", "chunks": [{"text": "x " * 100}]})
    with pytest.raises(httpx.ReadTimeout):  # the gate never opens; the client gives up
        await http.post(f"/v1/sessions/{sid}/generate", json={"stream": True}, timeout=1.0)
    await _idle(http, engine)
    assert (await http.get(f"/v1/sessions/{sid}")).json()["state"] == "aborted"


async def _events(http: httpx.AsyncClient, path: str, body: dict, first: asyncio.Event | None = None) -> list:
    out = []
    async with aconnect_sse(http, "POST", path, json=body) as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            out.append((sse.event, sse.data if sse.data == "[DONE]" else json.loads(sse.data)))
            if first is not None and sse.event == "message" and out[-1][1] != "[DONE]":
                first.set()
    return out


async def test_7_delete_mid_stream_and_a_second_generate(http, engine, idle_blocks):
    sid = await _session(http)
    await http.post(f"/v1/sessions/{sid}/context", json={"op": "append", "chunks": [{"text": "a"}], "last": True})
    body = {"stream": True, "max_tokens": 1500, "ignore_eos": True}
    started = asyncio.Event()
    stream = asyncio.create_task(_events(http, f"/v1/sessions/{sid}/generate", body, started))
    await asyncio.wait_for(started.wait(), 60)
    second = await http.post(f"/v1/sessions/{sid}/generate", json=body)
    await _refused(http, second, 409, "session_id", "session_state")
    assert (await http.delete(f"/v1/sessions/{sid}")).status_code == 200
    events = await asyncio.wait_for(stream, 30)
    assert events[-2][0] == "error" and events[-2][1]["error"]["code"] == "session_state", events[-3:]
    assert events[-1][1] == "[DONE]"
    await _idle(http, engine)


async def test_7_a_refused_second_generate_leaves_the_first_alone(http, engine, idle_blocks):
    sid = await _session(http)
    await http.post(f"/v1/sessions/{sid}/context", json={"op": "append", "chunks": [{"text": "a"}], "last": True})
    started = asyncio.Event()
    body = {"stream": True, "max_tokens": 40, "ignore_eos": True}
    stream = asyncio.create_task(_events(http, f"/v1/sessions/{sid}/generate", body, started))
    await asyncio.wait_for(started.wait(), 60)
    await _refused(http, await http.post(f"/v1/sessions/{sid}/generate", json=body), 409, "session_id")
    events = await asyncio.wait_for(stream, 60)
    tokens = sum(len(data["choices"][0]["token_ids"]) for name, data in events if name == "message" and
                 data != "[DONE]" and data["choices"])
    assert tokens == 40 and events[-1][1] == "[DONE]"
    await _idle(http, engine)


async def test_8_a_non_streaming_client_that_times_out_frees_its_generation(http, engine, idle_blocks):
    body = {"messages": USER, "max_tokens": 1900, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/v1/chat/completions", json=body, timeout=1.0)
    await _idle(http, engine)


async def test_11_framework_errors_in_openai_shape(http):
    r = await http.post("/v1/chat/completions", content=b'{"messages": "\xff\xfe"}',
                        headers={"content-type": "application/json"})
    await _refused(http, r, 400, None)
    await _refused(http, await http.get("/v1/nowhere"), 404, None, "not_found")
    r = await http.put("/health")
    assert r.status_code == 405 and set(r.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("path, body, param", [
    ("/v1/completions", {"prompt": [True, False]}, "prompt"),
    ("/v1/completions", {"prompt": "p", "max_tokens": 2**70}, "max_tokens"),
    ("/v1/chat/completions", {"messages": USER, "max_tokens": 100_000}, "max_tokens"),
    ("/v1/chat/completions", {"messages": USER, "surprise": 1}, "surprise"),
    ("/v1/chat/completions", {"messages": USER, "temperature": True}, "temperature"),
    ("/v1/sessions", {"question": "q", "surprise": 1}, "surprise"),
])
async def test_12_types_limits_and_unknown_fields(http, path, body, param):
    await _refused(http, await http.post(path, json=body), 400, param)


async def test_13_ended_sessions_leave_at_once_and_reads_keep_nothing_alive(http, engine, idle_blocks):
    finished = await _session(http)
    await http.post(f"/v1/sessions/{finished}/context", json={"op": "done"})
    answer = await http.post(f"/v1/sessions/{finished}/generate", json={"max_tokens": 2})
    assert answer.status_code == 200
    aborted = await _session(http)
    await http.delete(f"/v1/sessions/{aborted}")
    assert engine.live_sessions == 0  # neither is held by the registry or the engine
    assert (await http.get(f"/v1/sessions/{finished}")).json()["state"] == "finished"
    assert (await http.get(f"/v1/sessions/{aborted}")).json()["state"] == "aborted"
    r = await http.post(f"/v1/sessions/{finished}/context", json={"op": "done"})
    await _refused(http, r, 409, "session_id", "session_state")


async def test_13_reads_do_not_reset_the_ttl(keyed_server, engine):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=keyed_server, headers=headers) as http:
        sid = (await http.post("/v1/sessions", json={"question": "polled"})).json()["id"]
        for _ in range(40):  # the TTL is 0.5 s; reading every 0.05 s must not keep it alive
            state = (await http.get(f"/v1/sessions/{sid}")).json()["state"]
            if state == "aborted":
                break
            await asyncio.sleep(0.05)
        assert state == "aborted"


async def test_13_a_cap_on_open_sessions(capped_server, engine, idle_blocks):
    async with httpx.AsyncClient(base_url=capped_server) as http:
        ids = [(await http.post("/v1/sessions", json={"question": f"q{i}"})).json()["id"] for i in range(3)]
        await _refused(http, await http.post("/v1/sessions", json={"question": "one too many"}), 429, None,
                       "too_many_sessions")
        await http.delete(f"/v1/sessions/{ids[0]}")
        again = await http.post("/v1/sessions", json={"question": "room again"})
        assert again.status_code == 200
        for sid in [*ids[1:], again.json()["id"]]:
            assert (await http.delete(f"/v1/sessions/{sid}")).status_code == 200
    assert engine.live_sessions == 0
    assert await engine.wait_for_blocks(idle_blocks, timeout_s=10) == idle_blocks


async def test_metrics_can_require_the_key(guarded_server):
    async with httpx.AsyncClient(base_url=guarded_server) as http:
        r = await http.get("/metrics")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        text = (await http.get("/metrics", headers={"Authorization": f"Bearer {API_KEY}"})).text
        assert "# TYPE streamrag_tokens_reused_total counter" in text and "http_requests_total" in text
