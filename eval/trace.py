"""`Trace`: a replayable workload, one query per JSONL line, and its read/write.

    {"meta": {"workload": "crawler", "seed": 0, "size_factor": 16, ...}}          <- first line
    {"id": "q0000", "arrival_s": 0.0, "question": "...", "events": [
        {"t_s": 2.31, "op": "append", "chunks": [{"id": "p1", "tokens": 57}]},
        {"t_s": 2.90, "op": "append", "chunks": [{"id": "p2", "text": "...", "score": 0.7}]}]}

`arrival_s` is the query's start, from the start of the trace; an event's `t_s` counts from
the query's start. An "append" event carries the new chunks; an "update" event carries the
whole current ranking, best first. The last event is the end of retrieval. A chunk gives its
`text`, or only a `tokens` count that `eval/texts.py` turns into seeded filler text of that
size for the model being measured: a real trace with texts and a synthetic one with sizes
replay alike. Chunks with the same `id` in one query are the same document.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from engine.errors import StreamRAGError

Op = Literal["append", "update"]


class TraceError(StreamRAGError, ValueError):
    """A trace file that cannot be replayed; the message names the line and the field."""


@dataclass(frozen=True)
class TraceChunk:
    id: str
    text: str | None = None
    tokens: int | None = None  # used only when text is None
    score: float | None = None


@dataclass(frozen=True)
class TraceEvent:
    t_s: float
    op: Op
    chunks: tuple[TraceChunk, ...]


@dataclass(frozen=True)
class TraceQuery:
    id: str
    arrival_s: float
    question: str
    events: tuple[TraceEvent, ...]

    @property
    def duration_s(self) -> float:
        """Retrieval time: from the query's start to its last event."""
        return self.events[-1].t_s

    @property
    def final_chunks(self) -> tuple[TraceChunk, ...]:
        """The context the answer is generated from (every append, or the last ranking)."""
        out: list[TraceChunk] = []
        for event in self.events:
            out = list(event.chunks) if event.op == "update" else out + list(event.chunks)
        return tuple(out)


@dataclass(frozen=True)
class Trace:
    queries: tuple[TraceQuery, ...]
    meta: dict = field(default_factory=dict)

    def with_poisson_arrivals(self, qps: float, seed: int) -> Trace:
        """The same queries, re-timed to Poisson arrivals at `qps` (the first one at 0).

        The seed fixes the unit-rate draws, so two rates give arrival schedules that are the
        same up to a time scale: load levels differ in rate only, not in luck.
        """
        if qps <= 0:
            raise TraceError(f"qps: {qps} must be > 0")
        rng = random.Random(seed)
        t, queries = 0.0, []
        for i, query in enumerate(self.queries):
            if i:
                t += rng.expovariate(1.0) / qps
            queries.append(replace(query, arrival_s=t))
        return Trace(tuple(queries), {**self.meta, "qps": qps, "arrival_seed": seed})

    def head(self, n: int) -> Trace:
        return Trace(self.queries[:n], {**self.meta, "queries": min(n, len(self.queries))})


def write_trace(trace: Trace, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.write(json.dumps({"meta": trace.meta}) + "\n")
        for query in trace.queries:
            f.write(json.dumps(_drop_none(asdict(query))) + "\n")


def read_trace(path: str | Path) -> Trace:
    meta: dict = {}
    queries: list[TraceQuery] = []
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if "meta" in record:
            meta = record["meta"]
            continue
        try:
            queries.append(_query(record))
        except (KeyError, TypeError, ValueError) as error:
            raise TraceError(f"{path}:{n}: {error}") from error
    if not queries:
        raise TraceError(f"{path}: no queries")
    return Trace(tuple(queries), meta)


def _query(record: dict) -> TraceQuery:
    events = tuple(
        TraceEvent(float(e["t_s"]), _op(e["op"]), tuple(_chunk(c) for c in e["chunks"]))
        for e in record["events"]
    )
    if not events:
        raise ValueError(f"query {record['id']}: no events")
    if any(b.t_s < a.t_s for a, b in zip(events, events[1:])):
        raise ValueError(f"query {record['id']}: event times t_s must not decrease")
    return TraceQuery(str(record["id"]), float(record["arrival_s"]), str(record["question"]), events)


def _op(op: str) -> Op:
    if op not in ("append", "update"):
        raise ValueError(f"op: {op!r}; use 'append' or 'update'")
    return op


def _chunk(c: dict) -> TraceChunk:
    if c.get("text") is None and not c.get("tokens"):
        raise ValueError(f"chunk {c.get('id')!r}: give 'text' or a positive 'tokens' count")
    return TraceChunk(str(c["id"]), c.get("text"), c.get("tokens"), c.get("score"))


def _drop_none(value):
    # Keeps the files small and a chunk's text/tokens alternative readable.
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value
