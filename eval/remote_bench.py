"""Remote benchmark: the crawler-shaped replay through the remote backend, against
non-streaming requests to the same vLLM servers.

    python -m eval.remote_bench --model default --replicas 2 --queries 16 --qps 0.25 0.5
    python -m eval.remote_bench --vllm-url http://h1:8001 --vllm-url http://h2:8001 --model default

Without `--vllm-url` it starts `--replicas` local vLLM servers (eval only: each on its own
core, prefix caching and prompt-token details on) and stops them at the end. Both systems
replay the same trace (eval/workloads.py, crawler shape) with the same prompts (eval/texts.py,
a salted system prompt per run so no run reuses another's blocks) on the same servers, in
separate passes per load level (eval/systems.py):

  one-shot   waits for the last page, then sends the whole prompt as one streamed request;
  streamrag  one `VLLMServersSession` per query: each page warms the session's replica's prefix
             cache as it arrives, and the final request computes only what is not cached.

Reuse is the servers' own numbers: per streamrag query, the final request's `cached_tokens`;
per pass, the change in `vllm:prefix_cache_hits_total` / `..._queries_total` over all servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from engine.models import prepare_if_packaged, resolve_model
from engine.remote import VLLMServersEngine
from eval.metrics import summarize
from eval.server_process import VllmServerProcess
from eval.systems import run_query
from eval.texts import materialize
from eval.workloads import describe, generate

SYSTEMS = ("one-shot", "streamrag")


class _Recording:
    """The engine, remembering the sessions a pass opens (for their server-side records)."""

    def __init__(self, engine: VLLMServersEngine) -> None:
        self._engine = engine
        self.sessions = []

    def __getattr__(self, name):
        return getattr(self._engine, name)

    async def open_session(self, **kwargs):
        session = await self._engine.open_session(**kwargs)
        self.sessions.append(session)
        return session


async def _cache_counters(engine: VLLMServersEngine) -> tuple[float, float]:
    metrics = (await engine.server_metrics()).values()
    return (sum(m.prefix_cache_hits or 0 for m in metrics), sum(m.prefix_cache_queries or 0 for m in metrics))


async def run_pass(engine: VLLMServersEngine, system: str, qps: float, trace, queries, nonce: int,
                   max_tokens: int) -> dict:
    # Poisson arrivals: the same schedule for both systems at one load (as eval/replay.py).
    arrivals = {q.id: q.arrival_s for q in trace.with_poisson_arrivals(qps, trace.meta["seed"]).queries}
    timed = [replace(q, arrival_s=arrivals[q.id]) for q in queries]
    recording = _Recording(engine)
    hits0, asked0 = await _cache_counters(engine)
    t0 = time.perf_counter() + 0.2
    results = await asyncio.gather(*(
        run_query(system, recording, q, t0, nonce + i, max_tokens) for i, q in enumerate(timed)))
    blocks_left = await engine.wait_for_blocks(0, timeout_s=30)  # must be 0: nothing leaks
    hits1, asked1 = await _cache_counters(engine)
    done = [r.t_done for r in results if r.finished]
    summary = summarize(list(results), max(done) - t0 if done else None)
    finals = [s.server_requests[-1] for s in recording.sessions if s.state == "finished"]
    summary.update({
        "system": system, "qps": qps,
        "errors": [r.error for r in results if r.error],
        "server_cache_hit_tokens": hits1 - hits0, "server_cache_query_tokens": asked1 - asked0,
        "final_cached_tokens": sum(r.cached_tokens or 0 for r in finals) if finals else None,
        "failovers": sum(s.failovers for s in recording.sessions), "blocks_left": blocks_left,
    })
    return summary


async def bench(args: argparse.Namespace) -> dict:
    servers: list[VllmServerProcess] = []
    urls = args.vllm_url or []
    if not urls:
        logs = Path(tempfile.mkdtemp(prefix="streamrag-remote-bench-"))
        prepare_if_packaged(args.model)  # a clean checkout has not run `make serve`
        model_path = resolve_model(args.model)
        cpus = os.cpu_count() or 1
        servers = [VllmServerProcess(model_path, logs / f"replica{i}.log", block_size=args.block_size,
                                     max_model_len=args.max_model_len, kv_cache_gib=2,
                                     served_model_name="bench", cpu_bind=str(i % cpus))
                   for i in range(args.replicas)]
        for server in servers:
            server.start()
        urls = [s.url for s in servers]
    try:
        await asyncio.gather(*(s.wait_ready() for s in servers))
        async with VLLMServersEngine(urls, model=args.model) as engine:
            trace = generate("crawler", args.queries, seed=args.seed)
            queries = materialize(trace, engine.template)
            nonce = random.Random().randrange(10**6) * 1000
            # Warm-up, discarded: the first requests of a fresh server are slower.
            await run_pass(engine, "one-shot", 10.0, trace, queries[:2], nonce, args.max_tokens)
            load_before = os.getloadavg()
            passes = []
            for qps in args.qps:
                for system in SYSTEMS:
                    nonce += 100
                    passes.append(await run_pass(engine, system, qps, trace, queries, nonce, args.max_tokens))
                    print(_row(passes[-1]), flush=True)
            return {
                "command": "python -m eval.remote_bench " + " ".join(args.argv),
                "model": str(engine.model_path), "served_model": engine.served_model_name,
                "replicas": len(urls), "block_size": engine.block_size, "max_model_len": engine.max_model_len,
                "trace": trace.meta, "trace_shape": describe(trace), "max_tokens": args.max_tokens,
                "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                            "python": platform.python_version(), "loadavg_before": load_before,
                            "loadavg_after": os.getloadavg()},
                "replica_status": [asdict(s) for s in engine.replica_status()],
                "passes": passes,
            }
    finally:
        for server in servers:
            server.stop()


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def _row(p: dict) -> str:
    hit = p["server_cache_hit_tokens"] / p["server_cache_query_tokens"] if p["server_cache_query_tokens"] else 0
    return (f"| {p['system']} | {p['qps']:g} | {p['finished']}/{p['queries']} | {_ms(p['ttft_last_p50_s'])} | "
            f"{_ms(p['ttft_last_p95_s'])} | {_ms(p['ttft_start_p50_s'])} | {_ms(p['ttft_start_p95_s'])} | "
            f"{p['prompt_tokens']} | {p['final_cached_tokens'] if p['final_cached_tokens'] is not None else '-'} | "
            f"{hit:.0%} |")


HEADER = ("| system | QPS | finished | TTFT from last page p50 (ms) | p95 | TTFT from start p50 (ms) | p95 | "
          "prompt tokens | final request cached (server) | server prefix-cache hit rate |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    import sys

    parser = argparse.ArgumentParser(prog="python -m eval.remote_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--vllm-url", action="append", help="use running servers (repeat); else start local ones")
    parser.add_argument("--replicas", type=int, default=2, help="local servers to start (without --vllm-url)")
    parser.add_argument("--model", default="default", help='"default", "tiny" or a model folder (the servers\' model)')
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--qps", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--max-tokens", type=int, default=1, help="answer tokens (1: TTFT only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/remote-bench", help="folder for result.json")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    print(HEADER, flush=True)
    result = asyncio.run(bench(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {out / 'result.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
