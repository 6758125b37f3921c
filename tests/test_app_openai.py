"""The OpenAI-compatible surface, through the official `openai` client and on the wire."""

from __future__ import annotations

import httpx
import pytest
from openai import AsyncOpenAI

from engine import Sampling
from tests.sse import read_events

MODEL = "tiny"


@pytest.fixture
def client(app_server):
    return AsyncOpenAI(base_url=f"{app_server}/v1", api_key="unused", max_retries=0)


def _chat_prompt_ids(engine, messages):
    text = engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return engine.template.encode(text)


async def test_chat_stream_through_the_openai_client(client, engine):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a KV cache?"}]
    stream = await client.chat.completions.create(
        model=MODEL, messages=messages, stream=True, temperature=0, max_tokens=8,
        stream_options={"include_usage": True},
    )
    text, ids, usage = [], [], None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            ids.extend(choice.model_extra.get("token_ids", []))
    expected = await engine.complete(prompt_token_ids=_chat_prompt_ids(engine, messages), sampling=Sampling(max_tokens=8))
    assert ids == list(expected.token_ids)
    assert "".join(text) == expected.text
    assert usage.completion_tokens == 8 and usage.prompt_tokens == len(_chat_prompt_ids(engine, messages))


async def test_chat_without_stream(client, engine):
    messages = [{"role": "user", "content": "Name a prime."}]
    out = await client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=6)
    expected = await engine.complete(prompt_token_ids=_chat_prompt_ids(engine, messages), sampling=Sampling(max_tokens=6))
    assert out.choices[0].message.content == expected.text
    assert out.choices[0].finish_reason == "length"
    assert out.usage.completion_tokens == 6


async def test_completions_with_token_ids(client, engine):
    prompt = engine.template.encode("the cache holds keys and values")
    expected = await engine.complete(prompt_token_ids=prompt, sampling=Sampling(max_tokens=5))
    out = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=5, temperature=0)
    assert out.choices[0].text == expected.text
    assert out.choices[0].model_extra["token_ids"] == list(expected.token_ids)
    stream = await client.completions.create(model=MODEL, prompt="the cache holds keys and values",
                                             max_tokens=5, temperature=0, stream=True)
    ids = [t async for c in stream for ch in c.choices for t in ch.model_extra["token_ids"]]
    assert ids == list(expected.token_ids)


async def test_retrieval_chat_through_the_openai_client(client):
    """Extension chunks only when asked for: without `events`, every chunk has a choice."""
    for events in (False, True):
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "How does try finally work?"}],
            stream=True, temperature=0, max_tokens=6,
            extra_body={"retrieval": {"collection": "python-docs", "top_k": 2, "mode": "update", "events": events}},
        )
        content_chunks, extension = 0, []
        async for chunk in stream:
            if chunk.choices:
                content_chunks += 1
            else:
                extension.append(chunk.model_extra["streamrag"])
        assert content_chunks >= 1
        if events:
            assert any("context" in e for e in extension) and any("gate" in e for e in extension)
        else:
            assert extension == []


