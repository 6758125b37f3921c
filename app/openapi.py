"""The OpenAPI document, made to tell the truth about what the app answers.

FastAPI documents a 422 for every route with a body; this app answers 400 (OpenAI's shape),
so the 422s and their schemas are dropped. Every route declares its own answers (status codes
and models) where it is defined.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi


def openapi_document(app: FastAPI) -> dict:
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                      description="OpenAI-compatible chat over streaming retrieval, and the session API.")
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    _limits(schemas, app)
    app.openapi_schema = doc
    return doc


def _limits(schemas: dict, app: FastAPI) -> None:
    """Write this server's own limits into the document, so that what it declares valid it
    accepts: `max_tokens` up to `max_tokens_limit`, token ids within the vocabulary, a token
    prompt that leaves room for the answer. (What depends on a text's tokenization cannot be
    declared: a prompt too long for the context is a 400, too many characters a 413.)"""
    settings = app.state.settings
    supervisor = getattr(app.state, "supervisor", None)
    if settings.max_tokens_limit is not None:
        for model in ("ChatCompletionRequest", "CompletionRequest", "GenerateRequest"):
            for field in ("max_tokens", "max_completion_tokens"):
                _set(schemas.get(model, {}).get("properties", {}).get(field, {}), "integer",
                     maximum=settings.max_tokens_limit)
    if supervisor is None or getattr(supervisor.engine, "template", None) is None:
        return
    vocab = len(supervisor.engine.template.tokenizer)
    room = supervisor.engine.max_model_len - (settings.max_tokens_limit or settings.max_tokens_default) - 1
    tokens = schemas.get("DetokenizeRequest", {}).get("properties", {}).get("tokens", {})
    if tokens.get("type") == "array":
        tokens.setdefault("items", {}).update(minimum=0, maximum=vocab - 1)
    prompt = schemas.get("CompletionRequest", {}).get("properties", {}).get("prompt", {})
    for branch in prompt.get("anyOf", []):
        for tokens in (branch, branch.get("items", {})):  # a list of ids, or a list of one list of ids
            if tokens.get("type") == "array" and tokens.get("items", {}).get("type") == "integer":
                tokens["maxItems"] = room
                tokens["items"].update(minimum=0, maximum=vocab - 1)


def _set(schema: dict, kind: str, **bounds) -> None:
    for branch in [schema, *schema.get("anyOf", [])]:
        if branch.get("type") == kind:
            branch.update(bounds)
