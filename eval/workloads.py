"""Seeded generators of crawler- and ANNS-shaped traces, scaled down for a small machine.

The paper's traces are not available; these draw each query from distributions fitted to the
characterization tables of the Stream2LLM artifact (the `PAPER` figures below), then scale:

    tokens  / size_factor   the paper's prompts (Llama-3.1 tokens, 8B model on H200s) are
                            too long for a 135M model on 2 CPU cores to replay in minutes;
    times   * time_factor   gaps and retrieval durations, chosen together with size_factor
                            so that prefilling a whole prompt takes ~5-30% of the retrieval
                            time, as it did on the paper's GPUs.

Fitted shapes (log-normal unless said; medians and sigmas match the table's mean, median and
tail percentiles to within a few percent, see `describe`):
  crawler  chunks ~ round(N(7.9, 3.3)) in [1, 17]; first page after ~2.5 s (sigma 0.3), then gaps of median
           701 ms (sigma 0.9); prompt total median 5,749 tokens (sigma 0.95), split over the
           pages by log-normal weights (sigma 1.0: scraped pages differ a lot in size).
  ANNS     events ~ 1 + NegBin(r=2, mean 3.42) in [1, 26]; first ranking after ~3.0 s (sigma
           0.25), then gaps of median 36.7 ms (sigma 1.7); the final ranking holds TOP_K
           documents totalling median 10,126 tokens (sigma 0.68). Each re-ranking inserts one or
           two new documents: at a random position >= 1 (the ranking keeps a prefix) with
           probability KEEP_PREFIX_P, else at the top (nothing is kept).
The per-chunk size split, TOP_K and KEEP_PREFIX_P are not in the tables: they are assumptions.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import asdict, dataclass

from eval.trace import Trace, TraceChunk, TraceEvent, TraceQuery

WORKLOADS = ("crawler", "anns")
TOP_K = 8
KEEP_PREFIX_P = 0.5
MIN_CHUNK_TOKENS = 8

# The artifact's characterization tables (WORKLOADS in the project brief), in paper units.
PAPER = {
    "crawler": {"chunks_mean": 7.86, "chunks_median": 8, "gap_ms_mean": 1053, "gap_ms_median": 701,
                "gap_ms_p95": 3078, "gap_ms_p99": 5293, "duration_s_mean": 9.87,
                "duration_s_median": 9.29, "duration_s_p95": 16.7, "tokens_mean": 8889,
                "tokens_p50": 5749, "tokens_p95": 28372},
    "anns": {"chunks_mean": 4.42, "chunks_median": 4, "gap_ms_mean": 157, "gap_ms_median": 36.7,
             "gap_ms_p95": 699, "gap_ms_p99": 2079, "duration_s_mean": 3.63,
             "duration_s_median": 3.46, "duration_s_p95": 5.38, "tokens_mean": 13006,
             "tokens_p50": 10126, "tokens_p95": 30618},
}


# The share of a query's retrieval time that prefilling its whole prompt takes, which each
# workload's default scaling was made for. Another machine prefills faster or slower in the same
# retrieval time, and streaming hides prefill in the gaps between chunks, so a replay means the
# same on any machine only at one share: `streamrag bench` holds this one unless told otherwise.
PREFILL_SHARE = {"crawler": 0.07, "anns": 0.25}


@dataclass(frozen=True)
class Scaling:
    """How a paper-sized query shrinks to this machine (see the module docstring)."""

    size_factor: float
    time_factor: float
    max_context_tokens: int = 4000  # after scaling; keeps the longest prompts in max_model_len

    @classmethod
    def default(cls, workload: str) -> Scaling:
        # Tokens /16, times unchanged. On the 2-core machine the traces were made on, prefilling
        # a median prompt with SmolLM2-135M took ~0.7 s: ~7% of a crawler query's ~9.3 s of
        # retrieval and ~25% of an ANNS query's ~3.5 s (PREFILL_SHARE), inside the paper's 5-30%.
        return cls(16, 1.0)


def generate(workload: str, queries: int, seed: int = 0, scaling: Scaling | None = None,
             qps: float = 1.0) -> Trace:
    """A trace of `queries` queries shaped like `workload`, Poisson arrivals at `qps`."""
    if workload not in WORKLOADS:
        raise ValueError(f"workload: {workload!r}; use one of {', '.join(WORKLOADS)}")
    scaling = scaling or Scaling.default(workload)
    rng = random.Random(f"{workload}-{seed}")
    make = _crawler_query if workload == "crawler" else _anns_query
    items = tuple(make(rng, i, scaling) for i in range(queries))
    meta = {"workload": workload, "seed": seed, "queries": queries, **asdict(scaling),
            "top_k": TOP_K if workload == "anns" else None,
            "keep_prefix_p": KEEP_PREFIX_P if workload == "anns" else None}
    return Trace(items, meta).with_poisson_arrivals(qps, seed)


def _crawler_query(rng: random.Random, i: int, s: Scaling) -> TraceQuery:
    n = min(17, max(1, round(rng.gauss(7.86, 3.3))))
    total = _scaled_total(rng, 5749, 0.95, s)
    sizes = _split(rng, total, [rng.lognormvariate(0, 1.0) for _ in range(n)])
    times = _times(rng, n, first=(2.5, 0.3), gap=(0.701, 0.9), factor=s.time_factor)
    events = tuple(
        TraceEvent(t, "append", (TraceChunk(f"p{j + 1}", tokens=size),))
        for j, (t, size) in enumerate(zip(times, sizes))
    )
    return TraceQuery(f"q{i:04d}", 0.0, _question(rng), events)


def _anns_query(rng: random.Random, i: int, s: Scaling) -> TraceQuery:
    n = min(26, 1 + _negbin(rng, r=2, mean=3.42))
    total = _scaled_total(rng, 10126, 0.68, s)
    weight = lambda: rng.lognormvariate(0, 0.5)  # noqa: E731  documents differ less than pages
    unit = total / (TOP_K * math.exp(0.5**2 / 2))  # so a ranking of TOP_K averages `total`
    serial = 0

    def new_doc() -> TraceChunk:
        nonlocal serial
        serial += 1
        return TraceChunk(f"d{serial}", tokens=max(MIN_CHUNK_TOKENS, round(unit * weight())))

    ranking = [new_doc() for _ in range(TOP_K)]
    rankings = [ranking]
    for _ in range(n - 1):
        at = rng.randint(1, TOP_K - 1) if rng.random() < KEEP_PREFIX_P else 0
        ranking = (ranking[:at] + [new_doc() for _ in range(rng.randint(1, 2))] + ranking[at:])[:TOP_K]
        rankings.append(ranking)
    times = _times(rng, n, first=(3.0, 0.25), gap=(0.0367, 1.7), factor=s.time_factor)
    events = tuple(
        TraceEvent(t, "update", tuple(TraceChunk(c.id, tokens=c.tokens, score=round(1 - 0.05 * r, 3))
                                      for r, c in enumerate(docs)))
        for t, docs in zip(times, rankings)
    )
    return TraceQuery(f"q{i:04d}", 0.0, _question(rng), events)


def _scaled_total(rng: random.Random, median: float, sigma: float, s: Scaling) -> int:
    return min(s.max_context_tokens, round(rng.lognormvariate(math.log(median), sigma) / s.size_factor))


def _split(rng: random.Random, total: int, weights: list[float]) -> list[int]:
    scale = total / sum(weights)
    return [max(MIN_CHUNK_TOKENS, round(w * scale)) for w in weights]


def _times(rng, n: int, first: tuple[float, float], gap: tuple[float, float], factor: float) -> list[float]:
    """Event times from the query's start: a first delay (the search), then n - 1 gaps."""
    t = rng.lognormvariate(math.log(first[0]), first[1])
    out = [t]
    for _ in range(n - 1):
        t += rng.lognormvariate(math.log(gap[0]), gap[1])
        out.append(t)
    return [round(x * factor, 4) for x in out]


