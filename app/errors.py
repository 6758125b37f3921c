"""OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}` with a 4xx status.

Every client mistake maps to a 4xx here; a 500 means a bug in streamrag, never bad input.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine import (
    ConfigError,
    ContextClosedError,
    EngineDeadError,
    PromptTooLongError,
    SessionStateError,
    StreamRAGError,
)

log = logging.getLogger("streamrag.app")


class APIError(StreamRAGError):
    """An error answered to the client as OpenAI does."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def not_found(what: str, name: str, param: str) -> APIError:
    return APIError(404, f"{what} {name!r} does not exist", "not_found_error", param, f"{what}_not_found")


def from_engine_error(error: Exception, param: str | None = None) -> APIError:
    """The engine's typed errors, as the HTTP answers a client can act on."""
    if isinstance(error, EngineDeadError):
        return APIError(503, f"the engine died: {error}; retry shortly", "service_unavailable_error", None, "engine_dead")
    if isinstance(error, PromptTooLongError):
        return APIError(400, str(error), param=param, code="context_length_exceeded")
    if isinstance(error, ConfigError):
        return APIError(400, str(error), param=error.field, code="invalid_value")
    if isinstance(error, ContextClosedError):
        return APIError(409, str(error), "conflict_error", "op", "context_closed")
    if isinstance(error, SessionStateError):
        return APIError(409, str(error), "conflict_error", param, "session_state")
    if isinstance(error, ValueError):
        return APIError(400, str(error), param=param, code="invalid_value")
    raise error


def _param(loc: tuple) -> str | None:
    """The field's path: `messages.0.content`, without pydantic's union-branch tags."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path") and not _is_tag(str(p))]
    return ".".join(parts) or None


def _is_tag(part: str) -> bool:
    return "[" in part or part in ("str", "int", "float", "bool", "list", "dict", "none", "constrained-str")


def _best(errors: list[dict]) -> dict:
    """Of a union's per-branch errors, the one that says most: not a mere type mismatch."""
    return next((e for e in errors if not e.get("type", "").endswith("_type")), errors[0])


def install(app: FastAPI) -> None:
    """Every error, the framework's included, in OpenAI's shape; never a plain-text 500."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors()) or [{"loc": (), "msg": "invalid request"}]
        first = _best(errors)
        param = _param(tuple(first.get("loc", ())))
        if first.get("type") == "json_invalid":
            return APIError(400, "the body is not valid JSON (or not UTF-8)", param=None, code="invalid_json").response()
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        return APIError(400, message, param=param, code="invalid_value").response()

    @app.exception_handler(StarletteHTTPException)
    async def _framework(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error"}.get(
            exc.status_code, "invalid_request_error" if exc.status_code < 500 else "server_error")
        error = APIError(exc.status_code, str(exc.detail), kind, None, _CODES.get(exc.status_code))
        return JSONResponse(error.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _last_resort(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, StreamRAGError):  # a typed error a route did not map: still the client's
            try:
                return from_engine_error(exc).response()
            except Exception:
                pass
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return APIError(500, "internal error; the server log has the details", "server_error", None,
                        "internal_error").response()


_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
