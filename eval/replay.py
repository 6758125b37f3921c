"""Replay a trace against the systems, at several load levels.

    result = await replay(engine, trace, qps_levels=[0.25, 0.5, 1.0])   # exact arrival rates
    result = await replay(engine, trace, load=[0.2, 0.4, 0.6, 0.8])      # fractions of capacity
    result = await replay({"one-shot": base, "vllm-stream": base, "streamrag": tuned}, trace, ...)

Engines: one engine for every system, or a mapping system -> engine, so that each system is
measured under its own scheduling policy (`streamrag bench` runs the baselines on an engine
with vLLM's own order, policy "vllm", and streamrag on a second one with its policy). All
engines serve the same model; the baseline engine (the one of "one-shot", else the mapping's
first) runs the floor pass. Each pass reads the scheduler ledger of the engine it ran on.

The run, in order (one model, one trace for everything):
  1. warm-up: one query through the floor path on each engine, discarded;
  2. floor pass on the baseline engine, one query at a time on the idle engine: each query's
     TTFT floor, and the time to prefill its whole final prompt (for the prefill / retrieval-
     time share), each the fastest of `floor_repeats` tries;
  3. capacity: the baseline engine's one-shot throughput on the trace's prompts, queries per
     second = queries / the sum of their whole-prompt prefill times on the idle engine (step 2).
     With `load`, the QPS levels are those fractions of it, so that a level means the same
     share of the machine on any machine; `meta["capacity_qps"]` records it either way.
     With `prefill_share`, every query's event times are scaled (`meta["time_scale"]`) so that
     whole-prompt prefill takes that share of retrieval time (per-query median): load alone
     does not make two machines alike, since streaming hides prefill inside the gaps between
     chunks and a slower engine has more prefill to hide in the same gaps;
  4. for each QPS level, for each system in turn, on that system's engine: every query of the
     trace, arriving as a Poisson process at that rate (the same schedule for every system),
     open loop. A pass ends when all its queries finished and vLLM holds no KV block; then
     the next starts. Only one engine is busy at a time.
Systems run in separate passes rather than interleaved, so each sees only its own load, and
with salted system prompts (eval/texts.py), so none reuses another's cached blocks.

An engine is a started `StreamEngine` (tests hand in theirs) or a `StreamRAGClient` of a server. The
metadata records each system's engine (`meta["engines"]`, with its policy) and, as
`meta["engine"]`, the baseline engine's.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

from tqdm import tqdm

from eval.machine import CpuMeter, CpuShare, engine_binding, machine_line, wait_for_quiet
from eval.metrics import QueryResult, percentile
from eval.systems import BASELINE, SYSTEMS, floor, floor_warmed, full_prefill, one_shot_capacity, run_query
from eval.texts import materialize
from eval.trace import Trace
from eval.workloads import describe
from integrations.http_client import StreamRAGClient

# `streamrag bench`'s KV block size (its --block-size default; EngineConfig's is 128): the eval
# tools that replay for streamrag alone use it too, so that their figures compare with the bench's.
BENCH_BLOCK_SIZE = 64


@dataclass(frozen=True)
class PassResult:
    """One system over the whole trace at one QPS."""

    system: str
    qps: float
    results: tuple[QueryResult, ...]
    completion_s: float | None  # first arrival -> last query done
    prefilled_vllm: int | None  # vLLM's own count of prompt tokens computed in the pass
    leaked_blocks: int | None  # KV blocks still held after the pass (must be 0)
    cpu: CpuShare  # CPU used by this run and by other jobs on the machine meanwhile
    waited_s: float  # held back waiting for other jobs to quiet down (wait_for_quiet)
    attempts: int = 1  # > 1: earlier attempts were discarded, other jobs took too much CPU


@dataclass(frozen=True)
class BenchResult:
    meta: dict
    floor: tuple[QueryResult, ...]
    full_prefill_s: dict[str, float]  # query id -> whole-prompt TTFT on the idle engine
    durations_s: dict[str, float]  # query id -> retrieval time (start -> last event)
    floor_cpu: CpuShare
    passes: tuple[PassResult, ...]


async def replay(engines, trace: Trace, qps_levels: list[float] | None = None, systems: tuple[str, ...] = SYSTEMS,
                 max_tokens: int = 1, seed: int = 0, progress: bool = True,
                 quiet_timeout_s: float = 0.0, max_others: float | None = None,
                 attempts: int = 3, floor_repeats: int = 2, load: list[float] | None = None,
                 prefill_share: float | None = None) -> BenchResult:
    """Run the floor pass and every (QPS, system) pass; see the module docstring.

    The load levels: `qps_levels` (arrivals per second) or `load` (fractions of the measured
    capacity), exactly one of them.

    `engines`: one engine for every system, or a mapping system -> engine covering `systems`.
    On a shared machine: before each pass, wait up to `quiet_timeout_s` for other jobs to
    leave the CPU mostly idle (eval/machine.py); and when `max_others` is given, run a pass
    again (up to `attempts` times in all) while other jobs took more than that share of the
    CPU during it, keeping the least disturbed attempt. Each query's floor and idle
    whole-prompt prefill are the fastest of `floor_repeats` measurements.
    """
    if (qps_levels is None) == (load is None):
        raise ValueError("qps_levels, load: give exactly one (arrival rates, or fractions of capacity)")
    if load is not None and not all(0 < f for f in load):
        raise ValueError(f"load: {load} must be fractions of capacity above 0")
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise ValueError(f"systems: {sorted(unknown)} unknown; use some of {', '.join(SYSTEMS)}")
    by_system, engine = _engines_by_system(engines, systems)  # engine: the baseline's
    distinct = list({id(e): e for e in [engine, *by_system.values()]}.values())
    started = time.perf_counter()
    load_before = os.getloadavg()
    queries = materialize(trace, engine.template)
    nonces = Nonces()
    # Each engine has its own scheduler ledger; a pass reads the one of the engine it ran on.
    ledgers = {id(e): LedgerTail(e) for e in distinct if not isinstance(e, StreamRAGClient)}
    total = len(queries) * (1 + len(systems) * len(qps_levels or load))
    with tqdm(total=total, disable=not progress, unit="query", dynamic_ncols=True) as bar:
        for e in distinct:  # warm-up, so that no engine's first pass pays for its first query
            await _floor_path(e)(e, queries[0], nonces.next())
        bar.set_description(f"{trace.meta.get('workload', 'trace')} floor")
        meter = CpuMeter()
        await wait_for_quiet(timeout_s=quiet_timeout_s)
        meter.start()
        floors, full = await measure_floors(engine, queries, nonces, floor_repeats, bar)
        floor_cpu = meter.stop()
        capacity = one_shot_capacity(list(full.values()))
        if load is not None:
            qps_levels = [round(f * capacity, 3) for f in load]
        time_scale = 1.0
        if prefill_share is not None:
            queries, time_scale = hold_prefill_share(queries, full, prefill_share)
        passes = []
        for qps in qps_levels:
            arrivals = {q.id: q.arrival_s for q in trace.with_poisson_arrivals(qps, seed).queries}
            timed = [replace(q, arrival_s=arrivals[q.id]) for q in queries]
            for system in systems:
                bar.set_description(f"{trace.meta.get('workload', 'trace')} {system} @ {qps:g} QPS")
                best = None
                for attempt in range(1, attempts + 1):
                    waited = await wait_for_quiet(timeout_s=quiet_timeout_s)
                    on = by_system[system]
                    run = await timed_pass(on, system, qps, timed, nonces, max_tokens, ledgers.get(id(on)), bar,
                                      waited)
                    run = replace(run, attempts=attempt)
                    if best is None or run.cpu.others < best.cpu.others:
                        best = run
                    if max_others is None or run.cpu.others <= max_others:
                        break
                    bar.total += len(queries)  # the pass runs again
                passes.append(best)
    binding = engine_binding()  # while the engines still run
    meta = {
        "trace": trace.meta, "trace_shape": describe(trace), "qps_levels": list(qps_levels),
        "capacity_qps": round(capacity, 3), "load_levels": [round(q / capacity, 3) for q in qps_levels],
        "load_given": load is not None, "prefill_share_given": prefill_share, "time_scale": round(time_scale, 4),
        "systems": list(systems), "max_tokens": max_tokens, "arrival_seed": seed,
        "floor_repeats": floor_repeats,
        "engine": engine_meta(engine),  # the baseline's (floor pass); eval/report.py, plots.py
        "engines": {system: engine_meta(by_system[system]) for system in systems},
        "machine": {**machine_meta(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                    "quiet_timeout_s": quiet_timeout_s, "max_others": max_others, "processes": binding},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    durations = {q.id: q.duration_s for q in queries}
    return BenchResult(meta, tuple(floors), full, durations, floor_cpu, tuple(passes))


async def measure_floors(engine, queries: list, nonces: Nonces, repeats: int, bar=None) -> tuple[list, dict]:
    """Every query's TTFT floor and idle whole-prompt prefill time on `engine`, one query at a
    time, each the fastest of `repeats` tries: (floor results in query order, id -> seconds)."""
    measure_floor = _floor_path(engine)
    floors, full = [], {}
    for q in queries:
        # A floor is a lower bound and noise only adds to it: keep the fastest of a few.
        tries = [await measure_floor(engine, q, nonces.next()) for _ in range(repeats)]
        floors.append(min(tries, key=lambda r: r.ttft_last_s if r.finished else float("inf")))
        full[q.id] = min([await full_prefill(engine, q, nonces.next()) for _ in range(repeats)])
        if bar is not None:
            bar.update()
    return floors, full


def hold_prefill_share(queries: list, full: dict[str, float], share: float) -> tuple[list, float]:
    """`queries` with every event time scaled so that the median query's whole-prompt prefill
    (`full`, measured idle) takes `share` of its retrieval time; and the scale."""
    if not 0 < share < 1:
        raise ValueError(f"prefill_share: {share} must be in (0, 1)")
    scale = percentile([full[q.id] / q.duration_s for q in queries if q.duration_s > 0], 50) / share
    return [replace(q, events=tuple(replace(e, t_s=e.t_s * scale) for e in q.events)) for q in queries], scale


async def timed_pass(engine, system, qps, queries, nonces, max_tokens, ledger, bar=None, waited=0.0) -> PassResult:
    """`system` plays every query of `queries` (arrival times set) on `engine`, open loop; with
    a `LedgerTail`, vLLM's own count of what it prefilled and the blocks left held afterwards."""
    if ledger:
        ledger.mark()
    meter = CpuMeter()
    meter.start()
    t0 = time.perf_counter() + 0.2  # room to create every task before the first arrival
    tasks = []
    for q in queries:
        task = asyncio.create_task(run_query(system, engine, q, t0, nonces.next(), max_tokens))
        if bar is not None:
            task.add_done_callback(lambda _: bar.update())
        tasks.append(task)
    results = tuple(await asyncio.gather(*tasks))
    cpu = meter.stop()
    done = [r.t_done for r in results if r.finished]
    leaked = prefilled = None
    if ledger:
        leaked = await engine.wait_for_blocks(0, timeout_s=30)
        scheduled = ledger.scheduled_since_mark()
        # Decode steps schedule one token each: all but the first token of each answer.
        decodes = sum(max_tokens - 1 for r in results if r.finished)
        prefilled = None if scheduled is None else scheduled - decodes
    return PassResult(system, qps, results, max(done) - t0 if done else None, prefilled, leaked,
                      cpu, waited)


