"""PNG plots of a replay report (the JSON of eval/report.py), made with matplotlib.

  <workload>-ttft-cdf.png   one column per QPS level; top row TTFT from the last event, bottom
                            row TTFT from the query's start; one CDF per system, the floor dashed;
  <workload>-ratios.png     one-shot TTFT / system TTFT at P50, P95 and P99 per QPS level and
                            streaming system (> 1 is faster), with the targets drawn as lines.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

from eval.systems import BASELINE  # noqa: E402

COLORS = {"one-shot": "tab:gray", "vllm-stream": "tab:orange", "streamrag": "tab:blue", "floor": "black"}
# The targets docs/benchmarks.md states (P50 and P95 ratios against one-shot).
TARGETS = {"crawler": {"P50": 8.0}, "anns": {"P50": 1.5, "P95": 2.0}}


def plot_report(report: dict, out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = report["meta"]["trace"].get("workload", "trace")
    return [_cdfs(report, out_dir / f"{name}-ttft-cdf.png"), _ratios(report, out_dir / f"{name}-ratios.png")]


def _cdfs(report: dict, path: Path) -> Path:
    levels = report["levels"]
    fig, axes = plt.subplots(2, len(levels), figsize=(4.2 * len(levels), 7), squeeze=False)
    floor = [q["ttft_last_s"] for q in report["floor"]["queries"] if q["finished"]]
    for col, level in enumerate(levels):
        for row, key in enumerate(("ttft_last_s", "ttft_start_s")):
            ax = axes[row][col]
            for system, data in level["systems"].items():
                values = [q[key] for q in data["queries"] if q["finished"]]
                _cdf(ax, values, system, COLORS.get(system), "-")
            if key == "ttft_last_s":
                _cdf(ax, floor, "floor", COLORS["floor"], "--")
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.set_ylim(0, 1.02)
            ax.grid(True, which="both", alpha=0.3)
            ax.set_xlabel("TTFT from last event (s)" if row == 0 else "TTFT from query start (s)")
            if col == 0:
                ax.set_ylabel("fraction of queries")
            if row == 0:
                ax.set_title(_level_name(level))
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.suptitle(_caption(report), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _cdf(ax, values: list[float], label: str, color: str | None, style: str) -> None:
    if not values:
        return
    xs = sorted(values)
    ys = [(i + 1) / len(xs) for i in range(len(xs))]
    ax.step([xs[0]] + xs, [0.0] + ys, where="post", label=label, color=color, linestyle=style)


def _ratios(report: dict, path: Path) -> Path:
    levels = report["levels"]
    systems = [s for s in levels[0]["systems"] if s != BASELINE]
    bars = [(s, p) for s in systems for p in (50, 95, 99)]
    width = 0.8 / max(1, len(bars))
    fig, ax = plt.subplots(figsize=(3.5 + 1.8 * len(levels), 4.5))
    for i, (system, p) in enumerate(bars):
        xs = [j + (i - (len(bars) - 1) / 2) * width for j in range(len(levels))]
        ys = [(lv["systems"][system]["vs_one_shot"] or {}).get(f"ttft_last_p{p}") or 0 for lv in levels]
        ax.bar(xs, ys, width, color=COLORS.get(system), alpha={50: 1.0, 95: 0.65, 99: 0.35}[p],
               label=f"{system} P{p}", edgecolor="black", linewidth=0.4)
    workload = report["meta"]["trace"].get("workload")
    for label, value in TARGETS.get(workload, {}).items():
        ax.axhline(value, color="tab:red", linestyle=":", linewidth=1)
        ax.text(-0.45, value, f"target {label} {value:g}x", color="tab:red", fontsize=7, va="bottom")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(levels)), [_level_name(lv) for lv in levels])
    ax.set_ylabel("one-shot TTFT / system TTFT (from last event)")
    ax.set_xlim(-0.5, len(levels) - 0.5)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(_caption(report), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _caption(report: dict) -> str:
    trace, engine = report["meta"]["trace"], report["meta"]["engine"]
    return (f"{trace.get('workload')}-shaped, {len(report['floor']['queries'])} queries, "
            f"tokens /{trace.get('size_factor'):g}, time x{trace.get('time_factor'):g}; "
            f"{engine.get('model')} on {report['meta']['machine']['cpus']} CPU cores")


def _level_name(level: dict) -> str:
    load = level.get("load")
    return f"{level['qps']:g} QPS" + (f" ({load * 100:.0f}% cap.)" if load else "")
