"""Structured output: OpenAI's `response_format` as the JSON Schema an answer must match.

    {"type": "text"}                                        no constraint
    {"type": "json_object"}                                 any JSON object: {"type": "object"}
    {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}   that schema

`Sampling.json_schema` carries the schema as canonical JSON text (sorted keys), so `Sampling`
stays a frozen, hashable value and two requests with the same schema compare equal (vLLM's
grammar compiler caches by it). The local engine hands it to vLLM's structured outputs
(engine/local/params.py), the vLLM-servers backend sends it as vLLM's `structured_outputs`, and
the HTTP client sends it back as `response_format`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from engine.errors import ConfigError

ANY_OBJECT = {"type": "object"}


def schema_text(schema: Mapping[str, Any]) -> str:
    """A JSON Schema as `Sampling.json_schema` holds it."""
    if not isinstance(schema, Mapping):
        raise ConfigError("response_format", f"the JSON schema must be an object, got {type(schema).__name__}")
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def from_response_format(response_format: Mapping[str, Any] | None) -> str | None:
    """`Sampling.json_schema` for an OpenAI `response_format` (None: no constraint)."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return schema_text(ANY_OBJECT)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema"), Mapping):
            raise ConfigError("response_format", 'json_schema: give {"name": ..., "schema": {...}}')
        return schema_text(spec["schema"])
    raise ConfigError("response_format", f"type {kind!r}: use 'text', 'json_object' or 'json_schema'")


def to_response_format(json_schema: str | None) -> dict[str, Any] | None:
    """The OpenAI `response_format` that asks for `json_schema` (the inverse of the above)."""
    if json_schema is None:
        return None
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": json.loads(json_schema)}}


def check_schema_text(text: str) -> None:
    """`text` must be JSON of an object (whether the backend can compile it is its own check)."""
    try:
        schema = json.loads(text)
    except (TypeError, ValueError) as error:
        raise ConfigError("json_schema", f"not JSON: {error}") from None
    if not isinstance(schema, dict):
        raise ConfigError("json_schema", f"a JSON Schema is an object, got {type(schema).__name__}")
