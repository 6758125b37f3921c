"""`distinct`: a context stream without repeated text, at most `k` chunks a ranking.

A corpus can hold the same passage under several documents (the sample corpus repeats text
across topics, with a different heading level or chunk boundary), and a ranking that shows it
twice spends the prompt on nothing. Retrievers therefore fetch more candidates than they show;
this filter keeps the first of each group of near-equal texts (their word trigrams overlap by
`NEAR` or more, Jaccard) and cuts each ranking, or each query's appended hits, to `k`.
"""

from __future__ import annotations

import re

from retrievers.events import Append, ContextStream, Update

NEAR = 0.7  # the same passage chunked at other offsets or under another heading scores ~0.8-1.0


def _shingles(text: str) -> frozenset[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return frozenset(zip(words, words[1:], words[2:])) or frozenset([tuple(words)])


def _near(a: frozenset, b: frozenset) -> bool:
    return len(a & b) >= NEAR * len(a | b)


def _fresh(chunks, kept: list[frozenset], k: int) -> list:
    """The chunks, in order, whose text is near none in `kept` (which grows), at most `k`."""
    out = []
    for chunk in chunks:
        shingles = _shingles(chunk.text)
        if len(out) < k and not any(_near(shingles, seen) for seen in kept):
            kept.append(shingles)
            out.append(chunk)
    return out


def has_repeats(texts) -> bool:
    """Whether any two of `texts` are near-equal passages (what `distinct` would drop)."""
    shingles = [_shingles(t) for t in texts]
    return any(_near(a, b) for i, a in enumerate(shingles) for b in shingles[i + 1:])


async def distinct(stream: ContextStream, k: int) -> ContextStream:
    appended: list[frozenset] = []  # append mode: what earlier events already delivered
    async for event in stream:
        if isinstance(event, Update):
            yield Update(tuple(_fresh(event.chunks, [], k)), stage=event.stage)
        elif isinstance(event, Append):
            if fresh := _fresh(event.chunks, appended, k):
                yield Append(tuple(fresh))
        else:
            yield event
