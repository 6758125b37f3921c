"""Typed errors raised at the engine's edges. Each message names the field and the fix.

`StreamRAGError` is the base of every error streamrag raises on purpose, in the engine, the
integrations, eval and the app (retrievers, which know nothing of the engine, have
`retrievers.RetrievalError`). A caller that wants "anything streamrag refused" catches it.
"""

from __future__ import annotations


class StreamRAGError(Exception):
    """Base class of every error streamrag raises on purpose."""


class ConfigError(StreamRAGError, ValueError):
    """A field of a config, a request or a call has a value that cannot work."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.detail = message  # without the field's name, for an edge that names the field its own way
        super().__init__(f"{field}: {message}")


class SessionStateError(StreamRAGError, RuntimeError):
    """A session call came in a state that does not allow it (e.g. `generate` twice)."""


class ContextClosedError(SessionStateError):
    """Context was pushed after `finish_context()` (or `last=True`) said retrieval is done."""


class PromptTooLongError(StreamRAGError, ValueError):
    """The prompt (plus at least one generated token) does not fit `max_model_len`."""

    def __init__(self, num_tokens: int, limit: int):
        self.num_tokens = num_tokens
        self.limit = limit
        super().__init__(
            f"prompt has {num_tokens} tokens but max_model_len is {limit}: "
            "send fewer or shorter chunks, or raise EngineConfig.max_model_len"
        )


class EngineDeadError(StreamRAGError, RuntimeError):
    """The model engine stopped (its process died or was killed); nothing in flight survives.

    Every live session ends with this error; a supervisor (the server's lifespan) restarts
    the engine or exits so that a process supervisor can.
    """


class VLLMInternalsError(StreamRAGError, RuntimeError):
    """The installed vLLM does not have what streamrag's scheduler relies on."""


class ModelError(StreamRAGError):
    """A model named in the settings cannot be served."""


class ModelNotPreparedError(ModelError):
    """The model's files are not on disk yet; the message names the command that puts them there."""


class ModelNotFoundError(ModelError):
    """The `model` field names neither a known model nor an existing Hugging Face folder."""
