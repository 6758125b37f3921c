"""`Gate`: the client's quality threshold that decides when decoding may start."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from engine.errors import ConfigError
from engine.types import GateReason


@dataclass(frozen=True)
class Gate:
    """When a session stops waiting for context and starts to decode.

    The gate opens at the first of:
      - retrieval is done (`finish_context()`): reason "done";
      - `max_wait_s` seconds since `open_session`: reason "deadline";
      - every criterion given holds: reason "criteria". Criteria are
        `min_chunks` (chunks accepted so far), `min_score` (sum of their scores; a chunk
        without a score counts 0) and `stable_updates` (update mode: the top-`stable_top_k`
        chunk ids unchanged over that many consecutive updates).
    `Gate()` has no criterion and no deadline: it opens when retrieval is done.
    """

    min_chunks: int | None = None
    min_score: float | None = None
    stable_updates: int | None = None
    max_wait_s: float | None = None
    stable_top_k: int = 3

    def __post_init__(self) -> None:
        if self.min_chunks is not None and self.min_chunks < 1:
            raise ConfigError("gate.min_chunks", f"{self.min_chunks} must be >= 1 or None")
        if self.stable_updates is not None and self.stable_updates < 1:
            raise ConfigError("gate.stable_updates", f"{self.stable_updates} must be >= 1 or None")
        if self.max_wait_s is not None and self.max_wait_s < 0:
            raise ConfigError("gate.max_wait_s", f"{self.max_wait_s} must be >= 0 or None")
        if self.stable_top_k < 1:
            raise ConfigError("gate.stable_top_k", f"{self.stable_top_k} must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def has_criteria(self) -> bool:
        return any(c is not None for c in (self.min_chunks, self.min_score, self.stable_updates))

    def criteria_reason(
        self, num_chunks: int, score_sum: float, stable_count: int
    ) -> GateReason | None:
        """"criteria" when every given criterion holds, else None (never without criteria)."""
        if not self.has_criteria:
            return None
        if self.min_chunks is not None and num_chunks < self.min_chunks:
            return None
        if self.min_score is not None and score_sum < self.min_score:
            return None
        if self.stable_updates is not None and stable_count < self.stable_updates:
            return None
        return "criteria"
