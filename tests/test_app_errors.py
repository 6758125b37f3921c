"""Every client mistake is a 4xx with OpenAI's error shape, naming the `param`."""

from __future__ import annotations

import httpx
import pytest

from tests.app_fixtures import API_KEY

USER = [{"role": "user", "content": "hi"}]


async def _error(response: httpx.Response, status: int, type_: str, param: str | None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_ and error["param"] == param, error
    assert error["message"]
    return error


@pytest.fixture
async def http(app_server):
    async with httpx.AsyncClient(base_url=app_server, timeout=60) as client:
        yield client


async def test_malformed_json(http):
    r = await http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    await _error(r, 400, "invalid_request_error", None)


async def test_missing_messages(http):
    await _error(await http.post("/v1/chat/completions", json={"model": "tiny"}), 400, "invalid_request_error", "messages")


async def test_bad_value_names_the_nested_field(http):
    r = await http.post("/v1/chat/completions", json={"messages": USER, "temperature": 9})
    await _error(r, 400, "invalid_request_error", "temperature")


async def test_unknown_model(http):
    await _error(await http.post("/v1/chat/completions", json={"model": "gpt-9", "messages": USER}),
                 404, "not_found_error", "model")


async def test_unknown_session(http):
    await _error(await http.get("/v1/sessions/nope"), 404, "not_found_error", "session_id")
    r = await http.post("/v1/sessions/nope/context", json={"op": "done"})
    await _error(r, 404, "not_found_error", "session_id")


async def test_unknown_collection(http):
    body = {"messages": USER, "retrieval": {"collection": "missing"}}
    await _error(await http.post("/v1/chat/completions", json=body), 404, "not_found_error", "retrieval.collection")


async def test_prompt_over_the_limit(http, engine):
    long = "word " * (engine.max_model_len + 100)
    await _error(await http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": long}]}),
                 400, "invalid_request_error", "messages")
    await _error(await http.post("/v1/completions", json={"prompt": [5] * (engine.max_model_len + 5)}),
                 400, "invalid_request_error", "prompt")
    sid = (await http.post("/v1/sessions", json={"question": "q"})).json()["id"]
    r = await http.post(f"/v1/sessions/{sid}/context", json={"op": "append", "chunks": [{"text": long}]})
    await _error(r, 400, "invalid_request_error", "chunks")
    await http.delete(f"/v1/sessions/{sid}")


@pytest.mark.parametrize("gate, param", [({"min_chunks": -1}, "gate.min_chunks"),
                                         ({"max_wait_s": -1}, "gate.max_wait_s"),
                                         ({"stable_updates": 0}, "gate.stable_updates"),
                                         ({"bogus": 1}, "gate.bogus")])
async def test_bad_gate_values(http, gate, param):
    await _error(await http.post("/v1/sessions", json={"question": "q", "gate": gate}), 400, "invalid_request_error", param)
    body = {"messages": USER, "retrieval": {"collection": "python-docs", "gate": gate}}
    await _error(await http.post("/v1/chat/completions", json=body), 400, "invalid_request_error", f"retrieval.{param}")


async def test_context_after_done(http):
    sid = (await http.post("/v1/sessions", json={"question": "q"})).json()["id"]
    await http.post(f"/v1/sessions/{sid}/context", json={"op": "done"})
    r = await http.post(f"/v1/sessions/{sid}/context", json={"op": "append", "chunks": [{"text": "late"}]})
    await _error(r, 409, "conflict_error", "op")
    await http.delete(f"/v1/sessions/{sid}")


async def test_unsupported_options(http):
    await _error(await http.post("/v1/chat/completions", json={"messages": USER, "n": 2}), 400, "invalid_request_error", "n")
    await _error(await http.post("/v1/completions", json={"prompt": [10**9]}), 400, "invalid_request_error", "prompt")


async def test_api_key(keyed_server):
    async with httpx.AsyncClient(base_url=keyed_server) as http:
        assert (await http.get("/health")).status_code == 200  # health stays open
        assert (await http.get("/metrics")).status_code == 200  # and metrics, unless --metrics-auth
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/sessions")):
            r = await http.request(method, path, json={"question": "q"})
            await _error(r, 401, "authentication_error", None)
        r = await http.get("/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
        assert r.status_code == 200
