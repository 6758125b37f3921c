"""`SessionRegistry`: the HTTP session API's sessions, with a cap and a time-to-live.

A pushed-context session lives across requests, so somebody must end the ones a client forgot:
a live session that sees no real work (a context push, a generate) for `ttl_s` is aborted (its
KV blocks freed). Reading a session (`GET`) is not work and does not keep it alive. A session
that is generating is never reaped mid-stream; its response ends it if the client leaves.

A session that finished or was aborted leaves the live set at once; what a client may still
want to read (state, stats, prompt token ids) is kept as a small record for `record_ttl_s`.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass

from app.errors import APIError, not_found
from engine import Session

MAX_RECORDS = 1000


@dataclass
class _Entry:
    session: Session
    last_used: float
    busy: int = 0
    claimed: bool = False


class SessionRegistry:
    def __init__(self, ttl_s: float, max_sessions: int = 256, record_ttl_s: float = 60.0) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.record_ttl_s = record_ttl_s
        self._entries: dict[str, _Entry] = {}
        self._records: OrderedDict[str, tuple[float, dict]] = OrderedDict()  # id -> (when, description)

    def __len__(self) -> int:
        return len(self._entries)

    def check_room(self) -> None:
        """A 429 when `max_sessions` are open (finished ones do not count)."""
        self._retire_closed()
        if len(self._entries) >= self.max_sessions:
            raise APIError(429, f"{len(self._entries)} sessions are open, the most this server allows "
                           f"(max_sessions={self.max_sessions}); finish or DELETE one, or retry later",
                           "rate_limit_error", None, "too_many_sessions")

    def add(self, session: Session) -> None:
        self._entries[session.id] = _Entry(session, time.monotonic())

    def live(self, session_id: str) -> Session | None:
        entry = self._entries.get(session_id)
        return entry.session if entry is not None else None

    def get(self, session_id: str, touch: bool = False) -> Session:
        """The live session, or a 404 (409 when it has already ended). `touch`: real work."""
        entry = self._entries.get(session_id)
        if entry is None:
            raise self._gone(session_id)
        if touch:
            entry.last_used = time.monotonic()
        return entry.session

    def claim(self, session_id: str) -> Session:
        """The session for a generate: once per session, and only while it is open. A refused
        claim raises 409 and changes nothing, so a second generate never disturbs the first."""
        entry = self._entries.get(session_id)
        if entry is None:
            raise self._gone(session_id)
        if entry.claimed or entry.session.state != "open":
            raise APIError(409, f"session {session_id} is {entry.session.state} and already has a generate; "
                           "a session answers once", "conflict_error", "session_id", "session_state")
        entry.claimed = True
        entry.last_used = time.monotonic()
        return entry.session

    @contextmanager
    def in_use(self, session_id: str):
        """Hold off the reaper while a request streams from this session; retire it after."""
        entry = self._entries[session_id]
        entry.busy += 1
        try:
            yield entry.session
        finally:
            entry.busy -= 1
            entry.last_used = time.monotonic()
            self._retire_closed()

    def describe(self, session_id: str) -> dict:
        """What GET answers: live state, or the record of a session that ended."""
        entry = self._entries.get(session_id)
        if entry is not None:
            return _description(entry.session)
        self._drop_old_records()
        if session_id in self._records:
            return self._records[session_id][1]
        raise not_found("session", session_id, "session_id")

    async def remove(self, session_id: str) -> None:
        entry = self._entries.pop(session_id, None)
        if entry is None:
            if self._records.pop(session_id, None) is None:
                raise not_found("session", session_id, "session_id")
            return
        await entry.session.abort()  # a generate streaming from it ends with an error event
        self._record(entry.session)

    async def reap_once(self) -> int:
        """Abort live sessions idle for longer than the TTL; retire ended ones. Returns how many reaped."""
        now = time.monotonic()
        stale = [sid for sid, e in self._entries.items() if not e.busy and now - e.last_used > self.ttl_s]
        for sid in stale:
            entry = self._entries.pop(sid)
            await entry.session.abort()
            self._record(entry.session)
        self._retire_closed()
        self._drop_old_records()
        return len(stale)

    async def reap_forever(self) -> None:
        while True:
            await asyncio.sleep(min(max(self.ttl_s / 4, 0.05), 1.0))
            await self.reap_once()

    async def close(self) -> None:
        for entry in list(self._entries.values()):
            await entry.session.abort()
        self._entries.clear()

    # -- records of ended sessions --------------------------------------------------------
    def _retire_closed(self) -> None:
        for sid in [sid for sid, e in self._entries.items() if not e.busy and e.session.state in ("finished", "aborted")]:
            self._record(self._entries.pop(sid).session)

    def _record(self, session: Session) -> None:
        self._records[session.id] = (time.monotonic(), _description(session))
        while len(self._records) > MAX_RECORDS:
            self._records.popitem(last=False)

    def _drop_old_records(self) -> None:
        now = time.monotonic()
        while self._records and now - next(iter(self._records.values()))[0] > self.record_ttl_s:
            self._records.popitem(last=False)

    def _gone(self, session_id: str) -> APIError:
        self._drop_old_records()
        if session_id in self._records:
            state = self._records[session_id][1]["state"]
            return APIError(409, f"session {session_id} is {state}; open a new session",
                            "conflict_error", "session_id", "session_state")
        return not_found("session", session_id, "session_id")


def _description(session: Session) -> dict:
    return {"id": session.id, "object": "session", "state": session.state, "gate_open": session.gate_is_open,
            "stats": session.stats.to_dict(), "prompt_token_ids": session.prompt_token_ids,
            "chunks": [{"id": c.id, "text": c.text, "score": c.score} for c in getattr(session, "chunks", ())]}
