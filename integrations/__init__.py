"""Framework integrations: LlamaIndex (`integrations.llamaindex`) and LangChain (`integrations.langchain`).

This package re-exports the framework-neutral parts; the framework packages import their
framework, so `import integrations` pays for neither.
"""

from integrations.client import ChatDelta, EngineClient, Usage
from integrations.context_feed import ContextFeed, FeedEvent, active_feed, feeding
from integrations.remote import RemoteEngine, RemoteError, RemoteSession
from integrations.blocking import call_blocking, iterate_blocking
from integrations.runner import EngineLoopError, EngineRunner
from integrations.session_handle import SessionHandle
from integrations.streaming_query import StreamingQuery

__all__ = [
    "ChatDelta",
    "ContextFeed",
    "EngineClient",
    "EngineLoopError",
    "EngineRunner",
    "FeedEvent",
    "RemoteEngine",
    "RemoteError",
    "RemoteSession",
    "SessionHandle",
    "StreamingQuery",
    "Usage",
    "active_feed",
    "call_blocking",
    "feeding",
    "iterate_blocking",
]
