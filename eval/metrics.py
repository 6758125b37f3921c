"""Per-query records of a replay and the summaries the report prints.

TTFT is measured two ways, as in the paper's methodology:
  from the last event   the last chunk (append) or ranking (update) is delivered -> first token;
                        retrieval time is excluded: this is what streaming can shrink;
  from the start        the query's arrival -> first token: what a user waits.
Ratios are baseline / system (> 1 means the system is faster), the paper's convention.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class QueryResult:
    """One query, one system. Times are seconds on one clock; tokens are prompt tokens.

    prefilled: prompt tokens computed for this query, counting recomputation (the session's
        arithmetic: final prompt + KV invalidated on the way; the whole prompt for one-shot).
        A replay also sums vLLM's own per-step counts over a whole run (`prefilled_vllm`).
    tail_tokens: prompt tokens still to prefill when the last event arrived (after the gate).
    """

    query: str
    system: str
    finished: bool
    prompt_tokens: int = 0
    t_arrival: float = 0.0
    t_last_event: float = 0.0
    t_first_token: float = 0.0
    t_done: float = 0.0
    prefilled: int = 0
    reused: int = 0
    recomputed: int = 0
    invalidated: int = 0
    tail_tokens: int = 0
    updates: int = 0
    replaces: int = 0
    error: str | None = None
    session_id: str | None = None  # the engine's session (its vLLM request ids start with it)

    @property
    def ttft_last_s(self) -> float:
        return self.t_first_token - self.t_last_event

    @property
    def ttft_start_s(self) -> float:
        return self.t_first_token - self.t_arrival


def to_ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds rounded to 0.1, for reports (None stays None)."""
    return None if seconds is None else round(seconds * 1000, 1)


def percentile(values: list[float], p: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(results: list[QueryResult], completion_s: float | None = None,
              prefilled_vllm: int | None = None) -> dict:
    """One system at one load level: TTFT percentiles, completion time, token totals."""
    done = [r for r in results if r.finished]
    out: dict = {"queries": len(results), "finished": len(done)}
    for name, key in (("ttft_last", "ttft_last_s"), ("ttft_start", "ttft_start_s")):
        values = [getattr(r, key) for r in done]
        for p in PERCENTILES:
            out[f"{name}_p{p}_s"] = percentile(values, p)
        out[f"{name}_mean_s"] = statistics.fmean(values) if values else None
    out["completion_s"] = completion_s
    for key in ("prompt_tokens", "prefilled", "reused", "recomputed", "invalidated", "tail_tokens",
                "updates", "replaces"):
        out[key] = sum(getattr(r, key) for r in done)
    out["prefilled_vllm"] = prefilled_vllm
    out["tail_tokens_p50"] = percentile([r.tail_tokens for r in done], 50)
    return out


def ratios(baseline: dict, system: dict) -> dict:
    """baseline / system for each TTFT percentile; completion time as system / baseline."""
    out = {}
    for name in ("ttft_last", "ttft_start"):
        for p in PERCENTILES:
            key = f"{name}_p{p}_s"
            out[f"{name}_p{p}"] = _div(baseline.get(key), system.get(key))
    out["completion"] = _div(system.get("completion_s"), baseline.get("completion_s"))
    return out


def floor_ratios(results: list[QueryResult], floors: dict[str, QueryResult]) -> dict:
    """How close a system came to the TTFT floor, and why not closer.

    excess: TTFT minus the query's floor (waiting behind other queries' prefills, sharing
    steps with them). backlog: the query still had more than the floor's tail to prefill
    when its last event came (its earlier chunks were not prefilled yet).
    """
    done = [r for r in results if r.finished and r.query in floors and floors[r.query].finished]
    floor_s = {q: f.ttft_last_s for q, f in floors.items() if f.finished}
    per_query = [r.ttft_last_s / floor_s[r.query] for r in done if floor_s[r.query] > 0]
    backlog = [r.tail_tokens - floors[r.query].tail_tokens for r in done]
    return {
        "p50_over_floor_p50": _div(percentile([r.ttft_last_s for r in done], 50),
                                   percentile([floor_s[r.query] for r in done], 50)),
        "per_query_p50": percentile(per_query, 50),
        "per_query_p95": percentile(per_query, 95),
        "excess_p50_s": percentile([r.ttft_last_s - floor_s[r.query] for r in done], 50),
        "excess_p95_s": percentile([r.ttft_last_s - floor_s[r.query] for r in done], 95),
        "backlog_share": sum(b > 0 for b in backlog) / len(backlog) if backlog else None,
        "backlog_tokens_mean": statistics.fmean(backlog) if backlog else None,
    }


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b