class Nonces:
    """Salts for system prompts: unique per run of a query, random across replays (texts.py)."""

    def __init__(self) -> None:
        self._n = random.Random().randrange(10**7) * 10

    def next(self) -> int:
        self._n += 1
        return self._n


class LedgerTail:
    """Sums vLLM's scheduled tokens (the scheduler ledger's steps.jsonl) since a mark.

    Reads only what was appended since the mark, so a long run does not re-parse the file.
    """

    def __init__(self, engine) -> None:
        self._path = engine.ledger.folder / "steps.jsonl"
        self._offset = 0
        self._enabled = bool(getattr(engine.config, "record_steps", False))

    def mark(self) -> None:
        self._offset = self._path.stat().st_size if self._path.exists() else 0

    def scheduled_since_mark(self) -> int | None:
        if not self._enabled or not self._path.exists():
            return None
        with self._path.open("rb") as f:
            f.seek(self._offset)
            lines = f.read().decode().splitlines()
        return sum(n for line in lines for n in json.loads(line).get("scheduled", {}).values())


def _engines_by_system(engines, systems: tuple[str, ...]) -> tuple[dict, object]:
    """(system -> engine for every system run, the baseline engine) from one engine or a mapping."""
    if not isinstance(engines, Mapping):
        return {system: engines for system in systems}, engines
    if not engines:
        raise ValueError("engines: an empty mapping; give one engine or one per system")
    unknown = set(engines) - set(SYSTEMS)
    if unknown:
        raise ValueError(f"engines: {sorted(unknown)} unknown systems; use some of {', '.join(SYSTEMS)}")
    missing = [s for s in systems if s not in engines]
    if missing:
        raise ValueError(f"engines: no engine for {', '.join(missing)}")
    base = engines.get(BASELINE, next(iter(engines.values())))
    by_system = {system: engines[system] for system in systems}
    probe = base.template.render("probe", "probe").prefix_ids, base.template.encode("Probe of 7 tokens?")
    for system, e in by_system.items():
        if (e.template.render("probe", "probe").prefix_ids, e.template.encode("Probe of 7 tokens?")) != probe:
            raise ValueError(f"engines: {system}'s engine tokenizes differently from the baseline's; "
                             "every system must run the same model")
    return by_system, base


def _floor_path(engine):
    return floor_warmed if isinstance(engine, StreamRAGClient) else floor


def engine_meta(engine) -> dict:
    """What a result records of the engine it ran on: its config, resolved, or the server it is."""
    if isinstance(engine, StreamRAGClient):
        return {"server": engine.base_url, "model": engine.model_name}
    config = engine.config
    return {**asdict(config), "model_path": str(engine.model_path), "dtype": config.resolved_dtype,
            "platform": config.on, "max_piece_tokens": config.piece_tokens, "busy_poll": config.busy_polling}


def machine_meta() -> dict:
    """The machine line of a result, with the vLLM version and torch's threads."""
    import torch
    import vllm

    return {**machine_line(), "cpus": os.cpu_count(), "vllm": vllm.__version__,
            "torch_threads": torch.get_num_threads()}
