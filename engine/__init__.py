"""The streaming-prompt engine: sessions whose context is prefilled while it streams in."""

from engine.config import EngineConfig
from engine.errors import (
    ConfigError,
    ContextClosedError,
    PromptTooLongError,
    SessionStateError,
    StreamRAGError,
)
from engine.gate import Gate
from engine.remote_backend import RemoteEngine
from engine.remote_session import RemoteSession
from engine.session import StreamSession
from engine.stream_engine import StreamEngine
from engine.types import Chunk, Completion, ContextReceipt, Delta, PreemptionStats, SessionStats

__all__ = [
    "Chunk",
    "Completion",
    "ConfigError",
    "ContextClosedError",
    "ContextReceipt",
    "Delta",
    "EngineConfig",
    "Gate",
    "PreemptionStats",
    "PromptTooLongError",
    "RemoteEngine",
    "RemoteSession",
    "SessionStateError",
    "SessionStats",
    "StreamEngine",
    "StreamRAGError",
    "StreamSession",
]
