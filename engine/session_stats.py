"""`StatsRecorder`: a session's running token and time accounting, frozen on demand."""

from __future__ import annotations

import time

from engine.types import GateReason, SessionStats


class StatsRecorder:
    """Mutable counters behind `StreamSession.stats`. Times are seconds since creation.

    For update mode, per replace of `old` computed tokens by a prompt of `new` tokens of
    which vLLM keeps `kept` (the LCP rounded down to a block):
        reused      += kept                      KV that survived
        invalidated += old - kept                KV thrown away
        recomputed  += min(old, new) - kept      positions computed a second time
    In the "reopen" baseline, `kept` is vLLM's own prefix-cache hit for the new request.
    """

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.reused = self.recomputed = self.invalidated = 0
        self.updates = self.replaces = 0
        self.dropped = 0
        self.generated = 0
        self.prefilled_before_gate = 0
        self.gate_reason: GateReason | None = None
        self.t_chunks: list[float] = []
        self.t_gate: float | None = None
        self.t_first_token: float | None = None
        self._reopen_pending: tuple[int, int] | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    def chunks_arrived(self, n: int) -> None:
        self.t_chunks += [self.now()] * n

    def update_arrived(self, n: int) -> None:
        self.updates += 1
        self.t_chunks.append(self.now())

    def replaced(self, old: int, new: int, kept: int) -> None:
        self.replaces += 1
        self.reused += kept
        self.invalidated += old - kept
        self.recomputed += max(0, min(old, new) - kept)

    def reopened(self, old: int, new: int) -> None:
        self._reopen_pending = (old, new)

    def reopen_cached(self, cached: int) -> None:
        if self._reopen_pending is None:
            return
        old, new = self._reopen_pending
        self._reopen_pending = None
        self.replaced(old, new, kept=min(cached, old, new))

    def gate_opened(self, reason: GateReason, prefilled: int) -> None:
        self.gate_reason = reason
        self.t_gate = self.now()
        self.prefilled_before_gate = prefilled

    def dropped_late(self, n: int) -> None:
        self.dropped += n

    def tokens_generated(self, n: int) -> None:
        if self.t_first_token is None:
            self.t_first_token = self.now()
        self.generated += n

    def snapshot(self, prompt_tokens: int, chunks: int, gate_open: bool) -> SessionStats:
        return SessionStats(
            prompt_tokens=prompt_tokens,
            prefilled_before_gate=self.prefilled_before_gate,
            tail_prefill_tokens=prompt_tokens - self.prefilled_before_gate if gate_open else 0,
            reused_tokens=self.reused,
            recomputed_tokens=self.recomputed,
            invalidated_tokens=self.invalidated,
            updates=self.updates,
            replaces=self.replaces,
            chunks=chunks,
            chunks_dropped_late=self.dropped,
            gate_reason=self.gate_reason,
            t_chunks=tuple(self.t_chunks),
            t_gate=self.t_gate,
            t_first_token=self.t_first_token,
            generated_tokens=self.generated,
        )