@pytest.mark.parametrize("mode", ["append", "update"])
async def test_context_events_come_before_gate_before_tokens(app_server, mode):
    body = {"model": MODEL, "stream": True, "temperature": 0, "max_tokens": 4,
            "messages": [{"role": "user", "content": "What does the with statement do?"}],
            "retrieval": {"collection": "python-docs", "top_k": 3, "mode": mode, "events": True,
                          "queries": ["context manager __enter__ __exit__"]},
            "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient(base_url=app_server, timeout=60) as http:
        events = await read_events(http, "/v1/chat/completions", body)
    names = [name for name, _ in events]
    first_token = next(i for i, (n, d) in enumerate(events) if n == "message" and d != "[DONE]" and d["choices"])
    assert names.count("gate") == 1
    gate = names.index("gate")
    contexts = [i for i, n in enumerate(names) if n == "context"]
    assert contexts and contexts[0] < gate < first_token
    context = events[contexts[0]][1]["streamrag"]["context"]
    assert context["op"] == mode and context["chunk_ids"] and context["prompt_tokens"] > 0
    # Each chunk as a client shows it: the id it had, where it came from, its text.
    assert [c["id"] for c in context["chunks"]] == context["chunk_ids"]
    assert all(c["text"] and c["source"] for c in context["chunks"])
    assert events[-1] == ("message", "[DONE]")
    usage = events[-2][1]["usage"]["streamrag"]
    assert usage["gate_reason"] == "done" and usage["chunks"] >= 1
    for key in ("retrieval_wait_ms", "prefilled_before_gate", "reused_tokens", "recomputed_tokens",
                "invalidated_tokens", "tail_prefill_tokens", "ttft_from_gate_ms", "ttft_from_request_ms"):
        assert key in usage


async def test_models_health_and_collections(app_server):
    async with httpx.AsyncClient(base_url=app_server) as http:
        assert (await http.get("/health")).json()["status"] == "ok"
        assert (await http.get("/v1/models")).json()["data"][0]["id"] == MODEL
        names = [c["name"] for c in (await http.get("/v1/collections")).json()["data"]]
        assert "python-docs" in names
        added = await http.post("/v1/collections/notes/documents", json={"documents": [
            {"text": "The gate opens when retrieval is done.", "id": "gate-note"}]})
        assert added.status_code == 200 and added.json()["chunks"] == 1
        again = await http.post("/v1/collections/notes/documents", json={"documents": [
            {"text": "The gate opens when retrieval is done.", "id": "gate-note"}]})
        assert again.json()["embedded"] == 0  # idempotent
        metrics = (await http.get("/metrics")).text
        assert "streamrag_kv_blocks_in_use" in metrics and "http_requests_total" in metrics


async def test_penalties_reach_the_engine_and_are_bounded(client, engine):
    """`frequency_penalty`, `presence_penalty` and vLLM's `repetition_penalty` change greedy
    answers exactly as the same `Sampling` does in the engine; out of range is a 400 naming it."""
    import openai

    messages = [{"role": "user", "content": "Say something long."}]
    ids = _chat_prompt_ids(engine, messages)
    plain = await engine.complete(prompt_token_ids=ids, sampling=Sampling(max_tokens=24, ignore_eos=True))
    penalised = Sampling(max_tokens=24, ignore_eos=True, frequency_penalty=1.5, presence_penalty=0.5,
                         repetition_penalty=1.8)
    expected = await engine.complete(prompt_token_ids=ids, sampling=penalised)
    assert expected.token_ids != plain.token_ids  # the tiny model's greedy answer repeats itself
    assert len(set(expected.token_ids)) >= len(set(plain.token_ids))
    answer = await client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=24, frequency_penalty=1.5, presence_penalty=0.5,
        extra_body={"repetition_penalty": 1.8, "ignore_eos": True})
    assert answer.choices[0].model_extra["token_ids"] == list(expected.token_ids)
    for field, value in (("frequency_penalty", 2.5), ("presence_penalty", -3), ("repetition_penalty", 0)):
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2,
                                                 extra_body={field: value})
        assert refused.value.body["param"] == field


async def test_tokenize_detokenize_and_version_as_vllm_has_them(app_server, engine):
    async with httpx.AsyncClient(base_url=app_server) as http:
        text = "Streaming prefill overlaps retrieval."
        r = await http.post("/tokenize", json={"model": MODEL, "prompt": text, "add_special_tokens": False})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["tokens"] == engine.template.encode(text) and body["count"] == len(body["tokens"])
        assert body["max_model_len"] == engine.max_model_len
        messages = [{"role": "user", "content": text}]
        chat = (await http.post("/tokenize", json={"messages": messages})).json()
        assert chat["tokens"] == _chat_prompt_ids(engine, messages)
        back = await http.post("/detokenize", json={"model": MODEL, "tokens": body["tokens"]})
        assert back.json() == {"prompt": text}
        version = (await http.get("/version")).json()["version"]
        assert version and isinstance(version, str)
        for path, bad, param in (("/tokenize", {"prompt": "a", "messages": messages}, None),
                                 ("/detokenize", {"tokens": [10**9]}, "tokens"),
                                 ("/detokenize", {"tokens": [True]}, "tokens.0")):
            r = await http.post(path, json=bad)
            assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


