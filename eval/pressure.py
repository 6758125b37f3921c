"""Memory pressure: vLLM's default order against each policy, with and without idle preemption.

    python -m eval.pressure [--workload crawler|anns] [--load 0.5 | --qps 2] [--stretch 10]
                            [--kv-blocks 128] [--timeout 30] [--out results/pressure] [--quick]

One trace, one arrival schedule, streamrag sessions (append + LCP update, `eval/systems.py`)
in every configuration; each configuration is its own engine, since the policy and
preemption are fixed per engine: "vllm" (vLLM's order, no preemption of waiting sessions:
vLLM's own behaviour), then fcfs / lcas / mcps each without and with `preempt_idle` (the
policies' other behaviour, `isolate_final` and setting aside what cannot get blocks, is on in
both; engine/vllm_scheduler.py). Pressure, as in the
paper: the gaps between a query's chunks are stretched (x10 crawler, x30 ANNS) so sessions sit
idle holding KV for longer, and the KV cache (`--kv-blocks`) holds only part of what the
concurrent sessions need.

The arrival rate is a fraction of the machine's capacity (`--load`, as `streamrag bench` sets
its levels): the first configuration's engine, idle, prefills every query's whole final prompt
one at a time, capacity is the one-shot throughput that implies, and arrivals run at `load` x
capacity, so that a run loads a slow machine as much as a fast one. `--qps` gives an exact rate.

Idle sessions hold their blocks, so a ready session can wait for blocks that never come free
(in vLLM's order the head of the queue blocks all behind it). Every query is bounded: no first
token `--timeout` s after its last chunk means "starved"; it is aborted (freeing its blocks)
and counted at the timeout, so percentiles that reach into starved queries are lower bounds
(marked ">=") and so are ratios against them. Writes <out>/pressure-<workload>.json and
<out>/pressure-<workload>-ttft-cdf.png (summaries, table and plot: eval/pressure_report.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from engine.models import prepare_if_packaged
from eval.machine import CpuMeter, machine_line, wait_for_quiet
from eval.metrics import QueryResult
from eval.pressure_report import PressureRun, build_report, format_table, plot
from eval.systems import full_prefill, one_shot_capacity, run_query
from eval.texts import materialize
from eval.trace import Trace, TraceQuery
from eval.workloads import Scaling, generate

# (name, policy, preempt_idle): vLLM's own behaviour first, the baseline of every ratio.
CONFIGS = (("vllm", "vllm", False),) + tuple(
    (f"{p}{'+preempt' if pre else ''}", p, pre) for p in ("fcfs", "lcas", "mcps") for pre in (False, True))
STRETCH = {"crawler": 10.0, "anns": 30.0}  # the paper's memory-pressure factors


def stretch(trace: Trace, factor: float) -> Trace:
    """Gaps between a query's events x `factor`; the first event (the search) keeps its time."""
    def one(q: TraceQuery) -> TraceQuery:
        first = q.events[0].t_s
        return replace(q, events=tuple(replace(e, t_s=round(first + (e.t_s - first) * factor, 4)) for e in q.events))
    return Trace(tuple(one(q) for q in trace.queries), {**trace.meta, "stretch": factor})


