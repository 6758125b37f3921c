"""A replay's results as JSON (everything, per query) and as the printed table.

The JSON holds the run's metadata, the floor pass, and per load level and system: the
summary (`metrics.summarize`), ratios against one-shot, the distance to the floor, and every
query's record. Plots and the printed table are made from this JSON alone, so they can be
redrawn from a saved file.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from eval.metrics import QueryResult, floor_ratios, percentile, ratios, summarize
from eval.replay import BenchResult
from eval.systems import BASELINE


def build_report(result: BenchResult) -> dict:
    floors = {r.query: r for r in result.floor}
    shares = [result.full_prefill_s[q] / d for q, d in result.durations_s.items()
              if q in result.full_prefill_s and d > 0]
    floor_summary = summarize(list(result.floor))
    floor_summary["full_prefill_p50_s"] = percentile(list(result.full_prefill_s.values()), 50)
    floor_summary["prefill_share_of_retrieval_p50"] = percentile(shares, 50)
    floor_summary["prefill_share_of_retrieval_mean"] = sum(shares) / len(shares) if shares else None
    # The best ratio an idle engine allows: whole-prompt prefill / floor, per query.
    idle = [result.full_prefill_s[r.query] / r.ttft_last_s for r in result.floor
            if r.finished and r.ttft_last_s > 0 and r.query in result.full_prefill_s]
    floor_summary["idle_one_shot_over_floor_p50"] = percentile(idle, 50)
    floor_summary["idle_one_shot_p50_over_floor_p50"] = _div(
        floor_summary["full_prefill_p50_s"], floor_summary["ttft_last_p50_s"])
    floor_summary["floor_fit"] = _line_fit([(r.tail_tokens, r.ttft_last_s) for r in result.floor if r.finished])
    levels = []
    capacity = result.meta.get("capacity_qps")
    for qps in result.meta["qps_levels"]:
        passes = [p for p in result.passes if p.qps == qps]
        summaries = {p.system: summarize(list(p.results), p.completion_s, p.prefilled_vllm) for p in passes}
        base = summaries.get(BASELINE)
        systems = {}
        for p in passes:
            systems[p.system] = {
                "summary": summaries[p.system],
                "vs_one_shot": ratios(base, summaries[p.system]) if base else None,
                "vs_floor": floor_ratios(list(p.results), floors),
                "leaked_blocks": p.leaked_blocks,
                # Other jobs' CPU use during the pass: a high share makes its numbers suspect.
                "cpu": asdict(p.cpu), "waited_s": p.waited_s, "attempts": p.attempts,
                "queries": [_record(r) for r in p.results],
            }
        levels.append({"qps": qps, "load": round(qps / capacity, 3) if capacity else None, "systems": systems})
    return {
        "meta": result.meta,
        "floor": {"summary": floor_summary, "cpu": asdict(result.floor_cpu),
                  "queries": [{**_record(r), "full_prefill_s": result.full_prefill_s.get(r.query),
                               "duration_s": result.durations_s.get(r.query)} for r in result.floor]},
        "levels": levels,
    }


def _line_fit(points: list[tuple[float, float]]) -> dict | None:
    """Least squares floor_s = fixed_s + per_token_s * tail_tokens: the fixed cost of a step."""
    if len(points) < 2:
        return None
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return {"fixed_s": my - slope * mx, "per_token_s": slope}


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _record(r: QueryResult) -> dict:
    out = asdict(r)
    if r.finished:
        out["ttft_last_s"], out["ttft_start_s"] = r.ttft_last_s, r.ttft_start_s
    return out


def write_report(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    return path


def format_table(report: dict) -> str:
    """Per load level: TTFT percentiles with ratios against one-shot, completion, tokens."""
    meta, fl = report["meta"], report["floor"]["summary"]
    trace = meta["trace"]
    engine = meta["engine"]
    held = (f" x{meta['time_scale']:.3g} (prefill share held at {_pct(meta['prefill_share_given'])})"
            if meta.get("prefill_share_given") else "")
    lines = [
        f"{trace.get('workload')}: {len(report['floor']['queries'])} queries, model "
        f"{engine.get('model')}, tokens /{trace.get('size_factor')}, time x{trace.get('time_factor')}{held}, "
        f"{meta['machine']['cpus']} CPUs",
        machine_text(meta),
        f"floor TTFT P50 {_ms(fl['ttft_last_p50_s'])} P95 {_ms(fl['ttft_last_p95_s'])}; "
        f"whole-prompt prefill P50 {_ms(fl['full_prefill_p50_s'])} "
        f"= {_pct(fl['prefill_share_of_retrieval_p50'])} of retrieval time (P50); "
        f"idle one-shot / floor P50 {_x(fl['idle_one_shot_over_floor_p50'])}; "
        f"other jobs used {_pct(report['floor']['cpu']['others'])} of the CPU meanwhile",
        _policies(meta),
        "(others: CPU share other jobs on the machine used during the pass)",
    ]
    head = (f"{'system':<12}| {'TTFT from last event, ms':^26}| {'x one-shot':^17}| "
            f"{'TTFT from start, ms':^26}| {'x one-shot':^17}| {'done, s':>8} {'x':>5} | "
            f"{'prefilled':>9} {'vLLM':>7} {'reused':>7} {'recomp':>7} {'invalid':>7} | {'P50/floor':>9} | "
            f"{'others':>6}")
    for level in report["levels"]:
        load = level.get("load")
        lines += ["", f"QPS {level['qps']:g}" + (f" ({_pct(load)} of capacity)" if load else ""),
                  head, "-" * len(head)]
        for name, system in level["systems"].items():
            s, r, f = system["summary"], system["vs_one_shot"] or {}, system["vs_floor"]
            lines.append(
                f"{name:<12}| " + " ".join(f"{_ms(s[f'ttft_last_p{p}_s']):>8}" for p in (50, 95, 99))
                + " | " + " ".join(f"{_x(r.get(f'ttft_last_p{p}')):>5}" for p in (50, 95, 99))
                + " | " + " ".join(f"{_ms(s[f'ttft_start_p{p}_s']):>8}" for p in (50, 95, 99))
                + " | " + " ".join(f"{_x(r.get(f'ttft_start_p{p}')):>5}" for p in (50, 95, 99))
                + f" | {_num(s['completion_s'], 1):>8} {_num(r.get('completion'), 3):>5} | "
                f"{s['prefilled']:>9} {_num(s['prefilled_vllm'], 0):>7} {s['reused']:>7} "
                f"{s['recomputed']:>7} {s['invalidated']:>7} | {_x(f['p50_over_floor_p50']):>9} | "
                f"{_pct(system['cpu']['others']):>6}"
                + ("" if s["finished"] == s["queries"] else f"  ({s['queries'] - s['finished']} FAILED)")
            )
    return "\n".join(lines)


def machine_text(meta: dict) -> str:
    """The machine line of a report: CPU, ISA, cores, where the engines ran, the capacity."""
    m = meta["machine"]
    engines = "; ".join(f"{p['name']} {p['threads']} threads on cores "
                        + ", ".join(f"{cores} ({n})" for cores, n in p["cores"].items())
                        for p in m.get("processes", []))
    capacity = meta.get("capacity_qps")
    return (f"machine: {m.get('cpu_model', m.get('processor'))}, {'/'.join(m.get('isa', [])) or 'no AVX2'}, "
            f"{m.get('physical_cores') or m.get('cpus')} cores"
            + (f" held to {m['cpu_quota']:g} of a core per process" if m.get("cpu_quota") else "")
            + f"; {engines or 'engines: -'}"
            + (f"; one-shot capacity {capacity:.2f} QPS" if capacity else "")
            + {True: "; vLLM's queue readers spin", False: "; vLLM's queue readers sleep"}.get(
                meta.get("engine", {}).get("busy_poll"), "")
            + {False: "; graphs compiled"}.get(meta.get("engine", {}).get("enforce_eager"), ""))


def _policies(meta: dict) -> str:
    """Which scheduling policy each system ran with, e.g. "scheduling: one-shot, vllm-stream:
    policy vllm; streamrag: policy fcfs". Older reports: meta["engine"] for every system."""
    engines = meta.get("engines") or {system: meta["engine"] for system in meta["systems"]}
    groups: list[tuple[dict, list[str]]] = []
    for system, config in engines.items():
        group = next((g for g in groups if g[0] == config), None)
        if group is None:
            groups.append((config, [system]))
        else:
            group[1].append(system)

    def describe(config: dict) -> str:
        return f"policy {config['policy']}" if "policy" in config else f"server {config.get('server')}"

    return "scheduling: " + "; ".join(
        f"{', '.join(systems)}: {describe(config)}" for config, systems in groups)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"
