"""The engine on vLLM in this process: `StreamEngine`, its sessions and its scheduler.

Importing this package loads nothing of vLLM; `engine.local.engine` imports it when started.
"""

from engine.local.engine import StreamEngine

__all__ = ["StreamEngine"]
