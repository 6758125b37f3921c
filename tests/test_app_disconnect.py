"""Clients that vanish mid-stream free their KV: 100 streams dropped at random points."""

from __future__ import annotations

import asyncio
import random

import httpx

from tests.text import random_text


async def _drop_after(http: httpx.AsyncClient, body: dict, lines: int) -> None:
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        seen = 0
        async for _ in response.aiter_lines():
            seen += 1
            if seen >= lines:
                break  # leaving the block closes the connection mid-stream


async def test_hundred_dropped_streams_free_everything(app_server, engine, idle_blocks):
    rng = random.Random(2024)
    async with httpx.AsyncClient(base_url=app_server, timeout=60) as http:
        for batch in range(10):  # 10 x 10 streams, each batch concurrently
            jobs = []
            for _ in range(10):
                body = {"stream": True, "max_tokens": 64, "temperature": 0,
                        "messages": [{"role": "user", "content": random_text(rng, 5, 40)}]}
                if rng.random() < 0.5:
                    body["retrieval"] = {"collection": "python-docs", "top_k": 2, "mode": rng.choice(["append", "update"])}
                jobs.append(_drop_after(http, body, rng.randint(1, 12)))
            await asyncio.gather(*jobs)
        for _ in range(200):  # aborts reach vLLM's engine process a moment after the drop
            if not engine.live_sessions and engine.kv_blocks_in_use() == idle_blocks:
                break
            await asyncio.sleep(0.1)
        metrics = (await http.get("/metrics")).text
    line = next(l for l in metrics.splitlines() if l.startswith("streamrag_kv_blocks_in_use"))
    assert float(line.split()[-1]) == idle_blocks
    assert engine.live_sessions == 0
