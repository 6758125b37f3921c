"""OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}` with a 4xx status.

Every client mistake maps to a 4xx here; a 500 means a bug in streamrag, never bad input.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from engine import (
    ConfigError,
    ContextClosedError,
    EngineDeadError,
    PromptTooLongError,
    SessionStateError,
    StreamRAGError,
)


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
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or None


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = _param(tuple(first.get("loc", ())))
        if first.get("type") == "json_invalid":
            return APIError(400, "the body is not valid JSON", param=None, code="invalid_json").response()
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        return APIError(400, message, param=param, code="invalid_value").response()

    @app.exception_handler(PromptTooLongError)
    async def _too_long(_: Request, exc: PromptTooLongError) -> JSONResponse:
        return from_engine_error(exc, "messages").response()
