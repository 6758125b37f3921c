"""Dependencies the routes share: the app's state objects, the API key check, sampling."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable

from fastapi import Request

from app.errors import APIError
from app.schemas import SamplingFields
from engine import Engine, Sampling
from engine.errors import ConfigError
from engine.structured_output import from_response_format


def require_api_key(request: Request) -> None:
    """Every route but /health: `Authorization: Bearer <key>` when a key is configured."""
    expected = request.app.state.settings.api_key
    if not expected:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    # Bytes, not str: compare_digest refuses non-ASCII str, and a header may carry anything.
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), expected.encode()):
        raise APIError(401, "missing or wrong API key: send `Authorization: Bearer <key>`",
                       "authentication_error", None, "invalid_api_key")


def current_engine(request: Request) -> Engine:
    """The engine to use now, or a 503 while it is dead or restarting (never a half-dead one)."""
    supervisor = request.app.state.supervisor
    health = supervisor.health()
    if not health.ok:
        raise APIError(503, f"the engine is unavailable: {health.reason}; retry shortly",
                       "service_unavailable_error", None, "engine_unavailable")
    return supervisor.engine


def check_model(request: Request, model: str | None) -> None:
    served = request.app.state.settings.model_name
    if model not in (None, "", served):
        raise APIError(404, f"model {model!r} is not served here; this server serves {served!r}",
                       "not_found_error", "model", "model_not_found")


def sampling_args(request: Request, body: SamplingFields, engine: Engine, prompt_tokens: int = 1) -> Sampling:
    """The request's sampling. A `max_tokens` the request asks for must fit the server's limit
    and the context after `prompt_tokens` (a session's prompt is known only at its gate: there
    it is capped to what is left); a default it did not ask for is capped to both instead."""
    settings = request.app.state.settings
    max_tokens = body.token_limit(settings.max_tokens_default)
    field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    asked = any(f in body.model_fields_set and getattr(body, f) is not None
                for f in ("max_tokens", "max_completion_tokens"))
    room = engine.max_model_len - prompt_tokens
    if not asked:
        max_tokens = max(1, min(max_tokens, settings.max_tokens_limit or max_tokens, room))
    if settings.max_tokens_limit is not None and max_tokens > settings.max_tokens_limit:
        raise APIError(400, f"{field}: {max_tokens} is above this server's limit of {settings.max_tokens_limit} "
                       "(max_tokens_limit); ask for fewer", param=field, code="invalid_value")
    if max_tokens > room:
        raise APIError(400, f"{field}: {max_tokens} tokens do not fit: the context is {engine.max_model_len} "
                       f"tokens and the prompt takes {prompt_tokens}; ask for at most {max(room, 0)}",
                       param=field, code="context_length_exceeded")
    # The model's own defaults (its generation_config.json) for what the request leaves out.
    model = {k: v for k, v in getattr(request.app.state, "generation_defaults", {}).items()
             if k not in body.model_fields_set}
    chosen = {k: getattr(body, k) for k in ("temperature", "top_p", "frequency_penalty", "presence_penalty",
                                            "repetition_penalty")}
    sampling = Sampling(max_tokens=max_tokens, seed=body.seed, ignore_eos=body.ignore_eos, stop=body.stops,
                        logprobs=body.logprob_count,
                        json_schema=from_response_format(body.response_format.model_dump(by_alias=True))
                        if body.response_format else None,
                        **{**chosen, **model})
    try:
        engine.check_sampling(sampling)  # a schema the engine cannot compile: refused before any work
    except ConfigError as error:
        param = "response_format" if error.field == "json_schema" else error.field
        raise APIError(400, f"{param}: {error.detail}", param=param, code="invalid_value") from None
    return sampling


def check_size(request: Request, texts: Iterable[str], param: str, items: int | None = None) -> None:
    """413 naming `param` when a request carries more text (or messages) than the settings allow;
    checked before anything is tokenized."""
    settings = request.app.state.settings
    if items is not None and items > settings.max_messages:
        raise APIError(413, f"{param}: {items} messages; this server takes at most {settings.max_messages} "
                       "(max_messages)", param=param, code="request_too_large")
    chars = sum(len(t) for t in texts)
    if chars > settings.max_chars:
        raise APIError(413, f"{param}: {chars} characters of text; this server takes at most {settings.max_chars} "
                       "(max_chars) in one request", param=param, code="request_too_large")


def now() -> float:
    return time.monotonic()