async def run_config(engine, name: str, trace: Trace, timeout_s: float, quiet_s: float = 0.0,
                     nonce: int = 0) -> PressureRun:
    """Play every query of `trace` as a streamrag session on a started engine, each bounded."""
    queries = materialize(trace, engine.template)
    before, first_step = engine.preemption_stats(), len(engine.ledger.step_records())
    waited = await wait_for_quiet(timeout_s=quiet_s)
    meter, t0 = CpuMeter(), time.perf_counter() + 0.2  # room to create every task first
    meter.start()
    tasks = [asyncio.create_task(_bounded(engine, q, t0, nonce + i, timeout_s)) for i, q in enumerate(queries)]
    due = [t0 + q.arrival_s + q.duration_s for q in queries]
    monitor = _Monitor(engine, lambda now: sum(now >= d and not t.done() for d, t in zip(due, tasks)))
    sampler = asyncio.create_task(monitor.run())
    results = tuple(await asyncio.gather(*tasks))
    sampler.cancel()
    cpu, completion = meter.stop(), time.perf_counter() - t0
    leaked = await engine.wait_for_blocks(0, timeout_s=30)
    after, steps = engine.preemption_stats(), engine.ledger.step_records()[first_step:]
    computed = sum(sum(s["scheduled"].values()) for s in steps) if engine.config.record_steps else None
    preempt = {"by_mode": {m: n - before.by_mode.get(m, 0) for m, n in after.by_mode.items()},
               "tokens_dropped": after.tokens_dropped - before.tokens_dropped,
               "resumed": after.resumed - before.resumed,
               "seconds_preempted": round(after.seconds_preempted - before.seconds_preempted, 3)}
    return PressureRun(name, results, completion, preempt, computed, monitor.stalled_s,
                       monitor.full_share(), leaked, cpu, waited)


async def _bounded(engine, q, t0: float, nonce: int, timeout_s: float) -> QueryResult:
    # The deadline counts from the query's last chunk: retrieval time is never held against it.
    deadline = t0 + q.arrival_s + q.duration_s + timeout_s
    try:
        return await asyncio.wait_for(run_query("streamrag", engine, q, t0, nonce),
                                      timeout=deadline - time.perf_counter())
    except TimeoutError:  # run_query's own `finally` aborted the session: its blocks are free
        return QueryResult(q.id, "streamrag", False,
                           error=f"starved: no first token {timeout_s:g} s after the last chunk")


class _Monitor:
    """Samples the scheduler ledger during a pass: KV occupancy, and stalls (the scheduler ran
    no step while a query waited for its first token: it was queued for blocks)."""

    def __init__(self, engine, waiting, dt: float = 0.25) -> None:
        self._engine, self._waiting, self._dt = engine, waiting, dt
        self.stalled_s, self._samples, self._full = 0.0, 0, 0

    async def run(self) -> None:
        path = self._engine.ledger.folder / "steps.jsonl"
        size, grew = -1, time.perf_counter()
        while True:
            await asyncio.sleep(self._dt)
            now, new = time.perf_counter(), path.stat().st_size if path.exists() else 0
            grew, size = (now if new != size else grew), new
            if self._waiting(now) and now - grew >= 1.0:
                self.stalled_s += self._dt
            status = self._engine.ledger.read_status()
            self._samples += 1
            self._full += bool(status and status.blocks_in_use >= 0.95 * status.blocks_total)

    def full_share(self) -> float:
        return round(self._full / self._samples, 3) if self._samples else 0.0


# -- the run ----------------------------------------------------------------------------------
def pressure_trace(workload: str, queries: int, qps: float, factor: float, seed: int, scaling: Scaling) -> Trace:
    return stretch(generate(workload, queries, seed=seed, scaling=scaling, qps=qps), factor)


# Salts no replay uses (they use 0.. and 10,000 x config..): the replay that follows on the same
# engine must find none of the capacity pass's prompts in vLLM's prefix cache.
CAPACITY_NONCE = 90_000_000


async def capacity_qps(engine, trace: Trace, nonce: int = CAPACITY_NONCE) -> float:
    """One-shot throughput on the trace's prompts (queries per second), each query's whole final
    prompt prefilled alone on the idle engine, as `streamrag bench` measures it (eval/replay.py)."""
    queries = materialize(trace, engine.template)
    return one_shot_capacity([await full_prefill(engine, q, nonce + i) for i, q in enumerate(queries)])


