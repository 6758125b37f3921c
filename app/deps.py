"""Dependencies the routes share: the app's state objects, the API key check, sampling."""

from __future__ import annotations

import secrets
import time

from fastapi import Request

from app.errors import APIError
from app.runs import SamplingArgs
from app.schemas import Sampling


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


def check_model(request: Request, model: str | None) -> None:
    served = request.app.state.settings.model_name
    if model not in (None, "", served):
        raise APIError(404, f"model {model!r} is not served here; this server serves {served!r}",
                       "not_found_error", "model", "model_not_found")


def sampling_args(request: Request, body: Sampling) -> SamplingArgs:
    return SamplingArgs(
        max_tokens=body.token_limit(request.app.state.settings.max_tokens_default),
        temperature=body.temperature, top_p=body.top_p, seed=body.seed,
    )


def now() -> float:
    return time.monotonic()
