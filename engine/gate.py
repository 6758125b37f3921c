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
      - `max_wait_s` seconds since `open_session`: reason "deadline". A deadline that finds no
        context yet waits for the first chunk (then opens, reason "deadline"), so a slow
        retriever never leaves the answer with nothing by accident; `min_chunks=0` lets the
        deadline open on an empty context;
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
        if self.min_chunks is not None and self.min_chunks < 0:
            raise ConfigError("gate.min_chunks", f"{self.min_chunks} must be >= 0 or None")
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
        # min_chunks=0 asks for no chunk at all: it only lets a deadline open on nothing.
        return bool(self.min_chunks) or self.min_score is not None or self.stable_updates is not None

    def deadline_may_open(self, num_chunks: int) -> bool:
        """Whether the deadline may open the gate on a context of `num_chunks` chunks."""
        return num_chunks > 0 or self.min_chunks == 0

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
