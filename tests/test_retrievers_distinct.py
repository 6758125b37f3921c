"""`distinct` drops repeated text (the sample corpus repeats passages across topics) and keeps
at most `k` chunks a ranking; over the app's real retrieval, no source repeats text."""

from __future__ import annotations

import httpx

from retrievers import Append, Chunk, Done, Update, collect, distinct


async def _events(*events):
    for event in events:
        yield event


async def test_rankings_and_appends_lose_repeated_text():
    a, a_again, b, c = Chunk("1", "same  text"), Chunk("2", "same text"), Chunk("3", "other"), Chunk("4", "third")
    out = [e async for e in distinct(_events(Update((a, a_again, b, c)), Done()), k=2)]
    assert out == [Update((a, b)), Done()]
    out = [e async for e in distinct(_events(Append((a, b)), Append((a_again, c)), Append((a_again,))), k=5)]
    assert out == [Append((a, b)), Append((c,))]  # an append of nothing new is no event
    chunks, _ = await collect(distinct(_events(Update((a, a_again))), k=3))
    assert [c.id for c in chunks] == ["1"]


async def test_the_same_passage_under_another_heading_is_a_repeat():
    """As the sample corpus has it: one passage in two topics, one heading level apart and cut
    at another offset; a passage that only shares a phrase is not a repeat."""
    passage = ("If \"finally\" is present, it specifies a cleanup handler. The \"try\" clause is executed, "
               "including any \"except\" and \"else\" clauses. If an exception occurs in any of the clauses "
               "and is not handled, the exception is temporarily saved.")
    in_try = Chunk("t", "## \"finally\" clause\n\n" + passage)
    in_compound = Chunk("c", "### \"finally\" clause\n\n" + passage + " The \"finally\" clause is executed.")
    other = Chunk("o", "The \"finally\" clause is executed on the way out of a with statement's block, too.")
    out = [e async for e in distinct(_events(Update((in_try, in_compound, other))), k=3)]
    assert out == [Update((in_try, other))]


async def test_chat_retrieval_shows_no_text_twice(app_server):
    body = {"model": "tiny", "stream": False, "max_tokens": 1,
            "messages": [{"role": "user", "content": "What does the else clause of a for loop do?"}],
            "retrieval": {"collection": "python-docs", "top_k": 5, "mode": "update", "queries": ["for else break"]}}
    async with httpx.AsyncClient(base_url=app_server, timeout=60) as http:
        out = (await http.post("/v1/chat/completions", json=body)).json()
    for event in out["streamrag"]["context"]:
        texts = [" ".join(c["text"].split()) for c in event["chunks"]]
        assert len(texts) == len(set(texts)) and 0 < len(texts) <= 5
