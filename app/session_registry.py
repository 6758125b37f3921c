"""`SessionRegistry`: the HTTP session API's sessions, with a time-to-live.

A pushed-context session lives across requests, so somebody must end the ones a client
forgot: a session that sees no call for `ttl_s` is aborted (its KV blocks freed) and
removed. A session that is generating is never reaped mid-stream.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager
from dataclasses import dataclass

from app.errors import not_found
from engine import StreamSession


@dataclass
class _Entry:
    session: StreamSession
    last_used: float
    busy: int = 0


class SessionRegistry:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, session: StreamSession) -> None:
        self._entries[session.id] = _Entry(session, time.monotonic())

    def get(self, session_id: str) -> StreamSession:
        """The session (and it counts as used now), or a 404 naming `session_id`."""
        entry = self._entries.get(session_id)
        if entry is None:
            raise not_found("session", session_id, "session_id")
        entry.last_used = time.monotonic()
        return entry.session

    @contextmanager
    def in_use(self, session_id: str):
        """Hold off the reaper while a request streams from this session."""
        entry = self._entries[session_id]
        entry.busy += 1
        try:
            yield entry.session
        finally:
            entry.busy -= 1
            entry.last_used = time.monotonic()

    async def remove(self, session_id: str) -> None:
        entry = self._entries.pop(session_id, None)
        if entry is None:
            raise not_found("session", session_id, "session_id")
        await entry.session.abort()

    async def reap_once(self) -> int:
        """Abort and drop sessions idle for longer than the TTL; return how many."""
        now = time.monotonic()
        stale = [sid for sid, e in self._entries.items() if not e.busy and now - e.last_used > self.ttl_s]
        for sid in stale:
            await self._entries.pop(sid).session.abort()
        return len(stale)

    async def reap_forever(self) -> None:
        while True:
            await asyncio.sleep(min(max(self.ttl_s / 4, 0.05), 30.0))
            await self.reap_once()

    async def close(self) -> None:
        for entry in list(self._entries.values()):
            await entry.session.abort()
        self._entries.clear()
