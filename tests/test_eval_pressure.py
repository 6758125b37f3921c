"""The memory-pressure replay: stretching, censored summaries, and one tiny pass on the
session's engine (no engine of its own: the real comparison runs from the command line)."""

from __future__ import annotations

import json

from eval.machine import CpuShare
from eval.metrics import QueryResult
from eval.pressure import CONFIGS, PressureRun, capacity_qps, pressure_trace, run_config, stretch
from eval.pressure_report import (
    build_report,
    censored_percentile,
    format_table,
    plot,
    summarize,
    vs_baseline,
)
from eval.workloads import Scaling, generate

TINY = Scaling(size_factor=48, time_factor=0.02, max_context_tokens=300)


def test_configs_are_vllm_then_each_policy_with_and_without_preemption():
    assert CONFIGS[0] == ("vllm", "vllm", False)
    assert {(p, pre) for _, p, pre in CONFIGS[1:]} == {(p, pre) for p in ("fcfs", "lcas", "mcps") for pre in (0, 1)}


def test_stretch_multiplies_gaps_and_keeps_the_first_event():
    trace = generate("crawler", queries=5, seed=1, scaling=TINY, qps=2.0)
    stretched = stretch(trace, 10)
    assert stretched.meta["stretch"] == 10 and stretched.meta["qps"] == 2.0
    for q, s in zip(trace.queries, stretched.queries):
        assert (s.id, s.arrival_s, s.final_chunks) == (q.id, q.arrival_s, q.final_chunks)
        assert s.events[0].t_s == q.events[0].t_s
        for (a, b), (c, d) in zip(zip(q.events, q.events[1:]), zip(s.events, s.events[1:])):
            assert abs((d.t_s - c.t_s) - 10 * (b.t_s - a.t_s)) < 1e-3


def _run(name: str, ttfts: list[float | None]) -> PressureRun:
    # None: starved. Query i arrives at 0 and its last chunk comes at 1 s.
    results = tuple(QueryResult(f"q{i}", "streamrag", True, 10, 0.0, 1.0, 1.0 + t, 1.0 + t, prefilled=10)
                    if t is not None else QueryResult(f"q{i}", "streamrag", False, error="starved: ...")
                    for i, t in enumerate(ttfts))
    return PressureRun(name, results, 9.0, {"by_mode": {}, "tokens_dropped": 0, "resumed": 0,
                                            "seconds_preempted": 0.0}, 50, 0.0, 0.0, 0, CpuShare(1.0, 0.5, 0.1))


def test_starved_queries_count_at_the_timeout_as_lower_bounds():
    assert censored_percentile([(1.0, False), (2.0, False), (5.0, True)], 50) == (2.0, False)
    assert censored_percentile([(1.0, False), (2.0, False), (5.0, True)], 95)[1] is True
    durations = {f"q{i}": 1.0 for i in range(4)}
    base = summarize(_run("vllm", [0.5, 1.0, None, None]), timeout_s=5.0, durations=durations)
    assert (base["finished"], base["starved"], base["failed"]) == (2, 2, 0)
    assert base["ttft_last_max_s"] == 5.0 and base["lower_bound"]["ttft_last_max"]
    assert base["ttft_start_max_s"] == 6.0  # retrieval (1 s) + the timeout
    assert base["ttft_last_p50_s"] == 3.0 and base["lower_bound"]["ttft_last_p50"]  # halfway to a starved one
    good = summarize(_run("fcfs+preempt", [0.1, 0.2, 0.2, 0.5]), timeout_s=5.0, durations=durations)
    assert not any(good["lower_bound"].values())
    ratios = vs_baseline(base, good)
    assert ratios["ttft_last_p95"][1] == ">=" and ratios["ttft_last_p95"][0] > 5
    assert vs_baseline(good, base)["ttft_last_p95"][1] == "?"


async def test_a_tiny_pass_on_the_session_engine(engine, idle_blocks, tmp_path):
    trace = pressure_trace("crawler", queries=3, qps=4.0, factor=3.0, seed=2, scaling=TINY)
    capacity = await capacity_qps(engine, trace)  # arrivals at half of it, as --load 0.5
    trace = trace.with_poisson_arrivals(round(0.5 * capacity, 3), seed=2)
    assert 0 < trace.meta["qps"] < capacity
    run = await run_config(engine, "vllm", trace, timeout_s=30.0)
    assert [r.finished for r in run.results] == [True] * 3, [r.error for r in run.results]
    assert run.leaked_blocks == 0 and run.completion_s > 0
    assert run.computed_vllm >= sum(r.prompt_tokens for r in run.results)
    meta = {"model": "tiny", "kv_blocks": 0, "block_size": 32, "cpus": 2, "capacity_qps": capacity, "load": 0.5}
    report = build_report([run], trace, 30.0, meta)
    report = json.loads(json.dumps(report))  # the table and plot work from the saved JSON
    [config] = report["configs"]
    assert config["summary"]["starved"] == 0 and config["vs_vllm"]["ttft_last_p95"] == [1.0, "="]
    assert "vllm" in format_table(report) and "(50% of a capacity of" in format_table(report)
    assert plot(report, tmp_path / "cdf.png").stat().st_size > 0
