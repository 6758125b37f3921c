"""The streaming-prompt engine: sessions whose context is prefilled while it streams in.

`import engine` is light: the contract, config, types, errors and the gate. The backends are
imported on first use, so a client of a streamrag server never loads vLLM:

    engine.StreamEngine        engine/local/   vLLM in this process
    engine.VLLMServersEngine   engine/remote/  running vLLM OpenAI servers
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from engine.config import EngineConfig
from engine.contract import Engine, Session
from engine.errors import (
    ConfigError,
    ContextClosedError,
    EngineDeadError,
    PromptTooLongError,
    SessionStateError,
    StreamRAGError,
)
from engine.gate import Gate
from engine.types import (
    ChunkLike,
    Completion,
    ContextReceipt,
    Delta,
    Health,
    PreemptionStats,
    Sampling,
    SessionStats,
    TokenLogprob,
)

if TYPE_CHECKING:
    from engine.local import StreamEngine
    from engine.remote import VLLMServersEngine

_LAZY = {"StreamEngine": "engine.local", "VLLMServersEngine": "engine.remote"}

__all__ = [
    "ChunkLike",
    "Completion",
    "ConfigError",
    "ContextClosedError",
    "ContextReceipt",
    "Delta",
    "Engine",
    "EngineConfig",
    "EngineDeadError",
    "Gate",
    "Health",
    "PreemptionStats",
    "PromptTooLongError",
    "Sampling",
    "Session",
    "SessionStateError",
    "SessionStats",
    "TokenLogprob",
    "StreamEngine",
    "StreamRAGError",
    "VLLMServersEngine",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
