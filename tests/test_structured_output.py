"""Structured answers: OpenAI's `response_format` through the official client, and LangChain's
`with_structured_output`, on the shared engine (tiny model). The schemas have short answers
(an enum and a boolean): a random-weight model never closes a free-text string.
The session backends' own conformance is in tests/test_contract.py.
"""

from __future__ import annotations

import json
from typing import Literal

import openai
import pytest
from langchain_core.messages import AIMessage
from openai import AsyncOpenAI
from pydantic import BaseModel

from engine import ConfigError, Sampling
from engine.structured_output import from_response_format, schema_text
from integrations.langchain import StreamRAGChatModel

MODEL = "tiny"
VERDICT = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
           "required": ["answer", "sure"], "additionalProperties": False}
MESSAGES = [{"role": "user", "content": "Is a KV cache kept per request?"}]


class Verdict(BaseModel):
    answer: Literal["yes", "no"]
    sure: bool


@pytest.fixture
def client(app_server):
    return AsyncOpenAI(base_url=f"{app_server}/v1", api_key="unused", max_retries=0)


def _check(text: str) -> dict:
    answer = json.loads(text)
    assert set(answer) == {"answer", "sure"} and answer["answer"] in ("yes", "no") and isinstance(answer["sure"], bool)
    return answer


async def test_chat_answers_json_matching_the_schema(client, engine):
    fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT, "strict": True}}
    out = await client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0, max_tokens=40,
                                               response_format=fmt)
    _check(out.choices[0].message.content)
    assert out.choices[0].finish_reason == "stop"
    ids = engine.template.encode(engine.tokenizer.apply_chat_template(MESSAGES, tokenize=False,
                                                                      add_generation_prompt=True))
    expected = await engine.complete(prompt_token_ids=ids, sampling=Sampling(max_tokens=40,
                                                                             json_schema=schema_text(VERDICT)))
    assert out.choices[0].message.content == expected.text  # the same grammar, the same greedy tokens


async def test_the_sdks_parse_helper_returns_the_pydantic_object(client):
    out = await client.chat.completions.parse(model=MODEL, messages=MESSAGES, temperature=0, max_tokens=40,
                                              response_format=Verdict)
    parsed = out.choices[0].message.parsed
    assert isinstance(parsed, Verdict) and parsed.model_dump() == _check(out.choices[0].message.content)


async def test_retrieval_chat_streams_a_structured_answer(client):
    """With retrieval the answer is its session's; the schema still holds (its own vLLM request)."""
    stream = await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, temperature=0, max_tokens=40, stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT}},
        extra_body={"retrieval": {"collection": "python-docs", "top_k": 2, "mode": "update"}})
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    _check(text)


async def test_json_object_mode_answers_an_object(client):
    out = await client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0, max_tokens=12,
                                               response_format={"type": "json_object"})
    choice = out.choices[0]
    assert choice.message.content.startswith("{")
    if choice.finish_reason == "stop":  # a random model may fill its 12 tokens with one long key
        assert isinstance(json.loads(choice.message.content), dict)


@pytest.mark.parametrize("fmt", [
    {"type": "json_schema"},                                                    # no schema
    {"type": "xml"},                                                            # no such type
    {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object",
                                                                    "properties": {"a": {"type": "nonsense"}}}}},
])
async def test_a_bad_response_format_is_a_400_naming_it(client, fmt):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4, response_format=fmt)
    assert "response_format" in str(caught.value)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        await client.completions.create(model=MODEL, prompt="a", max_tokens=4, extra_body={"response_format": fmt})


def test_response_format_maps_to_the_engines_schema():
    assert from_response_format(None) is None and from_response_format({"type": "text"}) is None
    assert json.loads(from_response_format({"type": "json_object"})) == {"type": "object"}
    spec = {"type": "json_schema", "json_schema": {"name": "v", "schema": VERDICT}}
    assert json.loads(from_response_format(spec)) == VERDICT
    with pytest.raises(ConfigError, match="response_format"):
        from_response_format({"type": "json_schema", "json_schema": {"name": "v"}})
    with pytest.raises(ConfigError, match="json_schema"):
        Sampling(json_schema="[1, 2]")


@pytest.fixture
async def model(engine) -> StreamRAGChatModel:
    return StreamRAGChatModel(engine=engine, max_tokens=40)


async def test_langchain_with_structured_output_returns_the_pydantic_object(model):
    verdict = await model.with_structured_output(Verdict).ainvoke("Is a KV cache kept per request?")
    assert isinstance(verdict, Verdict)
    as_dict = await model.with_structured_output(VERDICT).ainvoke("Is a KV cache kept per request?")
    assert as_dict == verdict.model_dump()  # the same schema, the same greedy answer


async def test_langchain_include_raw_and_json_mode(model):
    out = await model.with_structured_output(Verdict, include_raw=True).ainvoke("Is it?")
    assert isinstance(out["raw"], AIMessage) and out["parsing_error"] is None
    assert out["parsed"] == Verdict.model_validate_json(out["raw"].content)
    short = StreamRAGChatModel(engine=model.engine, max_tokens=3)  # too short to close the JSON
    cut = await short.with_structured_output(Verdict, include_raw=True).ainvoke("Is it?")
    assert cut["parsed"] is None and cut["parsing_error"] is not None and cut["raw"].content.startswith("{")
    with pytest.raises(ValueError, match="method"):
        model.with_structured_output(Verdict, method="tools")
