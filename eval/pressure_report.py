"""A memory-pressure run (eval/pressure.py) as JSON, as the printed table, and as a CDF plot.

Starved queries (no first token within the timeout after their last chunk) count at the
timeout: a percentile that reaches into them is a lower bound, printed ">=", and so is a ratio
of the baseline's lower bound to an exact value; a ratio against a config's own lower bound is
unknown ("?"). Ratios are vllm / config (> 1: the config is faster), the paper's convention.
The table and the plot are made from the JSON alone, so they can be redrawn from a saved file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from eval.machine import CpuShare
from eval.metrics import QueryResult, percentile
from eval.trace import Trace

BASELINE = "vllm"  # vLLM's own order: the baseline of every ratio
PCTS = (50, 95, 99)


@dataclass(frozen=True)
class PressureRun:
    """One configuration over the whole trace."""

    name: str
    results: tuple[QueryResult, ...]  # starved ones: finished=False, error starting "starved"
    completion_s: float  # first arrival -> every query finished or given up on
    preemptions: dict  # engine.preemption_stats() over the pass
    computed_vllm: int | None  # prompt tokens vLLM scheduled in the pass (its own ledger)
    stalled_s: float  # no scheduler step for >= 1 s while some query waited for its first token
    kv_full_share: float  # share of the pass with >= 95% of the KV blocks in use
    leaked_blocks: int
    cpu: CpuShare
    waited_s: float = 0.0
    startup_s: float | None = None


def starved(r: QueryResult) -> bool:
    return not r.finished and (r.error or "").startswith("starved")


def summarize(run: PressureRun, timeout_s: float, durations: dict[str, float]) -> dict:
    done = [r for r in run.results if r.finished]
    hungry = [r for r in run.results if starved(r)]
    out = {"queries": len(run.results), "finished": len(done), "starved": len(hungry),
           "failed": len(run.results) - len(done) - len(hungry), "lower_bound": {}}
    for key in ("ttft_last", "ttft_start"):
        pairs = sorted([(getattr(r, f"{key}_s"), False) for r in done]
                       + [(timeout_s + (durations[r.query] if key == "ttft_start" else 0), True) for r in hungry])
        for p in (*PCTS, 100):
            name = f"{key}_{'max' if p == 100 else f'p{p}'}"
            out[f"{name}_s"], out["lower_bound"][name] = censored_percentile(pairs, p)
    out.update(completion_s=round(run.completion_s, 2), prefilled=sum(r.prefilled for r in done),
               prompt_tokens=sum(r.prompt_tokens for r in done))
    return out


def censored_percentile(pairs: list[tuple[float, bool]], p: float) -> tuple[float | None, bool]:
    """Percentile of sorted (value, censored) pairs, and whether it is only a lower bound: a
    censored value at or below it may really lie above it and push it up."""
    if not pairs:
        return None, False
    k = (len(pairs) - 1) * p / 100
    hi = min(len(pairs) - 1, int(k) + (k > int(k)))
    return percentile([v for v, _ in pairs], p), any(c for _, c in pairs[: hi + 1])


def vs_baseline(base: dict, s: dict) -> dict:
    """baseline / config per percentile, as [ratio, ">=" (a lower bound) | "?" | "="]."""
    out = {}
    for key in ("ttft_last", "ttft_start"):
        for p in PCTS:
            name = f"{key}_p{p}"
            b, v = base[f"{name}_s"], s[f"{name}_s"]
            kind = "?" if s["lower_bound"][name] else ">=" if base["lower_bound"][name] else "="
            out[name] = [None if not b or not v else round(b / v, 2), kind]
    return out


def build_report(runs: list[PressureRun], trace: Trace, timeout_s: float, meta: dict) -> dict:
    durations = {q.id: q.duration_s for q in trace.queries}
    summaries = {r.name: summarize(r, timeout_s, durations) for r in runs}
    base = summaries.get(BASELINE)
    configs = []
    for r in runs:
        s = summaries[r.name]
        configs.append({
            "name": r.name, "summary": s, "vs_vllm": vs_baseline(base, s) if base else None,
            # What vLLM computed beyond the finished sessions' own arithmetic: recompute after
            # preemption, plus whatever starved sessions computed before they were given up on.
            "extra_tokens": None if r.computed_vllm is None else r.computed_vllm - s["prefilled"],
            **{k: v for k, v in asdict(r).items() if k not in ("name", "results")},
            "queries": [{**asdict(q), "duration_s": durations[q.query],
                         **({"ttft_last_s": q.ttft_last_s, "ttft_start_s": q.ttft_start_s} if q.finished else {})}
                        for q in r.results],
        })
    return {"meta": {**meta, "trace": trace.meta, "timeout_s": timeout_s}, "configs": configs}


def format_table(report: dict) -> str:
    m, t = report["meta"], report["meta"]["trace"]
    load = f" ({m['load']:.0%} of a capacity of {m['capacity_qps']:g})" if m.get("capacity_qps") else ""
    lines = [f"{t['workload']}: {t['queries']} queries at {t['qps']:g} QPS{load}, gaps x{t['stretch']:g}, "
             f"tokens /{t['size_factor']:g}, times x{t['time_factor']:g}; KV {m['kv_blocks']} blocks x "
             f"{m['block_size']} tokens; model {m['model']}; timeout {m['timeout_s']:g} s; {m['cpus']} CPUs",
             "starved: no first token within the timeout (counted at it: '>=' marks lower bounds)"]
    head = (f"{'config':<13}|{'fin':>4}{'starv':>6} | {'TTFT from last chunk, ms: P50 P95 P99 max':^42}| "
            f"{'x vllm P50 P95 P99':^22}| {'from start, ms: P50 P95 P99':^30}| {'done s':>6} | "
            f"{'preempt':>7} {'dropped':>8} {'extra':>7} {'resumed':>7} | {'stall s':>7} {'KVfull':>6} {'others':>6}")
    lines += [head, "-" * len(head)]
    for c in report["configs"]:
        s, lb, r = c["summary"], c["summary"]["lower_bound"], c["vs_vllm"] or {}
        ms = lambda k: "-" if s[f"{k}_s"] is None else f"{'>=' * lb[k]}{s[f'{k}_s'] * 1000:.0f}"  # noqa: E731
        lines.append(
            f"{c['name']:<13}|{s['finished']:>4}{s['starved']:>6} | "
            + " ".join(f"{ms(f'ttft_last_{p}'):>9}" for p in ("p50", "p95", "p99", "max"))
            + " | " + " ".join(f"{_ratio(r.get(f'ttft_last_p{p}')):>6}" for p in PCTS)
            + " | " + " ".join(f"{ms(f'ttft_start_p{p}'):>9}" for p in PCTS)
            + f" | {s['completion_s']:>6.1f} | {sum(c['preemptions']['by_mode'].values()):>7} "
            f"{c['preemptions']['tokens_dropped']:>8} {_n(c['extra_tokens']):>7} {c['preemptions']['resumed']:>7} | "
            f"{c['stalled_s']:>7.1f} {c['kv_full_share'] * 100:>5.0f}% {c['cpu']['others'] * 100:>5.0f}%"
            + (f"  ({s['failed']} FAILED)" if s["failed"] else ""))
    return "\n".join(lines)


def _ratio(value) -> str:
    if not value or value[0] is None:
        return "-"
    ratio, kind = value
    return "?" if kind == "?" else f"{'>=' if kind == '>=' else ''}{ratio:.1f}"


def _n(value) -> str:
    return "-" if value is None else str(value)


def plot(report: dict, path: str | Path) -> Path:
    """TTFT CDFs per configuration (from the last chunk, from the query's start); starved
    queries sit at the timeout, past the dotted line."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a server
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    colors = {"vllm": "black", "fcfs": "tab:blue", "lcas": "tab:green", "mcps": "tab:red"}
    m, t = report["meta"], report["meta"]["trace"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    for ax, key in zip(axes, ("ttft_last_s", "ttft_start_s")):
        for c in report["configs"]:
            xs = sorted(q.get(key, m["timeout_s"] + (q["duration_s"] if key == "ttft_start_s" else 0))
                        for q in c["queries"] if q["finished"] or (q["error"] or "").startswith("starved"))
            if xs:
                ax.step([xs[0]] + xs, [0] + [(i + 1) / len(xs) for i in range(len(xs))], where="post",
                        color=colors[c["name"].split("+")[0]], label=c["name"],
                        linestyle="-" if "+preempt" in c["name"] or c["name"] == "vllm" else "--")
        if key == "ttft_last_s":
            ax.axvline(m["timeout_s"], color="gray", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylim(0, 1.02)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel("TTFT from the last chunk (s)" if key == "ttft_last_s" else "TTFT from the query's start (s)")
        ax.set_ylabel("fraction of queries")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{t['workload']}-shaped, {t['queries']} queries at {t['qps']:g} QPS, chunk gaps x{t['stretch']:g}, "
                 f"KV {m['kv_blocks']} x {m['block_size']} tokens, model {m['model']}, {m['cpus']} CPU cores; "
                 f"dashed: no idle preemption", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
