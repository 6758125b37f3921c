"""What HTTP + SSE adds: TTFT and time per output token, server vs the in-process engine.

    python -m eval.http_overhead [--model default] [--prompt-tokens 512] [--max-tokens 64]

One engine, one run. The app (real uvicorn on 127.0.0.1, SSE through sse-starlette) serves
that same engine on the same event loop; each repeat times the same prompt once straight on
the engine (`complete_stream`) and once through `POST /v1/completions` with `stream: true`,
read with httpx, alternating so that drift hits both. The prompt is fresh random ids per
repeat, identical for both paths... except that the second path would then hit vLLM's
prefix cache: so each path gets its own random prompt of the same length.
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

import httpx
from tqdm import tqdm

from app.main import create_app
from app.settings import Settings
from engine import EngineConfig, StreamEngine


async def _in_process(engine, prompt, max_tokens) -> tuple[float, float]:
    t0 = time.perf_counter()
    first = last = None
    n = 0
    async for delta in engine.complete_stream(prompt_token_ids=prompt, max_tokens=max_tokens,
                                              temperature=0.0, ignore_eos=True):
        now = time.perf_counter()
        first = first or now
        last = now
        n += len(delta.token_ids)
    return first - t0, (last - first) / max(n - 1, 1)


async def _http(client: httpx.AsyncClient, prompt, max_tokens) -> tuple[float, float]:
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    t0 = time.perf_counter()
    first = last = None
    n = 0
    async with client.stream("POST", "/v1/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.endswith("[DONE]"):
                continue
            ids = json.loads(line[5:])["choices"][0]["token_ids"]
            if not ids:
                continue
            now = time.perf_counter()
            first = first or now
            last = now
            n += len(ids)
    return first - t0, (last - first) / max(n - 1, 1)


async def main_async(args) -> dict:
    import uvicorn

    rng = random.Random(args.seed)
    config = EngineConfig(model=args.model, max_model_len=args.prompt_tokens + args.max_tokens + 64)
    async with StreamEngine(config) as engine:
        settings = Settings(model=args.model, retrieval=False, max_model_len=config.max_model_len)
        server = uvicorn.Server(uvicorn.Config(create_app(settings, engine=engine), host="127.0.0.1",
                                               port=0, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        vocab = len(engine.tokenizer)
        results = {"in-process": [], "http+sse": []}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            def fresh():
                return [rng.randrange(100, vocab) for _ in range(args.prompt_tokens)]

            await _http(client, fresh(), 4)  # warm-up both paths
            await _in_process(engine, fresh(), 4)
            for _ in tqdm(range(args.repeats), desc="http overhead", unit="pair"):
                results["in-process"].append(await _in_process(engine, fresh(), args.max_tokens))
                results["http+sse"].append(await _http(client, fresh(), args.max_tokens))
        server.should_exit = True
        await serving
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
    (out / "http-overhead.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out / 'http-overhead.json'}")


if __name__ == "__main__":
    main()
