"""Fetch append mode: many async sources run concurrently, each result appended as it finishes.

A source is either

- an async callable taking the question and returning chunks, or text (which is chunked), or
- a URL fetched with httpx; `{query}` in it is replaced by the URL-quoted question, and the
  body (HTML reduced to its text) is chunked.

Every source has the same timeout, counted from the start of the stream. A source that raises
or misses it becomes an `Error` event; the others are never held back by it:

    docs-api  ─0.05 s─▶ Append(docs-api chunks)
    wiki      ─0.40 s─▶ Append(wiki chunks)
    slow-db   ─────────────── timeout ──▶ Error("slow-db", TimeoutError)
                                          Done
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from html.parser import HTMLParser

import httpx

from retrievers.chunking import ChunkingConfig, chunk_id, split_text
from retrievers.events import Chunk, ContextStream
from retrievers.sources import stream_sources

Fetcher = Callable[[str], Awaitable[Sequence[Chunk] | str]]


class FetchRetriever:
    """Streams the results of `sources` (name -> async callable or URL) in completion order.

    Pass `client` to reuse one httpx client (connection pool, headers, auth) across streams;
    otherwise each stream opens its own and closes it when it ends.
    """

    def __init__(
        self,
        sources: Mapping[str, Fetcher | str],
        *,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        chunking: ChunkingConfig | None = None,
    ) -> None:
        if not sources:
            raise ValueError("sources is empty: give at least one name -> callable or URL")
        for name, source in sources.items():
            if isinstance(source, str) and not source.startswith(("http://", "https://")):
                raise ValueError(f"source {name!r}: {source!r} is not an http(s) URL nor a callable")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        self.sources = dict(sources)
        self.timeout = timeout
        self.client = client
        self.chunking = chunking or ChunkingConfig()

    async def stream(self, question: str) -> ContextStream:
        own_client = self.client is None
        client = self.client or httpx.AsyncClient(timeout=self.timeout, follow_redirects=True)
        try:
            jobs = {name: self._job(name, source, question, client) for name, source in self.sources.items()}
            async with aclosing(stream_sources(jobs, mode="append", timeout=self.timeout)) as events:
                async for event in events:
                    yield event
        finally:
            if own_client:
                await client.aclose()

    def _job(
        self, name: str, source: Fetcher | str, question: str, client: httpx.AsyncClient
    ) -> Callable[[], Awaitable[Sequence[Chunk]]]:
        async def run() -> Sequence[Chunk]:
            if isinstance(source, str):
                url = source.replace("{query}", urllib.parse.quote(question))
                return self._chunks(await fetch_text(client, url), url, {"fetcher": name})
            result = await source(question)
            if isinstance(result, str):
                return self._chunks(result, name, {"fetcher": name})
            return result

        return run

    def _chunks(self, text: str, origin: str, metadata: dict[str, str]) -> list[Chunk]:
        return [
            Chunk(chunk_id(origin, span.index), span.text, None, origin, {**metadata, "start": span.start})
            for span in split_text(text, self.chunking)
        ]


async def fetch_text(client: httpx.AsyncClient, url: str) -> str:
    """The text of `url`: HTML reduced to its visible text, anything else as decoded."""
    response = await client.get(url)
    response.raise_for_status()
    if "html" in response.headers.get("content-type", ""):
        return html_text(response.text)
    return response.text


def html_text(html: str) -> str:
    """Visible text of an HTML page, one block element per paragraph."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return "\n\n".join(parser.blocks)


class _TextParser(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "template", "head"})
    _BLOCK = frozenset(
        {"p", "div", "li", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "br", "section", "article"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._current: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._current.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        text = " ".join("".join(self._current).split())
        if text:
            self.blocks.append(text)
        self._current = []
