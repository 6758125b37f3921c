"""`ServerError`: what a streamrag server answered when it refused, as the engine's typed errors."""

from __future__ import annotations

from engine.errors import (
    ConfigError,
    ContextClosedError,
    EngineDeadError,
    PromptTooLongError,
    SessionStateError,
    StreamRAGError,
)


class ServerError(StreamRAGError, RuntimeError):
    """The server answered with an error: `status` (0 for an error event mid-stream) and its message.

    Errors the server names with a code raise a subclass that is also the engine's own typed
    error (`ContextClosedError`, `SessionStateError`, `PromptTooLongError`, `EngineDeadError`,
    `ConfigError` for bad input, naming the server's `param` as its `field`), so a caller catches
    the same thing whatever the backend.
    """

    def __init__(self, status: int, message: str, url: str, code: str | None = None, param: str | None = None):
        self.status = status
        self.code = code
        self.field = param or "request"
        self.detail = message  # as ConfigError has it
        Exception.__init__(self, f"{url}: HTTP {status}: {message}" if status else f"{url}: {message}")

    @staticmethod
    def of(status: int, message: str, url: str, code: str | None, param: str | None = None) -> ServerError:
        return _TYPED.get(code, ServerError)(status, message, url, code, param)


class ServerContextClosedError(ServerError, ContextClosedError):
    pass


class ServerSessionStateError(ServerError, SessionStateError):
    pass


class ServerPromptTooLongError(ServerError, PromptTooLongError):
    pass


class ServerEngineDeadError(ServerError, EngineDeadError):
    pass


class ServerInvalidRequestError(ServerError, ConfigError):
    pass


_TYPED: dict[str | None, type[ServerError]] = {
    "context_closed": ServerContextClosedError, "session_state": ServerSessionStateError,
    "context_length_exceeded": ServerPromptTooLongError, "engine_dead": ServerEngineDeadError,
    "engine_unavailable": ServerEngineDeadError, "invalid_value": ServerInvalidRequestError,
}
