"""The quality bench's records as a summary per (mode, setting), a Pareto front, a table, JSON and a plot.

Settings of one mode that gave the same answer to every question saw the same context (a
deadline that never fired and the gate "done", say): one behaviour, measured several times.
They make one point, with their TTFTs pooled, since what separates their P50s is measurement
noise. A point is on the front when no other is both faster (TTFT P50 from the request) and at
least as good (mean ROUGE-L against the whole-context answer of the endpoint's default mode),
or as fast and better. The knee is the front's point whose share of the front's quality range
exceeds its slowdown over the fastest point by the most (slowdown as a fraction of the
fastest TTFT): where waiting longer stops buying agreement. A point 10% slower than the
fastest must buy more than 10% of the range to be worth it.
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
from eval.report import machine_text  # noqa: E402


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return mean(values) if values else None


def _figures(group: list[QualityRecord]) -> dict:
    answerable = [r for r in group if r.evidence_at_gate is not None]
    ttft = [r.ttft_ms for r in group if r.ttft_ms is not None]
    return {
        "answers": len(group), "finished": sum(r.finished for r in group),
        "ttft_p50_ms": percentile(ttft, 50), "ttft_p95_ms": percentile(ttft, 95),
        "ttft_after_context_p50_ms": percentile([r.ttft_after_context_ms for r in group
                                                 if r.ttft_after_context_ms is not None], 50),
        "evidence_recall": _mean(float(r.evidence_at_gate) for r in answerable),
        "rouge_full": _mean(r.rouge_full for r in group),
        "rouge_reference": _mean(r.rouge_reference for r in answerable),
    }


def _groups(records: list[QualityRecord]) -> dict[tuple[str, str], list[QualityRecord]]:
    groups: dict[tuple[str, str], list[QualityRecord]] = {}
    for r in records:
        groups.setdefault((r.mode, r.setting), []).append(r)
    return groups


def summarize(records: list[QualityRecord]) -> list[dict]:
    """One row per (mode, setting), in the order the records first name them."""
    return [{"mode": mode, "setting": setting, **_figures(group)}
            for (mode, setting), group in _groups(records).items()]


def points(records: list[QualityRecord]) -> list[dict]:
    """The settings of each mode grouped by the answers they gave (see the module docstring),
    each group's figures over all its records."""
    merged: list[tuple[str, dict, list[str], list[QualityRecord]]] = []
    for (mode, setting), group in _groups(records).items():
        answers = {r.question: (r.finished, r.answer) for r in group}
        same = next((m for m in merged if m[0] == mode and m[1] == answers), None)
        if same is None:
            merged.append((mode, answers, [setting], list(group)))
        else:
            same[2].append(setting)
            same[3].extend(group)
    return [{"mode": mode, "settings": settings, **_figures(group)} for mode, _, settings, group in merged]


def pareto(candidates: list[dict]) -> tuple[list[dict], dict | None]:
    """The front (fastest first) and its knee, over points with both figures."""
    pts = [p for p in candidates if p["ttft_p50_ms"] is not None and p["rouge_full"] is not None]

    def dominated(p: dict) -> bool:
        return any(o["ttft_p50_ms"] <= p["ttft_p50_ms"] and o["rouge_full"] >= p["rouge_full"]
                   and (o["ttft_p50_ms"] < p["ttft_p50_ms"] or o["rouge_full"] > p["rouge_full"]) for o in pts)

    front = sorted((p for p in pts if not dominated(p)), key=lambda p: p["ttft_p50_ms"])
    if not front:
        return [], None
    fastest = front[0]["ttft_p50_ms"]
    y0, y1 = min(p["rouge_full"] for p in front), max(p["rouge_full"] for p in front)

    def gain(p: dict) -> float:
        slowdown = (p["ttft_p50_ms"] - fastest) / fastest if fastest > 0 else 0.0
        share = (p["rouge_full"] - y0) / (y1 - y0) if y1 > y0 else 1.0
        return share - slowdown

    return front, max(front, key=gain)  # max keeps the first (fastest) of equal gains