def _negbin(rng: random.Random, r: float, mean: float) -> int:
    # Gamma-Poisson mixture: over-dispersed counts with the long tail of the ANNS table (max 26).
    lam = rng.gammavariate(r, mean / r)
    k, p, threshold = 0, 1.0, math.exp(-lam)
    while (p := p * rng.random()) > threshold:
        k += 1
    return k


_TOPICS = ("the treaty", "the comet", "the bridge", "the vaccine", "the novel", "the election",
           "the reactor", "the glacier", "the painting", "the merger", "the algorithm", "the river")
_ASKS = ("When was {} first described", "Who designed {}", "What is the length of {}",
         "Which city is home to {}", "How many people worked on {}", "What replaced {}")


def _question(rng: random.Random) -> str:
    return rng.choice(_ASKS).format(rng.choice(_TOPICS)) + f" (item {rng.randrange(10**6):06d})?"


def describe(trace: Trace) -> dict:
    """The trace's shape in paper units (tokens x size_factor, times / time_factor), next to
    the paper's figures: the check that a generated (or converted) trace has the right shape."""
    size = trace.meta.get("size_factor", 1)
    time = trace.meta.get("time_factor", 1)
    chunks = [len(q.events) if q.events[0].op == "update" else sum(len(e.chunks) for e in q.events)
              for q in trace.queries]
    gaps = [(b.t_s - a.t_s) / time * 1000 for q in trace.queries for a, b in zip(q.events, q.events[1:])]
    durations = [q.duration_s / time for q in trace.queries]
    tokens = [size * sum(c.tokens or 0 for c in q.final_chunks) for q in trace.queries]
    ours = {
        "chunks_mean": statistics.fmean(chunks), "chunks_median": statistics.median(chunks),
        "gap_ms_mean": statistics.fmean(gaps or [0]), "gap_ms_median": _pct(gaps, 50),
        "gap_ms_p95": _pct(gaps, 95), "gap_ms_p99": _pct(gaps, 99),
        "duration_s_mean": statistics.fmean(durations), "duration_s_median": _pct(durations, 50),
        "duration_s_p95": _pct(durations, 95), "tokens_mean": statistics.fmean(tokens),
        "tokens_p50": _pct(tokens, 50), "tokens_p95": _pct(tokens, 95),
    }
    paper = PAPER.get(trace.meta.get("workload"), {})
    return {k: {"trace": round(v, 2), "paper": paper.get(k)} for k, v in ours.items()}


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
