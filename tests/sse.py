"""A small SSE reader for tests that look at the wire itself (event names, order)."""

from __future__ import annotations

import json

import httpx


async def read_events(client: httpx.AsyncClient, path: str, body: dict, limit: int | None = None) -> list[tuple[str, object]]:
    """POST and parse `event:`/`data:` frames into (event name, JSON or raw data)."""
    events: list[tuple[str, object]] = []
    name, data = "message", []
    async with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith(":"):
                continue
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                raw = "\n".join(data)
                events.append((name, raw if raw == "[DONE]" else json.loads(raw)))
                name, data = "message", []
                if limit is not None and len(events) >= limit:
                    break
    return events