def build_report(records: list[QualityRecord], meta: dict) -> dict:
    rows, pts = summarize(records), points(records)
    front, knee = pareto(pts)
    for p in pts:
        p["on_front"] = p in front
        p["knee"] = p is knee
    for row in rows:  # a setting is where its point is
        point = next(p for p in pts if p["mode"] == row["mode"] and row["setting"] in p["settings"])
        row["on_front"], row["knee"] = point["on_front"], point["knee"]
    return {"meta": meta, "settings": rows, "points": pts,
            "knee": None if knee is None else {"mode": knee["mode"], "settings": knee["settings"]},
            "records": [asdict(r) for r in records]}


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mark(row: dict) -> str:
    return "knee" if row["knee"] else ("*" if row["on_front"] else "")


def format_table(report: dict) -> str:
    meta = report["meta"]
    machine = meta.get("machine") or {}
    where = machine_text({"machine": machine, "engine": {"busy_poll": machine.get("busy_poll")}}) if machine else ""
    lines = [where + (f" (resumed on another: {machine_text({'machine': meta['resumed_on']})})"
                      if meta.get("resumed_on") else "")] if where else []
    lines += [f"{'mode':<7} {'setting':<17} {'done':>6} {'TTFT P50':>9} {'P95':>7} {'after ctx':>9} "
             f"{'evidence':>8} {'ROUGE-L full':>12} {'ROUGE-L ref':>11}  front"]
    for r in report["settings"]:
        lines.append(f"{r['mode']:<7} {r['setting']:<17} {r['finished']:>3}/{r['answers']:<2} "
                     f"{_fmt(r['ttft_p50_ms']):>9} {_fmt(r['ttft_p95_ms']):>7} {_fmt(r['ttft_after_context_p50_ms']):>9} "
                     f"{_fmt(r['evidence_recall'], 2):>8} {_fmt(r['rouge_full'], 3):>12} "
                     f"{_fmt(r['rouge_reference'], 3):>11}  {_mark(r)}")
    lines.append("TTFT in ms from the request (P50, P95) and from the last context event (P50); evidence: share "
                 "of answerable questions whose evidence the answer saw; ROUGE-L F1 against the whole-context "
                 "answer and the reference answer.")
    lines.append("\npoints (a mode's settings that gave the same answer to every question, TTFT pooled):")
    for p in report["points"]:
        lines.append(f"  {p['mode']:<7} {_fmt(p['ttft_p50_ms']):>6} ms  ROUGE-L full {_fmt(p['rouge_full'], 3)}  "
                     f"{_mark(p):<4}  {' / '.join(p['settings'])}")
    return "\n".join(lines)


def write_report(report: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "quality.json"
    path.write_text(json.dumps(report, indent=2))
    return path, plot(report, out_dir / "quality.png")


def plot(report: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 5))
    markers = {"update": "o", "append": "s"}
    for r in report["settings"]:  # one small dot per setting
        if r["ttft_p50_ms"] is not None and r["rouge_full"] is not None:
            ax.scatter(r["ttft_p50_ms"], r["rouge_full"], marker=markers.get(r["mode"], "o"), color="tab:gray", s=12)
    stacked: dict[float, int] = {}  # labels of points at one quality level go one above the other
    for p in report["points"]:  # the pooled points, labelled with their settings
        if p["ttft_p50_ms"] is None or p["rouge_full"] is None:
            continue
        level = round(p["rouge_full"], 1)
        row = stacked[level] = stacked.get(level, -1) + 1
        ax.scatter(p["ttft_p50_ms"], p["rouge_full"], marker=markers.get(p["mode"], "o"), facecolors="none",
                   edgecolors="tab:blue" if p["on_front"] else "tab:gray", s=90 if p["knee"] else 45)
        alike = f" +{len(p['settings']) - 1} alike" if len(p["settings"]) > 1 else ""  # the table names them
        ax.annotate(f"{p['mode']}: {p['settings'][0]}{alike}" + (" (knee)" if p["knee"] else ""),
                    (p["ttft_p50_ms"], p["rouge_full"]), fontsize=7, xytext=(4, 3 + 10 * row),
                    textcoords="offset points")
    front = sorted((p for p in report["points"] if p["on_front"]), key=lambda p: p["ttft_p50_ms"])
    ax.plot([p["ttft_p50_ms"] for p in front], [p["rouge_full"] for p in front], color="tab:blue", lw=1,
            label="Pareto front")
    ax.margins(x=0.25)  # room for the labels right of the points
    ax.set_xlabel("TTFT P50 from the request (ms)")
    ax.set_ylabel("ROUGE-L F1 against the whole-context answer")
    ax.set_title(f"gate settings: {report['meta'].get('model', '')}, {report['meta'].get('questions', '')} questions")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
