"""Scheduler overhead per step with N sessions waiting (the paper's artifact: ~150 µs at 500).

    python -m eval.sched_overhead [--sessions 500] [--policies vllm fcfs lcas mcps]

For each policy: an engine (tiny model by default: the scheduler's cost does not depend on
the model), N sessions opened and prefilled, then left idle waiting for their next chunk
(they sit in vLLM's waiting queue holding their blocks), and one active session streamed
through appends and a decode. The scheduler times its own `schedule()` call (policy sort,
vLLM's schedule, idle-preemption check) and writes it to the ledger; we report the steps
taken while all N sessions were waiting. Writes <out>/sched-overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from pathlib import Path

from tqdm import tqdm

from engine import EngineConfig, Sampling, StreamEngine
from engine.models import prepare_if_packaged
from retrievers import Chunk


async def measure(policy: str, args) -> dict:
    config = EngineConfig(model=args.model, policy=policy, record_steps=True, block_size=32,
                          max_model_len=2048, max_num_seqs=args.sessions + 8, kv_cache_gib=1.0)
    async with StreamEngine(config) as engine:
        idle = []
        for i in tqdm(range(args.sessions), desc=f"{policy}: opening idle sessions", unit="session"):
            session = await engine.open_session(question=f"idle session {i}")
            await session.append([Chunk(id=f"p{i}", text=f"passage {i} " * 8)])
            idle.append(session)
        for session in idle:
            await session.wait_prefilled()
        first_step = len(engine.ledger.step_records())
        active = await engine.open_session(question="the active one")
        for i in range(args.chunks):
            await active.append([Chunk(id=f"c{i}", text=f"chunk {i} " * 40)])
            await active.wait_prefilled()
        await active.finish_context()
        async for _ in active.generate(Sampling(max_tokens=args.decode, ignore_eos=True)):
            pass
        steps = [r for r in engine.ledger.step_records()[first_step:] if r.get("waiting", 0) >= args.sessions]
        for session in idle:
            await session.abort()
    us = sorted(r["schedule_us"] for r in steps)
    return {"policy": policy, "steps": len(us), "waiting": args.sessions,
            "p50_us": statistics.median(us), "p95_us": us[int(0.95 * (len(us) - 1))], "max_us": us[-1]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--sessions", type=int, default=500)
    p.add_argument("--chunks", type=int, default=8)
    p.add_argument("--decode", type=int, default=64)
    p.add_argument("--policies", nargs="+", default=["vllm", "fcfs", "lcas", "mcps"])
    p.add_argument("--out", default="results/sched")
    args = p.parse_args(argv)
    prepare_if_packaged(args.model)  # a clean checkout has not run `make serve`
    rows = [asyncio.run(measure(policy, args)) for policy in args.policies]
    print(f"\nschedule() per step with {args.sessions} sessions waiting (model {args.model})")
    print(f"{'policy':<8}{'steps':>7}{'p50 µs':>10}{'p95 µs':>10}{'max µs':>10}")
    for r in rows:
        print(f"{r['policy']:<8}{r['steps']:>7}{r['p50_us']:>10.0f}{r['p95_us']:>10.0f}{r['max_us']:>10.0f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sched-overhead.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out / 'sched-overhead.json'}")


if __name__ == "__main__":
    main()
