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


def ending(events: list, max_tokens: int) -> str:
    """How a stream ended: the error code of its error event, or "complete" when it carried all
    `max_tokens` tokens and a finish reason."""
    if events[-2][0] == "error":
        return events[-2][1]["error"]["code"]
    chunks = [d for name, d in events if name == "message" and isinstance(d, dict) and d.get("choices")]
    tokens = sum(len(c["choices"][0].get("token_ids") or ()) for c in chunks)
    finished = any(c["choices"][0].get("finish_reason") for c in chunks)
    return "complete" if finished and tokens == max_tokens else f"cut after {tokens} tokens"
