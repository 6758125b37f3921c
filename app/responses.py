"""Turn a run into an HTTP response: SSE when `stream`, one JSON body otherwise."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from app.errors import APIError, from_engine_error
from app.openai_format import Formatter, Kind
from app.runs import Finish, RunEvent

log = logging.getLogger("streamrag.app")


async def _observed(request: Request, events: AsyncIterator[RunEvent]) -> AsyncIterator[RunEvent]:
    async for event in events:
        if isinstance(event, Finish):
            request.app.state.metrics.observe(event)
        yield event


async def respond(request: Request, events: AsyncIterator[RunEvent], kind: Kind, stream: bool,
                  include_usage: bool, param: str = "messages"):
    formatter = Formatter(kind, request.app.state.settings.model_name)
    events = _observed(request, events)
    if not stream:
        try:
            return JSONResponse(await formatter.collect(events))
        except APIError:
            raise
        except Exception as error:
            raise _as_api_error(error, param) from error

    first = await _first(events, param)  # errors before the first event are still a 4xx

    async def sse():
        try:
            if first is not None:
                for frame in formatter.sse(first, include_usage):
                    yield frame
            async for event in events:
                for frame in formatter.sse(event, include_usage):
                    yield frame
        except Exception as error:  # mid-stream: the status is sent; end with an error event
            log.exception("stream failed")
            api = _try_api_error(error, param)
            for frame in formatter.error_sse(api.message if api else "internal error",
                                             api.type if api else "server_error",
                                             api.code if api else None, api.param if api else None):
                yield frame
        finally:
            # On a disconnect sse-starlette cancels us inside an anyio scope that cancels every
            # await again: shield the cleanup so the session is aborted and its KV freed.
            with anyio.CancelScope(shield=True):
                await events.aclose()

    return EventSourceResponse(sse(), ping=15)


async def _first(events: AsyncIterator[RunEvent], param: str) -> RunEvent | None:
    try:
        return await anext(events, None)
    except Exception as error:
        await events.aclose()
        raise _as_api_error(error, param) from error


def _try_api_error(error: Exception, param: str) -> APIError | None:
    if isinstance(error, APIError):
        return error
    try:
        return from_engine_error(error, param)
    except Exception:
        return None


def _as_api_error(error: Exception, param: str) -> Exception:
    return _try_api_error(error, param) or error
