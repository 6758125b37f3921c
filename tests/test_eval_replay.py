"""A tiny replay of both workload shapes on the session's tiny engine, in seconds.

Checks the report's structure, that every query finished in every system, and that the token
accounting of each system matches vLLM's own per-step counts (the scheduler ledger). One
replay runs streamrag on a second engine with its own scheduling policy.
"""

from __future__ import annotations

import argparse
import json

import pytest

from app.cli import main as cli_main
from app.commands.bench import held_share, register
from eval.plots import plot_report
from eval.replay import replay
from eval.report import build_report, format_table, machine_text, write_report
from eval.systems import SYSTEMS
from eval.trace import read_trace, write_trace
from eval.workloads import PREFILL_SHARE, Scaling, describe, generate

# Prompts of a few hundred tokens and retrieval of a fraction of a second: seconds per pass.
TINY = Scaling(size_factor=48, time_factor=0.04, max_context_tokens=600)


@pytest.mark.parametrize("workload", ["crawler", "anns"])
async def test_tiny_replay_report(engine, idle_blocks, tmp_path, workload):
    trace = generate(workload, queries=4, seed=3, scaling=TINY)
    write_trace(trace, tmp_path / "trace.jsonl")
    trace = read_trace(tmp_path / "trace.jsonl")  # the replay runs from the file format

    result = await replay(engine, trace, qps_levels=[8.0], progress=False)
    report = json.loads(write_report(build_report(result), tmp_path / "r.json").read_text())

    assert set(report) == {"meta", "floor", "levels"}
    assert report["meta"]["trace"]["workload"] == workload
    assert report["meta"]["trace"]["size_factor"] == 48
    assert len(report["floor"]["queries"]) == 4
    assert all(q["finished"] and q["ttft_last_s"] > 0 for q in report["floor"]["queries"])
    assert report["floor"]["summary"]["full_prefill_p50_s"] > 0

    [level] = report["levels"]
    assert level["qps"] == 8.0 and list(level["systems"]) == list(SYSTEMS)
    for name, system in level["systems"].items():
        s = system["summary"]
        assert s["queries"] == s["finished"] == 4, (name, [q["error"] for q in system["queries"]])
        assert all(q["finished"] and q["error"] is None for q in system["queries"])
        for key in ("ttft_last", "ttft_start"):
            assert 0 < s[f"{key}_p50_s"] <= s[f"{key}_p95_s"] <= s[f"{key}_p99_s"]
        # From the query's start includes retrieval, so it is never shorter.
        assert all(q["ttft_start_s"] >= q["ttft_last_s"] for q in system["queries"])
        assert s["completion_s"] > 0 and system["leaked_blocks"] == 0
        assert set(system["vs_one_shot"]) >= {"ttft_last_p50", "ttft_start_p95", "completion"}
        assert system["vs_floor"]["p50_over_floor_p50"] > 0
        # The systems' arithmetic (final prompt + invalidated KV) is what vLLM computed.
        assert s["prefilled"] == s["prefilled_vllm"], name
    one_shot = level["systems"]["one-shot"]["summary"]
    assert one_shot["prefilled"] == one_shot["prompt_tokens"]
    # Every system built the very same prompts.
    prompts = {name: sorted(q["prompt_tokens"] for q in system["queries"])
               for name, system in level["systems"].items()}
    assert len({tuple(p) for p in prompts.values()}) == 1
    if workload == "crawler":  # append only: nothing to invalidate
        assert all(s["summary"]["invalidated"] == 0 for s in level["systems"].values())
    else:
        assert level["systems"]["streamrag"]["summary"]["updates"] >= 4

    assert "QPS 8" in format_table(report)
    # The machine line says when the engine's graphs were compiled (`streamrag bench --compile`).
    assert report["meta"]["engine"]["enforce_eager"] and "graphs compiled" not in machine_text(report["meta"])
    compiled = {**report["meta"], "engine": {**report["meta"]["engine"], "enforce_eager": False}}
    assert "graphs compiled" in machine_text(compiled)
    for png in plot_report(report, tmp_path):
        assert png.stat().st_size > 10_000


async def test_a_held_prefill_share_scales_the_retrieval_times(engine, idle_blocks):
    trace = generate("crawler", queries=3, seed=5, scaling=TINY)
    result = await replay(engine, trace, qps_levels=[8.0], systems=("streamrag",), progress=False, prefill_share=0.5)
    report = build_report(result)
    assert report["meta"]["prefill_share_given"] == 0.5 and report["meta"]["time_scale"] > 0
    assert report["floor"]["summary"]["prefill_share_of_retrieval_p50"] == pytest.approx(0.5)
    scaled = {q.id: q.duration_s * report["meta"]["time_scale"] for q in trace.queries}
    assert result.durations_s == pytest.approx(scaled, rel=1e-3)  # the scale is recorded rounded
    assert report["levels"][0]["systems"]["streamrag"]["summary"]["finished"] == 3
    assert "prefill share held at 50%" in format_table(report)


