"""The quality bench's records as a summary per (mode, setting), a Pareto front, a table, JSON and a plot.

A setting is on the front when no other is both faster (TTFT P50 from the request) and at least
as good (mean ROUGE-L against the whole-context answer of the endpoint's default mode), or as
fast and better. The knee is the
front's point with the largest quality gained minus time spent, each scaled to the front's own
range: where waiting longer stops buying agreement.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from statistics import mean

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402

from eval.metrics import percentile  # noqa: E402
from eval.quality import QualityRecord  # noqa: E402


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return mean(values) if values else None


def summarize(records: list[QualityRecord]) -> list[dict]:
    rows = []
    for key in dict.fromkeys((r.mode, r.setting) for r in records):
        group = [r for r in records if (r.mode, r.setting) == key]
        answerable = [r for r in group if r.evidence_at_gate is not None]
        ttft = [r.ttft_ms for r in group if r.ttft_ms is not None]
        rows.append({
            "mode": key[0], "setting": key[1], "answers": len(group), "finished": sum(r.finished for r in group),
            "ttft_p50_ms": percentile(ttft, 50), "ttft_p95_ms": percentile(ttft, 95),
            "ttft_after_context_p50_ms": percentile([r.ttft_after_context_ms for r in group
                                                     if r.ttft_after_context_ms is not None], 50),
            "evidence_recall": _mean(float(r.evidence_at_gate) for r in answerable),
            "rouge_full": _mean(r.rouge_full for r in group),
            "rouge_reference": _mean(r.rouge_reference for r in answerable),
        })
    return rows


def pareto(rows: list[dict]) -> tuple[list[dict], dict | None]:
    """The front (fastest first) and its knee, over rows with both figures."""
    points = [r for r in rows if r["ttft_p50_ms"] is not None and r["rouge_full"] is not None]

    def dominated(r: dict) -> bool:
        return any(o["ttft_p50_ms"] <= r["ttft_p50_ms"] and o["rouge_full"] >= r["rouge_full"]
                   and (o["ttft_p50_ms"] < r["ttft_p50_ms"] or o["rouge_full"] > r["rouge_full"]) for o in points)

    front = sorted((r for r in points if not dominated(r)), key=lambda r: r["ttft_p50_ms"])
    if not front:
        return [], None
    x0, x1 = front[0]["ttft_p50_ms"], front[-1]["ttft_p50_ms"]
    y0, y1 = min(r["rouge_full"] for r in front), max(r["rouge_full"] for r in front)

    def gain(r: dict) -> float:
        x = (r["ttft_p50_ms"] - x0) / (x1 - x0) if x1 > x0 else 0.0
        y = (r["rouge_full"] - y0) / (y1 - y0) if y1 > y0 else 1.0
        return y - x

    return front, max(front, key=gain)  # max keeps the first (fastest) of equal gains


def build_report(records: list[QualityRecord], meta: dict) -> dict:
    rows = summarize(records)
    front, knee = pareto(rows)
    for row in rows:
        row["on_front"] = row in front
        row["knee"] = row is knee
    return {"meta": meta, "settings": rows, "knee": None if knee is None else {k: knee[k] for k in ("mode", "setting")},
            "records": [asdict(r) for r in records]}


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(report: dict) -> str:
    lines = [f"{'mode':<7} {'setting':<17} {'done':>6} {'TTFT P50':>9} {'P95':>7} {'after ctx':>9} "
             f"{'evidence':>8} {'ROUGE-L full':>12} {'ROUGE-L ref':>11}  front"]
    for r in report["settings"]:
        mark = "knee" if r["knee"] else ("*" if r["on_front"] else "")
        lines.append(f"{r['mode']:<7} {r['setting']:<17} {r['finished']:>3}/{r['answers']:<2} "
                     f"{_fmt(r['ttft_p50_ms']):>9} {_fmt(r['ttft_p95_ms']):>7} {_fmt(r['ttft_after_context_p50_ms']):>9} "
                     f"{_fmt(r['evidence_recall'], 2):>8} {_fmt(r['rouge_full'], 3):>12} "
                     f"{_fmt(r['rouge_reference'], 3):>11}  {mark}")
    lines.append("TTFT in ms from the request (P50, P95) and from the last context event (P50); evidence: share "
                 "of answerable questions whose evidence the answer saw; ROUGE-L F1 against the whole-context "
                 "answer and the reference answer.")
    return "\n".join(lines)


def write_report(report: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "quality.json"
    path.write_text(json.dumps(report, indent=2))
    return path, plot(report, out_dir / "quality.png")


def plot(report: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 5))
    markers = {"update": "o", "append": "s"}
    for r in report["settings"]:
        if r["ttft_p50_ms"] is None or r["rouge_full"] is None:
            continue
        ax.scatter(r["ttft_p50_ms"], r["rouge_full"], marker=markers.get(r["mode"], "o"),
                   color="tab:blue" if r["on_front"] else "tab:gray", s=60 if r["knee"] else 30)
        ax.annotate(f"{r['mode']}: {r['setting']}" + (" (knee)" if r["knee"] else ""),
                    (r["ttft_p50_ms"], r["rouge_full"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    front = [r for r in report["settings"] if r["on_front"]]
    front.sort(key=lambda r: r["ttft_p50_ms"])
    ax.plot([r["ttft_p50_ms"] for r in front], [r["rouge_full"] for r in front], color="tab:blue", lw=1,
            label="Pareto front")
    ax.set_xlabel("TTFT P50 from the request (ms)")
    ax.set_ylabel("ROUGE-L F1 against the whole-context answer")
    ax.set_title(f"gate settings: {report['meta'].get('model', '')}, {report['meta'].get('questions', '')} questions")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
