"""What HTTP + SSE adds: TTFT and time per output token, server vs the in-process engine.

    python -m eval.http_overhead [--model default] [--prompt-tokens 512] [--max-tokens 64]

One engine, reached two ways: straight (`complete_stream`) and through the app on a real
uvicorn on 127.0.0.1 serving that same engine (`POST /v1/completions`, `stream: true`, SSE
through sse-starlette, read by `StreamRAGClient`), alternating so that drift hits both. One
engine, because two engines on one machine are not equal: vLLM's CPU build binds each to the
same core. Client and server share this process's event loop, so the client's own parsing
counts against HTTP: the figure is an upper bound. Each gets its own fresh random prompt of the same length, so no prefix cache helps.
Targets (issue): <= 5 ms added to TTFT, <= 1 ms added per output token.
Writes <out>/http-overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path

import uvicorn
from tqdm import tqdm

from app.main import create_app
from app.settings import Settings
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


async def main_async(args) -> dict:
    rng = random.Random(args.seed)
    max_model_len = args.prompt_tokens + args.max_tokens + 64
    config = EngineConfig(model=args.model, max_model_len=max_model_len)
    async with StreamEngine(config) as engine:
        app = create_app(Settings(model=args.model, retrieval=False, max_model_len=max_model_len), engine=engine)
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
    return {"args": vars(args), "summary": summary, "runs": results}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/http")
    args = p.parse_args(argv)
    report = asyncio.run(main_async(args))
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


if __name__ == "__main__":
    main()
