"""`distinct`: a context stream without repeated text, at most `k` chunks a ranking.

A corpus can hold the same passage under several documents (the sample corpus repeats text
across topics), and a ranking that shows it twice spends the prompt on nothing. Retrievers
therefore fetch more candidates than they show; this filter keeps the first chunk of each
text (whitespace-normalised) and cuts each ranking, or each query's appended hits, to `k`.
"""

from __future__ import annotations

from retrievers.events import Append, ContextStream, Update


def _key(text: str) -> str:
    return " ".join(text.split())


async def distinct(stream: ContextStream, k: int) -> ContextStream:
    appended: set[str] = set()  # append mode: what earlier events already delivered
    async for event in stream:
        if isinstance(event, Update):
            seen: set[str] = set()
            kept = []
            for chunk in event.chunks:
                if _key(chunk.text) not in seen and len(kept) < k:
                    seen.add(_key(chunk.text))
                    kept.append(chunk)
            yield Update(tuple(kept))
        elif isinstance(event, Append):
            fresh = []
            for chunk in event.chunks:
                if _key(chunk.text) not in appended and len(fresh) < k:
                    appended.add(_key(chunk.text))
                    fresh.append(chunk)
            if fresh:
                yield Append(tuple(fresh))
        else:
            yield event
