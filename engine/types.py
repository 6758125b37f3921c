"""Small frozen values that cross the engine's boundary: chunks in, deltas and stats out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GateReason = Literal["done", "deadline", "criteria"]


@dataclass(frozen=True)
class Chunk:
    """One piece of retrieved context. `score` feeds `Gate(min_score=...)`."""

    text: str
    id: str | None = None
    score: float | None = None


@dataclass(frozen=True)
class ContextReceipt:
    """What one `append`/`update` did: chunks taken, chunks dropped (gate already open)."""

    accepted: int
    dropped: int
    prompt_tokens: int


@dataclass(frozen=True)
class Delta:
    """Newly generated tokens and the text they complete (text may lag a multi-byte char)."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str | None = None


@dataclass(frozen=True)
class Completion:
    """Result of a one-shot `StreamEngine.complete`."""

    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    finish_reason: str | None


@dataclass(frozen=True)
class SessionStats:
    """Token and time accounting of one session. Times are seconds since `open_session`.

    prefilled_before_gate: prompt tokens vLLM had finished prefilling when the gate opened.
    tail_tokens: prompt tokens sent after the gate (undelivered chunks + closing template);
        together with one decode step they are the TTFT floor.
    reused_tokens / recomputed_tokens / invalidated_tokens: update-mode accounting (LCP
        reuse, tokens prefilled a second time, KV thrown away; see engine/session_stats.py);
        zero in pure append mode.
    updates / replaces: rankings received, and replaces that reached vLLM (fewer when
        updates arriving during a prefill were coalesced).
    """

    prompt_tokens: int
    prefilled_before_gate: int
    tail_tokens: int
    reused_tokens: int
    recomputed_tokens: int
    invalidated_tokens: int
    updates: int
    replaces: int
    chunks: int
    chunks_dropped_late: int
    gate_reason: GateReason | None
    t_chunks: tuple[float, ...]
    t_gate: float | None
    t_first_token: float | None
    generated_tokens: int

    @property
    def ttft_from_gate_s(self) -> float | None:
        if self.t_gate is None or self.t_first_token is None:
            return None
        return self.t_first_token - self.t_gate


@dataclass(frozen=True)
class PreemptionStats:
    """Idle-session preemptions so far, from the scheduler's own events.

    tokens_dropped: KV given back; resuming recomputes at most that many (fewer where the
    prefix cache still had the blocks). seconds_preempted: summed over resumed sessions.
    """

    by_mode: dict[str, int]
    tokens_dropped: int
    resumed: int
    seconds_preempted: float

    @property
    def total(self) -> int:
        return sum(self.by_mode.values())
