"""`ReplicaSet`: which vLLM server a session lives on, by consistent hashing of its id.

A session warms one server's prefix cache request after request, so every request of the
session must reach that same server: the replica is a pure function of the session id and
of which replicas are up. Consistent hashing keeps that function stable when a replica
leaves: only the sessions that lived on it move, each to the next live replica clockwise,
and nobody else loses a warmed cache.

    ring (hash space, wrapping)   ...a#17...b#3...a#40...c#9...b#51...
    session "sr-1f.." hashes here ^  -> next point clockwise owned by a live replica

Each replica owns `points_per_replica` points so that the load spreads evenly. The set is
pure bookkeeping (no I/O): the engine marks replicas down when a request to them fails and
up again when a health probe answers.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from engine.errors import ConfigError, StreamRAGError


class NoReplicaError(StreamRAGError, RuntimeError):
    """Every vLLM server is down (or none was given); the message names them and the fix."""


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica as the set sees it now."""

    url: str
    up: bool
    failures: int  # times it was taken out


def _point(key: str) -> int:
    # A stable hash (not Python's salted `hash`): the same session maps to the same replica in
    # every process, so two streamrag front ends agree on placement.
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def normalize_url(url: str) -> str:
    """`http://host:port` without a trailing slash or `/v1`; raises ConfigError otherwise."""
    cleaned = url.strip().rstrip("/").removesuffix("/v1")
    if not cleaned.startswith(("http://", "https://")):
        raise ConfigError("vllm_url", f"{url!r} is not an http(s) URL; use e.g. http://127.0.0.1:8001")
    return cleaned


class Placement:
    """Where one session (or one-shot request) lives. Only `ReplicaSet.move` changes it, and
    only when its replica failed: `moves` counts that, so the owner knows its warmed prefix
    cache stayed behind on the old replica."""

    def __init__(self, key: str, replica: str) -> None:
        self.key = key
        self.replica = replica
        self.moves = 0


class ReplicaSet:
    """The servers, up or down, and the ring that maps a key to a live one."""

    def __init__(self, urls: Iterable[str], points_per_replica: int = 64) -> None:
        ordered = list(dict.fromkeys(normalize_url(u) for u in urls))
        if not ordered:
            raise ConfigError("vllm_urls", "empty; give at least one vLLM server URL")
        if points_per_replica < 1:
            raise ConfigError("points_per_replica", f"{points_per_replica} must be >= 1")
        self.urls: tuple[str, ...] = tuple(ordered)
        self._up = dict.fromkeys(ordered, True)
        self._failures = dict.fromkeys(ordered, 0)
        ring = sorted((_point(f"{url}#{i}"), url) for url in ordered for i in range(points_per_replica))
        self._hashes = [h for h, _ in ring]
        self._owners = [url for _, url in ring]

    def pick(self, key: str) -> str:
        """The live replica that owns `key`: the first live owner clockwise from its hash."""
        if not any(self._up.values()):
            raise NoReplicaError(
                f"no vLLM server is up (tried {', '.join(self.urls)}); start one, or check "
                "that each URL answers GET /health"
            )
        start = bisect.bisect(self._hashes, _point(key))
        n = len(self._owners)
        for step in range(n):
            owner = self._owners[(start + step) % n]
            if self._up[owner]:
                return owner
        raise AssertionError("a live replica owns no ring point")  # every replica owns points

    def place(self, key: str, replica: str | None = None) -> Placement:
        """A placement for `key`: on `replica` when given (it must be one of `urls`), else by the ring."""
        if replica is not None and normalize_url(replica) not in self._up:
            raise ConfigError("replica", f"{replica!r} is not one of the servers ({', '.join(self.urls)})")
        return Placement(key, normalize_url(replica) if replica is not None else self.pick(key))

    def move(self, placement: Placement, failed: str) -> bool:
        """`failed` did not answer: take it out and move `placement` to the next live replica.

        Returns True if this call took the replica out (the first to notice). Raises
        NoReplicaError when none is left.
        """
        first = self.mark_down(failed)
        placement.replica = self.pick(placement.key)
        placement.moves += 1
        return first

    def mark_down(self, url: str) -> bool:
        """Take `url` out; True if it was up (the caller that noticed first)."""
        was_up = self._up[url]
        if was_up:
            self._up[url] = False
            self._failures[url] += 1
        return was_up

    def mark_up(self, url: str) -> None:
        """Put `url` back. Sessions already moved off it stay where they are (they pin theirs)."""
        self._up[url] = True

    def is_up(self, url: str) -> bool:
        return self._up[url]

    @property
    def live(self) -> tuple[str, ...]:
        return tuple(url for url in self.urls if self._up[url])

    def status(self) -> tuple[ReplicaStatus, ...]:
        return tuple(ReplicaStatus(url, self._up[url], self._failures[url]) for url in self.urls)