async def run_all(args) -> dict:
    from engine import EngineConfig, Sampling, StreamEngine

    scaling = Scaling(args.size_factor, args.time_factor, args.max_context)
    trace = pressure_trace(args.workload, args.queries, args.qps or 1.0, args.stretch, args.seed, scaling)
    runs, load_before, capacity = [], os.getloadavg(), None
    # vLLM refuses a max_model_len its cache cannot hold once (one block is its reserved null block).
    max_len = min(4096, (args.kv_blocks - 1) * args.block_size)
    for i, (name, policy, preempt) in enumerate(c for c in CONFIGS if c[0] in args.configs):
        config = EngineConfig(model=args.model, policy=policy, preempt_idle=preempt, num_kv_blocks=args.kv_blocks,
                              block_size=args.block_size, max_model_len=max_len, max_num_batched_tokens=2048,
                              max_num_seqs=256, record_steps=True)
        started = time.perf_counter()
        async with StreamEngine(config) as engine:
            startup = time.perf_counter() - started
            await engine.complete(prompt_token_ids=list(range(100, 400)), sampling=Sampling(max_tokens=1))  # warm-up
            if capacity is None and args.load is not None:  # on the first engine, before any replay
                capacity = await capacity_qps(engine, trace)
                trace = trace.with_poisson_arrivals(round(args.load * capacity, 3), args.seed)
                print(f"capacity {capacity:.2f} QPS (one-shot, idle): {args.load:.0%} of it is "
                      f"{trace.meta['qps']:g} QPS", flush=True)
            print(f"{name}: engine up in {startup:.0f} s; replaying {len(trace.queries)} queries", flush=True)
            run = await run_config(engine, name, trace, args.timeout, args.wait_quiet, nonce=10_000 * (i + 1))
            runs.append(replace(run, startup_s=round(startup, 1)))
    import vllm

    meta = {"model": args.model, "capacity_qps": capacity and round(capacity, 3), "load": args.load,
            "machine": machine_line(), "kv_blocks": args.kv_blocks, "block_size": args.block_size,
            "max_model_len": max_len, "max_num_batched_tokens": 2048, "max_num_seqs": 256,
            "cpus": os.cpu_count(), "vllm": vllm.__version__,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "args": vars(args)}
    return build_report(runs, trace, args.timeout, meta)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", choices=("crawler", "anns"), default="crawler")
    p.add_argument("--load", type=float, help="arrivals at this fraction of the measured one-shot capacity "
                                              "(default 0.5 unless --qps)")
    p.add_argument("--qps", type=float, help="an exact arrival rate instead of --load")
    p.add_argument("--queries", type=int, default=60)
    p.add_argument("--stretch", type=float, help="gap factor (default: x10 crawler, x30 anns, as the paper)")
    p.add_argument("--kv-blocks", type=int, default=128, help="KV cache size in blocks (deliberately small)")
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--timeout", type=float, default=30.0, help="s after the last chunk before a query is starved")
    p.add_argument("--size-factor", type=float, default=8.0, help="paper tokens / this")
    p.add_argument("--time-factor", type=float, default=0.1, help="paper times x this, before the stretch")
    p.add_argument("--max-context", type=int, default=3000, help="context tokens per query at most")
    p.add_argument("--model", default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--configs", nargs="+", default=[c[0] for c in CONFIGS], choices=[c[0] for c in CONFIGS])
    p.add_argument("--wait-quiet", type=float, default=0.0, help="wait up to this long for other jobs before a pass")
    p.add_argument("--out", default="results/pressure")
    p.add_argument("--quick", action="store_true", help="a smoke run: 8 queries, vllm and fcfs+preempt only")
    args = p.parse_args(argv)
    prepare_if_packaged(args.model)  # a clean checkout has not run `make serve`
    args.stretch = args.stretch or STRETCH[args.workload]
    if args.qps is not None and args.load is not None:
        p.error("--qps and --load: give one (an exact rate, or a fraction of capacity)")
    if args.qps is None and args.load is None:
        args.load = 0.5
    if args.load is not None and not 0 < args.load:
        p.error(f"--load: {args.load} must be a fraction of capacity above 0")
    if args.quick:
        args.queries, args.timeout = min(args.queries, 8), min(args.timeout, 10.0)
        args.configs = ["vllm", "fcfs+preempt"]

    report = asyncio.run(run_all(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"pressure-{args.workload}.json"
    path.write_text(json.dumps(report, indent=1))
    print("\n" + format_table(report))
    print(f"wrote {path} and {plot(report, out / f'pressure-{args.workload}-ttft-cdf.png')}")


if __name__ == "__main__":
    main()
