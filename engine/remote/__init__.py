"""The engine over running vLLM OpenAI servers: prefix warming, one replica per session, failover."""

from engine.remote.engine import VLLMServersEngine
from engine.remote.session import VLLMServersSession

__all__ = ["VLLMServersEngine", "VLLMServersSession"]
