"""Typed errors raised at the engine's edges. Each message names the field and the fix."""

from __future__ import annotations


class StreamRAGError(Exception):
    """Base class of every error streamrag raises on purpose."""


class ConfigError(StreamRAGError, ValueError):
    """An `EngineConfig` field (or another setting) has a value that cannot work."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class SessionStateError(StreamRAGError, RuntimeError):
    """A session call came in a state that does not allow it (e.g. `generate` twice)."""


class ContextClosedError(SessionStateError):
    """Context was pushed after `finish_context()` said retrieval is done."""


class PromptTooLongError(StreamRAGError, ValueError):
    """The prompt (plus at least one generated token) does not fit `max_model_len`."""

    def __init__(self, num_tokens: int, limit: int):
        self.num_tokens = num_tokens
        self.limit = limit
        super().__init__(
            f"prompt has {num_tokens} tokens but max_model_len is {limit}: "
            "send fewer or shorter chunks, or raise EngineConfig.max_model_len"
        )
