"""Turn a run into an HTTP response: SSE when `stream`, one JSON body otherwise.

A run ends one of four ways, and the client always learns which:

    finished          streamed: the last chunk, usage if asked, `[DONE]`; or the JSON body
    failed            before the first event: an OpenAI-style 4xx/5xx JSON; after it: an SSE
                      `error` event, then `[DONE]`
    client gone       noticed while waiting for the first event (a session waiting at its gate
                      sends nothing yet) or for a non-streamed body, as well as mid-stream
                      (sse-starlette): the run is closed and its session aborted at once
    server draining   (app/drain.py) a 503 before the first event; after it an `error` event
                      with code "server_shutting_down", then `[DONE]`

Closing the run's generator aborts its session, so its KV blocks are freed on every path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from app.errors import APIError, from_engine_error
from app.logprobs_format import LogprobsFormat
from app.openai_format import Formatter, Kind
from app.runs import Finish, RunEvent

log = logging.getLogger("streamrag.app")
SHUTTING_DOWN = APIError(503, "the server is shutting down; retry on another replica",
                         "service_unavailable_error", None, "server_shutting_down")


class _ClientGone(Exception):
    pass


async def respond(request: Request, events: AsyncIterator[RunEvent], kind: Kind, stream: bool,
                  include_usage: bool, param: str = "messages", extension_events: bool = True,
                  tokens_by_id: bool = False):
    state = request.app.state  # the tokenizer is looked up only when an answer has logprobs
    logprobs = LogprobsFormat(kind, lambda t: state.supervisor.engine.template.tokenizer.decode([t]),
                              by_id=tokens_by_id)
    formatter = Formatter(kind, request.app.state.settings.model_name, extension_events, logprobs)
    events = _observed(request, events)
    try:
        if not stream:
            return JSONResponse(await _watched(request, formatter.collect(events)))
        first = await _watched(request, anext(events, None))  # a 4xx/5xx is still possible here
    except _ClientGone:
        await events.aclose()
        return Response(status_code=499)  # nobody reads it; the session is already aborted
    except Exception as error:
        await events.aclose()
        raise _as_api_error(error, param) from error
    return EventSourceResponse(_sse(request, formatter, first, events, include_usage, param), ping=15)


async def _sse(request: Request, formatter: Formatter, first: RunEvent | None, events: AsyncIterator[RunEvent],
               include_usage: bool, param: str):
    draining = request.app.state.draining
    try:
        if first is not None:
            for frame in formatter.sse(first, include_usage):
                yield frame
        while (event := await _next_unless(events, draining)) is not None:
            for frame in formatter.sse(event, include_usage):
                yield frame
    except Exception as error:  # mid-stream: the status is sent; end with an error event
        api = _try_api_error(error, param)
        if api is None:
            log.exception("stream failed")
        for frame in formatter.error_sse(api.message if api else "internal error",
                                         api.type if api else "server_error",
                                         api.code if api else "internal_error", api.param if api else None):
            yield frame
    finally:
        # On a disconnect sse-starlette cancels us inside an anyio scope that cancels every
        # await again: shield the cleanup so the session is aborted and its KV freed.
        with anyio.CancelScope(shield=True):
            await events.aclose()


async def _next_unless(events: AsyncIterator[RunEvent], draining: asyncio.Event) -> RunEvent | None:
    """The next event, or SHUTTING_DOWN raised if the server starts draining first."""
    if draining.is_set():
        raise SHUTTING_DOWN
    return await _first_of(anext(events, None), draining.wait(), SHUTTING_DOWN)


async def _first_of(work: Awaitable, stop: Awaitable, error: Exception):
    """`await work`, or raise `error` if `stop` completes first. If we are cancelled meanwhile,
    `work` is cancelled and awaited before we go: it may be iterating the run's generator,
    which must be idle before anyone closes it."""
    task, stopper = asyncio.ensure_future(work), asyncio.ensure_future(stop)
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.gather(task, return_exceptions=True)
    if not task.cancelled():
        return task.result()
    raise error


async def _watched(request: Request, work: Awaitable):
    """`await work`, unless the client leaves (`_ClientGone`) or the server drains (503) first."""
    gone = asyncio.ensure_future(_disconnected(request))
    draining = asyncio.ensure_future(request.app.state.draining.wait())
    either = asyncio.ensure_future(asyncio.wait({gone, draining}, return_when=asyncio.FIRST_COMPLETED))
    try:
        return await _first_of(work, either, SHUTTING_DOWN)
    except APIError as error:
        if error is SHUTTING_DOWN and gone.done() and not gone.cancelled():
            raise _ClientGone from None
        raise
    finally:
        for waiter in (gone, draining, either):
            waiter.cancel()


async def _disconnected(request: Request) -> None:
    # The body was read already; what the server sends on `receive` now is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _observed(request: Request, events: AsyncIterator[RunEvent]) -> AsyncIterator[RunEvent]:
    async for event in events:
        if isinstance(event, Finish):
            request.app.state.metrics.observe(event)
        yield event


def _try_api_error(error: Exception, param: str) -> APIError | None:
    if isinstance(error, APIError):
        return error
    try:
        return from_engine_error(error, param)
    except Exception:
        return None


def _as_api_error(error: Exception, param: str) -> Exception:
    return _try_api_error(error, param) or error
