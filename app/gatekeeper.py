"""`Gatekeeper`: what every HTTP request passes before a route sees it.

Plain ASGI on purpose (Starlette's `@app.middleware("http")` pipes every streamed body chunk
through an extra memory stream, which costs each SSE token a context switch). It

  - refuses a body larger than `max_body_bytes` with 413, from `Content-Length` before reading
    anything, or as soon as a chunked body passes the limit: nothing is parsed or tokenized;
  - answers 503 while the server drains for shutdown (app/drain.py), /health excepted;
  - counts the requests in flight, so the drain knows when every stream has ended.
"""

from __future__ import annotations

import json


class InFlight:
    """Requests being served now (app.state.inflight)."""

    def __init__(self) -> None:
        self.count = 0


class _TooLarge(Exception):
    pass


class Gatekeeper:
    def __init__(self, app, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = scope["app"].state
        if state.draining.is_set() and scope["path"] != "/health":
            return await _error(send, 503, "the server is shutting down; retry on another replica",
                                "service_unavailable_error", "server_shutting_down")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return await _error(send, 413, self._too_large(), "invalid_request_error", "request_too_large")
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        state.inflight.count += 1
        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _error(send, 413, self._too_large(), "invalid_request_error", "request_too_large")
        finally:
            state.inflight.count -= 1

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_body_bytes} bytes (max_body_bytes); send less"


async def _error(send, status: int, message: str, kind: str, code: str) -> None:
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
