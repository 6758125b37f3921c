"""`ReplicaRouter`: requests to the vLLM servers, each on its placement's replica, with failover.

The router owns the HTTP client, one `VLLMClient` per server, the `ReplicaSet` and a probe
task. A request names a `Placement` (a session's, or a one-shot's); when the replica does not
answer, the router takes it out, moves the placement to the next live replica and sends the
request again there, whole:

    warm    [prompt so far]                       re-sent as is
    stream  [prompt][k tokens already streamed]   resumed with max_tokens - k: the caller
                                                  sees one answer (greedy: the same tokens);
                                                  a structured answer (JSON schema) with k > 0
                                                  fails instead: vLLM's grammar would start over

Every `probe_interval_s` the probe scrapes each server's /metrics: that refreshes the numbers
`blocks_in_use()` reports, brings back a server that answers again (for new placements; moved
ones stay where their cache now is) and takes out one that stopped answering.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import replace

import httpx

from engine.errors import ConfigError
from engine.remote.replicas import NoReplicaError, Placement, ReplicaSet
from engine.remote.vllm_client import (
    ReplicaDownError,
    ServedModel,
    ServerMetrics,
    ServerRequestError,
    ServerUsage,
    Step,
    VLLMClient,
    completion_body,
)
from engine.types import Sampling

log = logging.getLogger(__name__)


class ReplicaRouter:
    def __init__(self, urls: Sequence[str], request_timeout_s: float, probe_interval_s: float) -> None:
        self.replicas = ReplicaSet(urls)
        self.probe_interval_s = probe_interval_s
        # No pool limit: every live session may hold one request open for minutes.
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(request_timeout_s, connect=5.0),
                                       limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
        self._clients = {url: VLLMClient(self._http, url) for url in self.replicas.urls}
        self._metrics: dict[str, ServerMetrics] = {}
        self._probe: asyncio.Task | None = None
        self.model = ""  # the served model name, set by `open`

    async def open(self) -> ServedModel:
        """Ask every server what it serves (those that do not answer start out taken out);
        start probing. Returns the model with the smallest max_model_len among them."""
        urls = self.replicas.urls
        answers = await asyncio.gather(*(self._clients[u].served_model() for u in urls), return_exceptions=True)
        models = [m for m in answers if isinstance(m, ServedModel)]
        for url, answer in zip(urls, answers):
            if not isinstance(answer, ServedModel):
                self.replicas.mark_down(url)
                log.warning("vLLM server %s is not answering (%s); it joins when it does", url, answer)
        if not models:
            raise NoReplicaError(f"no vLLM server answered GET /v1/models at {', '.join(urls)}; "
                                 "start them first (README: Beyond one machine) or fix the URLs")
        if len({m.name for m in models}) > 1:
            raise ConfigError("vllm_urls", f"the servers serve different models {sorted({m.name for m in models})};"
                              " every replica must serve the same model")
        self.model = models[0].name
        await self.scrape()
        self._probe = asyncio.create_task(self._probe_forever(), name="streamrag-replica-probe")
        return min(models, key=lambda m: m.max_model_len or 10**9)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
            self._probe = None
        await self._http.aclose()

    # -- requests -------------------------------------------------------------------------
    async def warm(self, placement: Placement, prompt: list[int], request_id: str) -> ServerUsage:
        """Prefill `prompt` on the placement's replica (one throw-away token)."""
        body = completion_body(self.model, prompt, Sampling(max_tokens=1), request_id=request_id)
        while True:
            url = placement.replica
            try:
                return await self._clients[url].warm(body)
            except ReplicaDownError as error:
                self._fail_over(placement, error)

    async def stream(self, placement: Placement, prompt: list[int], sampling: Sampling,
                     request_id: str) -> AsyncIterator[Step | ServerUsage]:
        """Stream a completion; after a failover the new replica continues the answer."""
        produced: list[int] = []
        while True:
            url = placement.replica
            left = sampling.max_tokens - len(produced)
            if left < 1:  # the replica failed after the last token but before saying so
                yield Step((), "length")
                return
            suffix = f".{placement.moves}" if placement.moves else ""
            body = completion_body(self.model, prompt + produced, replace(sampling, max_tokens=left),
                                   request_id=request_id + suffix)
            try:
                async with aclosing(self._clients[url].stream(body)) as items:
                    async for item in items:
                        if isinstance(item, Step):
                            produced.extend(item.token_ids)
                        yield item
                return
            except ReplicaDownError as error:
                self._fail_over(placement, error)
                if produced and sampling.json_schema is not None:
                    raise  # resumed, the grammar would begin the JSON again mid-answer
            except ServerRequestError as error:
                if sampling.json_schema is None or error.status != 400:
                    raise
                # The prompt's length is checked before sending: a 400 here is the schema.
                raise ConfigError("json_schema", str(error)) from None

    def _fail_over(self, placement: Placement, error: ReplicaDownError) -> None:
        try:
            first = self.replicas.move(placement, placement.replica)
        except NoReplicaError as none_left:
            raise none_left from error
        if first:
            log.warning("%s; taken out, its sessions move to other replicas", error)

    # -- metrics and probing --------------------------------------------------------------
    def blocks_in_use(self) -> int:
        """KV blocks the live servers hold, as of the last scrape."""
        return sum(self._metrics[u].blocks_in_use or 0 for u in self.replicas.live if u in self._metrics)

    def block_sizes(self) -> set[int]:
        return {m.block_size for m in self._metrics.values() if m.block_size}

    async def scrape(self) -> dict[str, ServerMetrics]:
        """Read every live server's /metrics now."""
        urls = self.replicas.live
        answers = await asyncio.gather(*(self._clients[u].metrics() for u in urls), return_exceptions=True)
        for url, answer in zip(urls, answers):
            if isinstance(answer, ServerMetrics):
                self._metrics[url] = answer
        return {u: self._metrics[u] for u in urls if u in self._metrics}

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval_s)
            urls = self.replicas.urls
            answers = await asyncio.gather(*(self._clients[u].metrics() for u in urls), return_exceptions=True)
            for url, answer in zip(urls, answers):
                if isinstance(answer, ServerMetrics):
                    self._metrics[url] = answer
                    if not self.replicas.is_up(url):
                        log.warning("vLLM server %s answers again; new sessions may go there", url)
                        self.replicas.mark_up(url)
                elif self.replicas.mark_down(url):
                    log.warning("vLLM server %s stopped answering (%s); taken out", url, answer)
