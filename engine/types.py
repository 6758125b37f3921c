"""Small frozen values that cross the engine's boundary: chunks in, sampling in, deltas and stats out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Protocol

GateReason = Literal["done", "deadline", "criteria"]
State = Literal["open", "generating", "finished", "aborted"]


class ChunkLike(Protocol):
    """What a session reads of a piece of context. `retrievers.Chunk` is the one concrete class;
    the engine takes any object with these attributes, so retrieved chunks need no conversion.
    `score` feeds `Gate(min_score=...)`; `id` feeds `Gate(stable_updates=...)`."""

    @property
    def text(self) -> str: ...

    @property
    def id(self) -> str | None: ...

    @property
    def score(self) -> float | None: ...


MAX_LOGPROBS = 20  # as vLLM's server and OpenAI allow


@dataclass(frozen=True)
class Sampling:
    """How an answer is sampled; every backend and every surface takes this one value.

    temperature 0 is greedy (exact: the same engine gives the same tokens). `seed` makes a
    non-greedy answer repeatable. `ignore_eos` keeps generating past the end-of-sequence
    token (benchmarks and exactness tests that need a fixed length). The penalties are
    OpenAI's (`frequency_penalty`, `presence_penalty`, in [-2, 2]) and vLLM's
    (`repetition_penalty`, in (0, 2], 1 = off): what keeps a small model from looping.
    `json_schema` (a JSON Schema, as JSON text) constrains the answer to JSON that matches it,
    through vLLM's structured outputs (engine/structured_output.py turns OpenAI's
    `response_format` into it).
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    ignore_eos: bool = False
    stop: tuple[str, ...] = ()  # the answer ends before the first of these (engine/stops.py)
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logprobs: int | None = None  # each token's logprob and this many likeliest alternatives (0..20)
    json_schema: str | None = None

    def __post_init__(self) -> None:
        from engine.errors import ConfigError

        if self.max_tokens < 1:
            raise ConfigError("max_tokens", f"{self.max_tokens} must be >= 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError("temperature", f"{self.temperature} must be in [0, 2]")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError("top_p", f"{self.top_p} must be in (0, 1]")
        if self.seed is not None and not -(2**63) <= self.seed < 2**64:
            raise ConfigError("seed", f"{self.seed} does not fit in 64 bits")
        for name in ("frequency_penalty", "presence_penalty"):
            if not -2.0 <= getattr(self, name) <= 2.0:
                raise ConfigError(name, f"{getattr(self, name)} must be in [-2, 2]")
        if not 0.0 < self.repetition_penalty <= 2.0:
            raise ConfigError("repetition_penalty", f"{self.repetition_penalty} must be in (0, 2]")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS:
            raise ConfigError("logprobs", f"{self.logprobs} must be in [0, {MAX_LOGPROBS}] or None")
        if self.json_schema is not None:
            from engine.structured_output import check_schema_text

            check_schema_text(self.json_schema)
        if isinstance(self.stop, str) or len(self.stop) > 4 or not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError("stop", f"{self.stop!r}: give up to 4 non-empty strings (a tuple)")

    def with_max_tokens(self, limit: int) -> Sampling:
        """The same sampling with `max_tokens` capped at `limit` (what the context leaves)."""
        return self if self.max_tokens <= limit else Sampling(**{**asdict(self), "max_tokens": max(1, limit)})

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stop": list(self.stop)}


@dataclass(frozen=True)
class ContextReceipt:
    """What one `append`/`update` did: chunks taken, chunks dropped (gate already open)."""

    accepted: int
    dropped: int
    prompt_tokens: int


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log-probability and, when asked for, the likeliest alternatives."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()  # (token id, logprob), likeliest first


@dataclass(frozen=True)
class Delta:
    """Newly generated tokens and the text they complete (text may lag a multi-byte char)."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str | None = None
    logprobs: tuple[TokenLogprob, ...] = ()  # one per token id, when `Sampling.logprobs` asked


@dataclass(frozen=True)
class Completion:
    """Result of a one-shot `Engine.complete`."""

    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    finish_reason: str | None


@dataclass(frozen=True)
class SessionStats:
    """Token and time accounting of one session. Times are seconds since `open_session`.

    prefilled_before_gate: prompt tokens the model had finished prefilling when the gate opened.
    tail_prefill_tokens: prompt tokens sent after the gate (undelivered chunks + closing
        template); together with one decode step they are the TTFT floor.
    reused_tokens / recomputed_tokens / invalidated_tokens: update-mode accounting (LCP
        reuse, tokens prefilled a second time, KV thrown away; see engine/session_stats.py);
        zero in pure append mode.
    updates / replaces: rankings received, and replaces that reached the model (fewer when
        updates arriving during a prefill were coalesced).

    `to_dict()` is the one JSON shape of stats (HTTP answers, benchmark files); `from_dict`
    reads it back.
    """

    prompt_tokens: int = 0
    prefilled_before_gate: int = 0
    tail_prefill_tokens: int = 0
    reused_tokens: int = 0
    recomputed_tokens: int = 0
    invalidated_tokens: int = 0
    updates: int = 0
    replaces: int = 0
    chunks: int = 0
    chunks_dropped_late: int = 0
    gate_reason: GateReason | None = None
    t_chunks: tuple[float, ...] = ()
    t_gate: float | None = None
    t_first_token: float | None = None
    generated_tokens: int = 0

    @property
    def ttft_from_gate_s(self) -> float | None:
        if self.t_gate is None or self.t_first_token is None:
            return None
        return self.t_first_token - self.t_gate

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "t_chunks": list(self.t_chunks)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionStats:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["t_chunks"] = tuple(values.get("t_chunks") or ())
        return cls(**values)


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


@dataclass(frozen=True)
class Health:
    """Whether an engine can serve now; `reason` says why not (shown by /health)."""

    ok: bool
    reason: str | None = None
