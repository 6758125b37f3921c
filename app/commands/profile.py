"""`streamrag profile`: measure what preemption costs on this machine and save the fit.

Recompute cost = the time to prefill N fresh tokens (random ids, so the prefix cache cannot
help), for N from 16 up to the model's limit, median of a few runs, fitted as a quadratic.
The CPU build has no KV offload path (the cache already lives in host memory; vLLM's
offloading connector moves GPU blocks to the host), so no swap cost is measured and the
engine preempts by recompute. The JSON keeps a `swap` field for deployments that have one.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("profile", help="fit the preemption cost model on this machine")
    p.add_argument("--model", default="default", help='"default", "tiny" or a model folder')
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="where to write the JSON (default: <cache>/profiles/<model>.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_profile(args))


async def _profile(args: argparse.Namespace) -> int:
    import platform
    import random
    import statistics
    import time

    from tqdm import tqdm

    from engine import EngineConfig, Sampling, StreamEngine
    from engine.local.cost_model import CostModel, Fit, default_profile_path

    sizes = [16]
    while sizes[-1] * 2 < args.max_model_len - 16:
        sizes.append(sizes[-1] * 2)
    sizes.append(args.max_model_len - 16)
    rng = random.Random(0)
    config = EngineConfig(model=args.model, max_model_len=args.max_model_len)
    times: list[float] = []
    async with StreamEngine(config) as engine:
        vocab = len(engine.tokenizer)
        await engine.complete(prompt_token_ids=[rng.randrange(100, vocab) for _ in range(64)], sampling=Sampling(max_tokens=1))
        with tqdm(total=len(sizes) * args.repeats, desc="profile recompute", unit="run") as bar:
            for n in sizes:
                runs = []
                for _ in range(args.repeats):
                    ids = [rng.randrange(100, vocab) for _ in range(n)]
                    started = time.perf_counter()
                    await engine.complete(prompt_token_ids=ids, sampling=Sampling(max_tokens=1))
                    runs.append(time.perf_counter() - started)
                    bar.update()
                times.append(statistics.median(runs))
    model = CostModel(Fit.of(sizes, times), swap=None,
                      machine=f"{platform.machine()} {platform.processor() or ''} cpus={_cpus()}".strip(),
                      model=args.model)
    out = args.out or default_profile_path(args.model)
    model.save(out)
    print(f"{'tokens':>8}{'recompute s':>14}{'fit s':>10}")
    for n, t in zip(sizes, times):
        print(f"{n:>8}{t:>14.4f}{model.recompute.seconds(n):>10.4f}")
    print("swap: no KV offload path on the CPU build; preemption recomputes")
    print(f"wrote {out}")
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))
