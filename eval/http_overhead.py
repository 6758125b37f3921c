"""What HTTP + SSE adds: TTFT and time per output token, server vs the in-process engine.

    streamrag bench --http-overhead [--model default] [--prompt-tokens 512] [--max-tokens 64] [--repeats 10]

One engine, reached two ways: straight (`complete_stream`) and through the app on a real
uvicorn on 127.0.0.1 serving that same engine (`POST /v1/completions`, `stream: true`, SSE
through sse-starlette, read by `StreamRAGClient`), alternating so that drift hits both. One
engine, because two engines on one machine are not equal: vLLM's CPU build binds each to the
same core. Client and server share this process's event loop, so the client's own parsing
counts against HTTP: the figure is an upper bound. Each gets its own fresh random prompt of the same length, so no prefix cache helps.
Targets (issue): <= 5 ms added to TTFT, <= 1 ms added per output token.
Writes <out>/http-overhead.json. The app comes from the caller (`make_app`), because eval sits
below app in the layers (docs/architecture.md): `streamrag bench` passes its `create_app`.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import uvicorn
from tqdm import tqdm

from engine import EngineConfig, Sampling, StreamEngine
from eval.machine import machine_line
from integrations.http_client import StreamRAGClient


async def _timed(engine, prompt, max_tokens) -> tuple[float, float]:
    """(TTFT, time per output token) of one completion on `engine` (in-process or a client)."""
    t0 = time.perf_counter()
    first = last = None
    n = 0
    sampling = Sampling(max_tokens=max_tokens, ignore_eos=True)
    async for delta in engine.complete_stream(prompt_token_ids=prompt, sampling=sampling):
        if not delta.token_ids:
            continue
        now = time.perf_counter()
        first = first or now
        last = now
        n += len(delta.token_ids)
    return first - t0, (last - first) / max(n - 1, 1)


# (engine, max_model_len) -> the ASGI app serving that engine, retrieval off
AppFactory = Callable[[StreamEngine, int], Any]


async def measure(args, make_app: AppFactory) -> dict:
    """`args`: model, prompt_tokens, max_tokens, repeats, seed."""
    rng = random.Random(args.seed)
    max_model_len = args.prompt_tokens + args.max_tokens + 64
    config = EngineConfig(model=args.model, max_model_len=max_model_len)
    async with StreamEngine(config) as engine:
        app = make_app(engine, max_model_len)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                serving.result()  # a start-up error
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        try:
            async with StreamRAGClient(url, timeout_s=120) as client:
                vocab = len(engine.tokenizer)
                results = {"in-process": [], "http+sse": []}

                def fresh():
                    return [rng.randrange(100, vocab) for _ in range(args.prompt_tokens)]

                await _timed(client, fresh(), 4)  # warm-up both paths
                await _timed(engine, fresh(), 4)
                for _ in tqdm(range(args.repeats), desc="http overhead", unit="pair"):
                    results["in-process"].append(await _timed(engine, fresh(), args.max_tokens))
                    results["http+sse"].append(await _timed(client, fresh(), args.max_tokens))
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, timeout=30)
    summary = {name: {"ttft_ms": statistics.median(r[0] for r in runs) * 1000,
                      "tpot_ms": statistics.median(r[1] for r in runs) * 1000}
               for name, runs in results.items()}
    settings = {k: getattr(args, k) for k in ("model", "prompt_tokens", "max_tokens", "repeats", "seed")}
    return {"args": settings, "summary": summary, "runs": results}


async def http_overhead(args, make_app: AppFactory) -> int:
    """Measure, print the table, write <args.out>/http-overhead.json."""
    report = await measure(args, make_app)
    s = report["summary"]
    print(f"\nmodel={args.model} prompt={args.prompt_tokens} tokens, output={args.max_tokens} tokens (medians)")
    print(f"{'path':<12}{'TTFT ms':>10}{'per token ms':>14}")
    for name, row in s.items():
        print(f"{name:<12}{row['ttft_ms']:>10.2f}{row['tpot_ms']:>14.3f}")
    print(f"{'added':<12}{s['http+sse']['ttft_ms'] - s['in-process']['ttft_ms']:>10.2f}"
          f"{s['http+sse']['tpot_ms'] - s['in-process']['tpot_ms']:>14.3f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report["machine"] = machine_line()
    (out / "http-overhead.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out / 'http-overhead.json'}")
    return 0