async def test_the_models_generation_defaults_fill_what_a_request_leaves_out(engine):
    """As vLLM's server does with a model's generation_config.json: its sampling fields apply
    to requests that omit them, and a request's own values win."""
    from app.main import create_app
    from app.settings import Settings
    from tests.app_fixtures import start_server, stop_server

    app = create_app(Settings(model="tiny", retrieval=False), engine=engine)
    server, task, url = await start_server(app)
    app.state.generation_defaults = {"temperature": 0.0, "repetition_penalty": 1.8}  # as if the model said so
    messages = [{"role": "user", "content": "Say something long."}]
    ids = _chat_prompt_ids(engine, messages)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            async def answer(**fields):
                body = {"messages": messages, "max_tokens": 16, "ignore_eos": True, **fields}
                return (await http.post("/v1/chat/completions", json=body)).json()["choices"][0]["token_ids"]

            penalised = await engine.complete(prompt_token_ids=ids, sampling=Sampling(
                max_tokens=16, ignore_eos=True, repetition_penalty=1.8))
            plain = await engine.complete(prompt_token_ids=ids, sampling=Sampling(max_tokens=16, ignore_eos=True))
            assert await answer() == list(penalised.token_ids)
            assert await answer(repetition_penalty=1.0) == list(plain.token_ids)
    finally:
        await stop_server(server, task)


def test_generation_defaults_are_read_from_the_model_folder(tmp_path):
    from engine.models import generation_defaults

    (tmp_path / "generation_config.json").write_text(
        '{"temperature": 0.2, "top_p": 0.9, "do_sample": true, "max_new_tokens": 5, "repetition_penalty": true}')
    assert generation_defaults(tmp_path) == {"temperature": 0.2, "top_p": 0.9}
    assert generation_defaults(tmp_path / "missing") == {} and generation_defaults(None) == {}


async def test_retrieval_keeps_the_earlier_turns(app_server, engine):
    """With retrieval, the chat's earlier turns stay in the prompt, before the question; the
    prompt is exactly the template's, with the context the last ranking showed."""
    history = [{"role": "user", "content": "What is a for loop?"},
               {"role": "assistant", "content": "It runs its suite once per item."}]
    question = "And what does its else clause do?"
    body = {"model": MODEL, "stream": True, "temperature": 0, "max_tokens": 4,
            "messages": [{"role": "system", "content": "Be brief."}, *history, {"role": "user", "content": question}],
            "retrieval": {"collection": "python-docs", "top_k": 2, "events": True},
            "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient(base_url=app_server, timeout=60) as http:
        events = await read_events(http, "/v1/chat/completions", body)
    shown = [d["streamrag"]["context"] for n, d in events if n == "context"][-1]["chunks"]
    usage = events[-2][1]["usage"]
    rendered = engine.template.render(question, "Be brief.", [(m["role"], m["content"]) for m in history])
    chunks = sum(len(engine.template.chunk_ids(c["text"], i)) for i, c in enumerate(shown, start=1))
    assert usage["prompt_tokens"] == len(rendered.prefix_ids) + chunks + len(rendered.closing_ids)
    without = engine.template.render(question, "Be brief.")
    assert len(rendered.prefix_ids) > len(without.prefix_ids)


async def test_logprobs_through_the_openai_client(client, engine):
    """`logprobs`/`top_logprobs` (chat) and `logprobs` (completions) in OpenAI's shapes, with the
    engine's own values; tokens are named by their text."""
    messages = [{"role": "user", "content": "Name a color."}]
    ids = _chat_prompt_ids(engine, messages)
    expected = [t async for d in engine.complete_stream(prompt_token_ids=ids, sampling=Sampling(max_tokens=5, logprobs=2))
                for t in d.logprobs]
    out = await client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=5,
                                               logprobs=True, top_logprobs=2)
    content = out.choices[0].logprobs.content
    assert [c.token for c in content] == [engine.tokenizer.decode([t.token_id]) for t in expected]
    assert [c.logprob for c in content] == pytest.approx([t.logprob for t in expected], abs=1e-4)
    assert all(len(c.top_logprobs) == 2 and c.top_logprobs[0].logprob >= c.top_logprobs[1].logprob for c in content)
    stream = await client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=5,
                                                  logprobs=True, stream=True)
    streamed = [c async for chunk in stream if chunk.choices and chunk.choices[0].logprobs
                for c in chunk.choices[0].logprobs.content]
    assert [c.logprob for c in streamed] == pytest.approx([t.logprob for t in expected], abs=1e-4)
    assert all(c.top_logprobs == [] for c in streamed)
    text = await client.completions.create(model=MODEL, prompt=ids, max_tokens=5, temperature=0, logprobs=1)
    lp = text.choices[0].logprobs
    assert lp.token_logprobs == pytest.approx([t.logprob for t in expected], abs=1e-4)
    assert len(lp.tokens) == len(lp.top_logprobs) == len(lp.text_offset) == 5 and lp.text_offset[0] == 0
    plain = await client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=3)
    assert plain.choices[0].logprobs is None  # none asked, none sent
