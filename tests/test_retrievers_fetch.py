"""Append mode: concurrent async callables and URLs (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import httpx
import pytest

from retrievers.events import Append, Chunk, Done, Error
from retrievers.fetch import Fetcher, FetchRetriever, html_text

FAST, SLOW = 0.05, 1.5


def source(
    delay: float, ids: list[str] | None = None, *, text: str | None = None, error: Exception | None = None
) -> Fetcher:
    async def fetch(question: str) -> list[Chunk] | str:
        await asyncio.sleep(delay)
        if error is not None:
            raise error
        if text is not None:
            return text
        return [Chunk(i, f"{question} / {i}", None, "callable") for i in ids or []]

    return fetch


async def test_results_are_appended_in_completion_order_and_failures_do_not_block() -> None:
    boom = ConnectionError("search backend down")
    retriever = FetchRetriever(
        {
            "slow": source(SLOW, ["s1"]),
            "broken": source(FAST * 2, error=boom),
            "fast": source(FAST, ["f1", "f2"]),
        },
        timeout=10.0,
    )
    start = time.monotonic()
    arrivals = [(event, time.monotonic() - start) async for event in retriever.stream("q")]
    events = [event for event, _ in arrivals]
    assert [type(event) for event in events] == [Append, Error, Append, Done]
    assert [c.id for c in events[0].chunks] == ["f1", "f2"] and events[0].chunks[0].text == "q / f1"
    assert events[1] == Error("broken", boom)
    assert [c.id for c in events[2].chunks] == ["s1"]
    # The slow source cannot finish before SLOW: the first append did not wait for it.
    assert arrivals[0][1] < SLOW <= arrivals[2][1]


async def test_a_slow_source_times_out_into_an_error_event() -> None:
    retriever = FetchRetriever({"hangs": source(60.0, ["never"]), "fast": source(FAST, ["f"])}, timeout=0.5)
    start = time.monotonic()
    events = [event async for event in retriever.stream("q")]
    assert time.monotonic() - start < 10.0  # the hanging source would take 60 s
    assert [type(event) for event in events] == [Append, Error, Done]
    assert events[1].source == "hangs" and isinstance(events[1].exception, TimeoutError)


async def test_text_results_are_chunked_under_the_source_name() -> None:
    text = "First paragraph of a fetched page.\n\n" + "word " * 400
    events = [event async for event in FetchRetriever({"notes": source(FAST, text=text)}).stream("q")]
    append = events[0]
    assert isinstance(append, Append) and len(append.chunks) > 1
    assert {c.source for c in append.chunks} == {"notes"} and append.chunks[0].score is None
    assert append.chunks[0].text.startswith("First paragraph")


async def test_urls_are_fetched_concurrently_with_httpx(http_server: str) -> None:
    retriever = FetchRetriever(
        {
            "page": f"{http_server}/html?delay=1.0",
            "text": f"{http_server}/text?delay={FAST}&q={{query}}",
            "missing": f"{http_server}/missing",
        },
        timeout=10.0,
    )
    start = time.monotonic()
    arrivals = [(event, time.monotonic() - start) async for event in retriever.stream("try finally")]
    events = [event for event, _ in arrivals]
    errors = [event for event in events if isinstance(event, Error)]
    appends = [event for event in events if isinstance(event, Append)]
    assert isinstance(events[-1], Done) and len(appends) == 2 and len(errors) == 1
    assert errors[0].source == "missing" and isinstance(errors[0].exception, httpx.HTTPStatusError)
    text, page = appends
    # The question went into the URL, quoted.
    assert text.chunks[0].text.startswith("Plain text page for try%20finally.")
    assert text.chunks[0].source.startswith(f"{http_server}/text")
    assert page.chunks[0].text == "Heading\n\nBody text."
    # The text page was appended while the HTML page (served after 1 s) was still on its way.
    assert arrivals[events.index(text)][1] < 1.0 <= arrivals[events.index(page)][1]


async def test_a_shared_client_is_left_open(http_server: str) -> None:
    async with httpx.AsyncClient() as client:
        retriever = FetchRetriever({"text": f"{http_server}/text"}, client=client)
        async with aclosing(retriever.stream("q")) as events:
            assert isinstance(await anext(events), Append)
        assert not client.is_closed


def test_html_text_keeps_visible_blocks_only() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head>"
        "<body><p>One &amp; two</p><script>x()</script><div>Three</div></body></html>"
    )
    assert html_text(html) == "One & two\n\nThree"


@pytest.mark.parametrize(
    ("sources", "timeout", "message"),
    [
        ({}, 1.0, "sources is empty"),
        ({"x": "ftp://host/file"}, 1.0, "not an http"),
        ({"x": source(0)}, 0, "timeout"),
    ],
)
def test_bad_settings_are_named(sources: dict, timeout: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FetchRetriever(sources, timeout=timeout)
