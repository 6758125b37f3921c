"""Context piece sizes compared on one trace: which `max_piece_tokens` answers soonest under load.

    python -m eval.piece_sweep [--sizes 256 128 64 32] [--rounds 3] [--queries 30] [--load 0.4] [--prefill-share 0.07]

A piece in flight cannot be recalled, so a smaller one holds up a tail that arrives meanwhile
for less time; but every piece is a step with a fixed cost, so smaller ones keep the engine
busier. Which wins is measured here, for streamrag alone on the crawler trace:

  1. one engine per size, all with `streamrag bench`'s settings and streamrag's policy, started
     once (only one is busy at a time);
  2. the floor pass once, on the first: a floor does not depend on the piece size (everything
     before the last event is prefilled ahead). It sets the capacity, the load and the prefill
     share's time scale for every size, so all play the very same timed trace;
  3. round after round, every size plays the whole trace at that load, so that a drift of the
     machine over the run spreads over every size instead of landing on one.

Prints each pass's TTFT from the last event (P50, P95), P50 over the floor's P50 and the mean
wait beyond each query's own floor, and per size the median over the rounds. Writes
<out>/piece-sweep.json with every query's excess over its floor in every pass: which queries
wait, and whether they wait every time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from statistics import median

from tqdm import tqdm

from eval.machine import engine_binding
from eval.metrics import percentile, to_ms
from eval.replay import (
    BENCH_BLOCK_SIZE,
    LedgerTail,
    Nonces,
    engine_meta,
    hold_prefill_share,
    machine_meta,
    measure_floors,
    timed_pass,
)
from eval.report import machine_text
from eval.systems import floor, one_shot_capacity
from eval.texts import materialize
from eval.trace import Trace
from eval.workloads import PREFILL_SHARE


async def sweep(engines: Mapping[int, object], trace: Trace, load: float = 0.4,
                prefill_share: float | None = PREFILL_SHARE["crawler"], rounds: int = 3, seed: int = 0,
                floor_repeats: int = 2, progress: bool = True) -> dict:
    """`engines`: piece size -> a started `StreamEngine` whose sessions send pieces of that size.
    Returns the report (see the module docstring)."""
    if not engines:
        raise ValueError("engines: empty; give one engine per piece size")
    if rounds < 1:
        raise ValueError(f"rounds: {rounds} must be >= 1")
    for size, engine in engines.items():
        if engine.config.piece_tokens != size:
            raise ValueError(f"engines: the engine for size {size} sends pieces of {engine.config.piece_tokens}")
    first = next(iter(engines.values()))
    queries = materialize(trace, first.template)
    nonces = Nonces()
    started = time.perf_counter()
    with tqdm(total=len(queries) * (1 + rounds * len(engines)), disable=not progress, unit="query",
              dynamic_ncols=True) as bar:
        for engine in engines.values():  # warm-up: no engine's first pass pays for its first query
            await floor(engine, queries[0], nonces.next())
        bar.set_description("floor")
        floors, full = await measure_floors(first, queries, nonces, floor_repeats, bar)
        capacity = one_shot_capacity(list(full.values()))
        qps = round(load * capacity, 3)
        scale = 1.0
        if prefill_share is not None:
            queries, scale = hold_prefill_share(queries, full, prefill_share)
        arrivals = {q.id: q.arrival_s for q in trace.with_poisson_arrivals(qps, seed).queries}
        timed = [replace(q, arrival_s=arrivals[q.id]) for q in queries]
        floor_s = {f.query: f.ttft_last_s for f in floors if f.finished}
        passes = []
        for round_ in range(1, rounds + 1):
            for size, engine in engines.items():
                bar.set_description(f"round {round_}, pieces of {size}")
                run = await timed_pass(engine, "streamrag", qps, timed, nonces, 1, LedgerTail(engine), bar)
                passes.append(_pass_summary(round_, size, run, floor_s))
    floor_p50 = percentile(list(floor_s.values()), 50)
    machine = {**machine_meta(), "processes": engine_binding()}  # while the engines still run
    return {
        "meta": {"trace": trace.meta, "capacity_qps": round(capacity, 3), "load": load, "qps": qps,
                 "prefill_share": prefill_share, "time_scale": round(scale, 4), "rounds": rounds,
                 "sizes": list(engines), "engine": {**engine_meta(first), "max_piece_tokens": None},
                 "machine": machine, "wall_s": round(time.perf_counter() - started, 1)},
        "floor": {"p50_ms": to_ms(floor_p50), "queries_ms": {q: to_ms(s) for q, s in floor_s.items()},
                  "full_prefill_p50_ms": to_ms(percentile(list(full.values()), 50))},
        "passes": passes,
        "sizes": {size: _size_summary([p for p in passes if p["size"] == size], floor_p50) for size in engines},
    }


def _pass_summary(round_: int, size: int, run, floor_s: dict[str, float]) -> dict:
    done = [r for r in run.results if r.finished]
    ttft = [r.ttft_last_s for r in done]
    excess = {r.query: r.ttft_last_s - floor_s[r.query] for r in done if r.query in floor_s}
    return {"round": round_, "size": size, "finished": len(done), "queries": len(run.results),
            "leaked_blocks": run.leaked_blocks, "prefilled_vllm": run.prefilled_vllm,
            "others_cpu": round(run.cpu.others, 3),
            "ttft_last_p50_ms": to_ms(percentile(ttft, 50)) if ttft else None,
            "ttft_last_p95_ms": to_ms(percentile(ttft, 95)) if ttft else None,
            "mean_excess_ms": to_ms(sum(excess.values()) / len(excess)) if excess else None,
            "excess_ms": {q: to_ms(s) for q, s in excess.items()}}


def _size_summary(passes: list[dict], floor_p50: float) -> dict:
    p50s = [p["ttft_last_p50_ms"] for p in passes if p["ttft_last_p50_ms"] is not None]
    means = [p["mean_excess_ms"] for p in passes if p["mean_excess_ms"] is not None]
    return {"ttft_last_p50_ms": p50s, "median_p50_ms": median(p50s) if p50s else None,
            "median_p50_over_floor": round(median(p50s) / (floor_p50 * 1000), 3) if p50s else None,
            "median_mean_excess_ms": median(means) if means else None}


def format_report(out: dict) -> str:
    meta = out["meta"]
    lines = [f"{machine_text(meta)}; load {meta['load']:.0%} ({meta['qps']} QPS), prefill share "
             f"{meta['prefill_share']}; floor P50 {out['floor']['p50_ms']:.0f} ms",
             f"{'round':>5} {'size':>5} {'P50 ms':>7} {'P95 ms':>7} {'P50/floor':>9} {'mean excess ms':>14}"]
    for p in out["passes"]:
        p50 = p["ttft_last_p50_ms"]
        lines.append(f"{p['round']:>5} {p['size']:>5} {p50:>7.0f} {p['ttft_last_p95_ms']:>7.0f} "
                     f"{p50 / out['floor']['p50_ms']:>9.2f} {p['mean_excess_ms']:>14.0f}")
    lines.append("median over the rounds:")
    for size, s in out["sizes"].items():
        lines.append(f"  pieces of {size}: P50 {s['median_p50_ms']:.0f} ms ({s['median_p50_over_floor']:.2f} "
                     f"x floor), mean excess {s['median_mean_excess_ms']:.0f} ms")
    return "\n".join(lines)


async def _run(args: argparse.Namespace) -> dict:
    from contextlib import AsyncExitStack

    from engine import EngineConfig, StreamEngine
    from eval.workloads import generate

    trace = generate("crawler", args.queries, args.seed)
    trace.meta.setdefault("workload", "crawler")
    async with AsyncExitStack() as stack:  # every engine shuts down, on every path
        engines = {}
        for size in args.sizes:
            engine = StreamEngine(EngineConfig(model=args.model, record_steps=True, max_piece_tokens=size,
                                               block_size=BENCH_BLOCK_SIZE))
            stack.push_async_callback(engine.close)
            await engine.start()
            engines[size] = engine
        return await sweep(engines, trace, args.load, args.prefill_share, args.rounds, args.seed,
                           progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    from engine.models import prepare_if_packaged

    p = argparse.ArgumentParser(prog="python -m eval.piece_sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 128, 64, 32], metavar="N",
                   help="the piece sizes compared, in tokens (256 128 64 32)")
    p.add_argument("--rounds", type=int, default=3, help="passes per size (3)")
    p.add_argument("--queries", type=int, default=30)
    p.add_argument("--load", type=float, default=0.4, help="fraction of the measured one-shot capacity")
    p.add_argument("--prefill-share", type=float, default=PREFILL_SHARE["crawler"],
                   help="share of retrieval time whole-prompt prefill takes (the bench's default for crawler)")
    p.add_argument("--model", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/piece-sweep"))
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if len(set(args.sizes)) != len(args.sizes) or min(args.sizes) < 1:
        p.error(f"--sizes: {args.sizes} must be distinct sizes of at least 1 token")
    prepare_if_packaged(args.model)  # a clean checkout has not run `make serve`
    out = asyncio.run(_run(args))
    out["meta"]["command"] = "python -m eval.piece_sweep " + " ".join(sys.argv[1:] if argv is None else argv)
    print(format_report(out))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "piece-sweep.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
