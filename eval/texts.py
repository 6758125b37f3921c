"""Turn a trace into what the systems replay: engine `Chunk`s with text, per query.

A synthetic trace gives chunk sizes in tokens, not texts. Filler text of that many tokens of
the model being measured is drawn here, seeded by (trace seed, query id, chunk id): the same
document gets the same text in every event of a query and in every system's run, so all
systems prefill exactly the same tokens. Distinct seeds per query keep vLLM's prefix cache
from finding anything shared between queries.

The system prompt is salted per run (`salted_system`) with a fixed-width number at its
start: every run of every query then starts from a different first KV block, and since vLLM's
prefix cache hashes blocks as a chain, no run can reuse blocks another one computed (not even
the shared system prompt: the paper ran with prefix caching off). Only the "reopen" baseline
still reuses its own earlier blocks, which is its design. Digits are one token each in the
tokenizers used here, so the salt costs the same number of tokens every time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.prompt import DEFAULT_SYSTEM
from eval.trace import Op, Trace, TraceChunk
from retrievers import Chunk

_WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no will "
    "more about some out time them into only other new can could than first these may like over "
    "such our what most then its also after years two people made many before through must where "
    "while under between each both during against city river council report study system water "
    "market history century season film album station village company school family church war "
    "team species island region battle north south population building language music research "
    "government record line field design energy model process network light theory museum"
).split()


@dataclass(frozen=True)
class ReplayEvent:
    t_s: float  # from the query's start
    op: Op
    chunks: tuple[Chunk, ...]


@dataclass(frozen=True)
class ReplayQuery:
    id: str
    arrival_s: float
    question: str
    events: tuple[ReplayEvent, ...]

    @property
    def duration_s(self) -> float:
        return self.events[-1].t_s


def salted_system(nonce: int) -> str:
    """The default system prompt made unique to one run of one query (see the docstring)."""
    return f"[{nonce % 10**8:08d}] {DEFAULT_SYSTEM}"


def materialize(trace: Trace, template) -> tuple[ReplayQuery, ...]:
    """Every chunk with its text; `template` is the engine's `PromptTemplate` (tokenizer)."""
    seed = trace.meta.get("seed", 0)
    out = []
    for query in trace.queries:
        docs: dict[str, str] = {}

        def text_of(c: TraceChunk) -> str:
            if c.text is not None:
                return c.text
            if c.id not in docs:
                docs[c.id] = filler(template, random.Random(f"{seed}/{query.id}/{c.id}"), c.tokens)
            return docs[c.id]

        events = tuple(
            ReplayEvent(e.t_s, e.op, tuple(Chunk(text=text_of(c), id=c.id, score=c.score) for c in e.chunks))
            for e in query.events
        )
        out.append(ReplayQuery(query.id, query.arrival_s, query.question, events))
    return tuple(out)


def filler(template, rng: random.Random, n_tokens: int) -> str:
    """Random prose of about `n_tokens` tokens of `template`'s tokenizer."""
    words = " ".join(rng.choice(_WORDS) for _ in range(n_tokens + 8))
    return template.decode(template.encode(words)[:n_tokens]).strip()
