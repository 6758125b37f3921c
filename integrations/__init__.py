"""Framework integrations: LlamaIndex (`integrations.llamaindex`) and LangChain (`integrations.langchain`).

This package re-exports the framework-neutral parts; the framework packages import their
framework, so `import integrations` pays for neither.
"""

from integrations.blocking import call_blocking, iterate_blocking
from integrations.client import ChatDelta, EngineClient, Usage
from integrations.client_session import ClientSession
from integrations.context_feed import ContextFeed, FeedEvent, active_feed, feeding
from integrations.http_client import StreamRAGClient
from integrations.runner import EngineLoopError, EngineRunner
from integrations.server_errors import ServerError
from integrations.session_handle import SessionHandle
from integrations.streaming_query import StreamingQuery

__all__ = [
    "ChatDelta",
    "ClientSession",
    "ContextFeed",
    "EngineClient",
    "EngineLoopError",
    "EngineRunner",
    "FeedEvent",
    "ServerError",
    "SessionHandle",
    "StreamRAGClient",
    "StreamingQuery",
    "Usage",
    "active_feed",
    "call_blocking",
    "feeding",
    "iterate_blocking",
]
