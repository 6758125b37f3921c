"""Dependencies the routes share: the app's state objects, the API key check, sampling."""

from __future__ import annotations

import secrets
import time

from fastapi import Request

from app.errors import APIError
from app.schemas import SamplingFields
from engine import Engine, Sampling


def require_api_key(request: Request) -> None:
    """Every route but /health: `Authorization: Bearer <key>` when a key is configured."""
    expected = request.app.state.settings.api_key
    if not expected:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), expected):
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


def sampling_args(request: Request, body: SamplingFields) -> Sampling:
    return Sampling(max_tokens=body.token_limit(request.app.state.settings.max_tokens_default),
                    temperature=body.temperature, top_p=body.top_p, seed=body.seed, ignore_eos=body.ignore_eos)


def now() -> float:
    return time.monotonic()