async def test_replay_with_an_engine_per_system(engine, vllm_engine, idle_blocks):
    """The baselines on vLLM's order, streamrag on its own engine under "fcfs"; each pass reads
    the ledger of the engine it ran on, so every system's accounting matches vLLM's. The load
    is a fraction of the capacity the floor pass measured (issue 19)."""
    trace = generate("anns", queries=4, seed=4, scaling=TINY)
    engines = {"one-shot": vllm_engine, "vllm-stream": vllm_engine, "streamrag": engine}
    result = await replay(engines, trace, progress=False, load=[0.5])
    report = build_report(result)

    [level] = report["levels"]
    meta = report["meta"]
    # Capacity: one-shot throughput from the idle whole-prompt prefills of the floor pass.
    full = [q["full_prefill_s"] for q in report["floor"]["queries"]]
    assert meta["capacity_qps"] == pytest.approx(len(full) / sum(full), rel=1e-3)
    assert level["qps"] == pytest.approx(0.5 * meta["capacity_qps"], abs=1e-3)
    assert level["load"] == pytest.approx(0.5, abs=0.01) and meta["load_levels"] == [level["load"]]
    machine = meta["machine"]
    assert machine["cpu_model"] and machine["physical_cores"] >= 1 and isinstance(machine["isa"], list)
    # Both engines' processes, with the cores their threads may run on, read from /proc.
    assert len(machine["processes"]) >= 2 and all(p["threads"] > 0 and p["cores"] for p in machine["processes"])
    table = format_table(report)
    assert "machine: " in table and "50% of capacity" in table and "one-shot capacity" in table
    assert list(level["systems"]) == list(SYSTEMS)
    for name, system in level["systems"].items():
        s = system["summary"]
        assert s["queries"] == s["finished"] == 4, (name, [q["error"] for q in system["queries"]])
        assert system["leaked_blocks"] == 0
        assert s["prefilled"] == s["prefilled_vllm"] > 0, name
    assert level["systems"]["streamrag"]["summary"]["updates"] >= 4
    assert {name: e["policy"] for name, e in meta["engines"].items()} == {
        "one-shot": "vllm", "vllm-stream": "vllm", "streamrag": "fcfs"}
    assert meta["engine"]["policy"] == "vllm"  # the baseline's, which ran the floor pass
    assert "scheduling: one-shot, vllm-stream: policy vllm; streamrag: policy fcfs" in format_table(report)
    assert await vllm_engine.wait_for_blocks(0, timeout_s=10) == 0


async def test_replay_rejects_an_incomplete_mapping(engine):
    trace = generate("crawler", queries=1, seed=1, scaling=TINY)
    with pytest.raises(ValueError, match="no engine for streamrag"):
        await replay({"one-shot": engine, "vllm-stream": engine}, trace, qps_levels=[8.0], progress=False)
    with pytest.raises(ValueError, match="exactly one"):
        await replay(engine, trace, qps_levels=[8.0], load=[0.5], progress=False)
    with pytest.raises(ValueError, match="exactly one"):
        await replay(engine, trace, progress=False)


@pytest.mark.parametrize("argv, share", [
    (["--workload", "crawler", "--quick"], PREFILL_SHARE["crawler"]),
    (["--workload", "anns", "--load", "0.2", "0.6"], PREFILL_SHARE["anns"]),
    (["--workload", "crawler", "--quick", "--prefill-share", "0.2"], 0.2),
    (["--workload", "crawler", "--quick", "--trace-times"], None),
    (["--workload", "crawler", "--qps", "0.5"], None),  # an exact replay keeps the trace's times
    (["--workload", "crawler", "--trace", "mine.jsonl"], None),
    (["--workload", "crawler", "--quick", "--time-factor", "2"], None),  # times the user chose
    (["--workload", "crawler", "--qps", "0.5", "--prefill-share", "0.1"], 0.1),
])
def test_the_bench_holds_the_workloads_prefill_share_unless_told_otherwise(argv, share):
    """So that `streamrag bench --workload crawler --quick` means the same on a fast machine and a
    slow one: its trace's times follow the machine's prefill speed (eval/workloads.py)."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert held_share(parser.parse_args(["bench", *argv])) == share


def test_a_held_share_and_the_trace_times_are_refused_together(capsys):
    argv = ["bench", "--workload", "crawler", "--server", "http://127.0.0.1:9", "--prefill-share", "0.1",
            "--trace-times"]
    assert cli_main(argv) == 2
    error = capsys.readouterr().err
    assert "--prefill-share" in error and "--trace-times" in error


def test_generated_trace_has_the_papers_shape():
    for workload in ("crawler", "anns"):
        unscaled = generate(workload, 2000, seed=1, scaling=Scaling(1, 1, 10**9))
        shape = describe(unscaled)
        for key in ("chunks_mean", "gap_ms_median", "duration_s_mean", "tokens_p50"):
            ours, paper = shape[key]["trace"], shape[key]["paper"]
            assert abs(ours - paper) / paper < 0.1, (workload, key, ours, paper)


def test_trace_round_trip_and_arrivals(tmp_path):
    trace = generate("anns", 20, seed=5)
    write_trace(trace, tmp_path / "t.jsonl")
    back = read_trace(tmp_path / "t.jsonl")
    assert back == trace
    slow, fast = trace.with_poisson_arrivals(0.5, 9), trace.with_poisson_arrivals(2.0, 9)
    # The same draws at two rates: one schedule is the other, scaled.
    for a, b in zip(slow.queries[1:], fast.queries[1:]):
        assert a.arrival_s == pytest.approx(4 * b.arrival_s)
    assert all(e.op == "update" for q in trace.queries for e in q.events)


async def test_replay_over_http_finishes_every_query(app_server, engine, idle_blocks):
    """`streamrag bench --server URL`: the same replay through a server's HTTP API, every system,
    the last event's chunks sent with `last=True` (issue 13: every query used to fail there)."""
    from integrations.http_client import StreamRAGClient

    trace = generate("crawler", queries=3, seed=4, scaling=TINY)
    async with StreamRAGClient(app_server, timeout_s=None, model="tiny") as client:
        result = await replay(client, trace, qps_levels=[8.0], progress=False)
    report = build_report(result)
    [level] = report["levels"]
    for name, system in level["systems"].items():
        assert system["summary"]["finished"] == 3, (name, [q["error"] for q in system["queries"]])
    assert report["meta"]["engine"]["server"] == app_server
    assert await engine.wait_for_blocks(0) == 0
