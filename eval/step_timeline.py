"""What the engine computed between each query's last event and its first token.

    python -m eval.step_timeline [--queries 30] [--load 0.4] [--prefill-share 0.07] [--serial-finals off] [--worst 8]

Replays the crawler trace for streamrag alone, as `streamrag bench` does (same trace, the load
set from the measured one-shot capacity, the prefill share held), on an engine that records its
steps. Then, from the scheduler ledger's step records (each with the time it was scheduled, on
the clock the replay's timestamps use), it lists for every query the steps from its last event
to its first token: the tokens of its own request, those of other sessions, and which of them
were complete contexts. It prints the queries that waited longest beyond their floor, and
writes <out>/timeline.json. This is how a TTFT over the floor is traced to what the engine was
busy with: another answer's long tail, partial pieces, or the query's own piece in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from engine.models import prepare_if_packaged
from eval.metrics import QueryResult, percentile, to_ms
from eval.workloads import PREFILL_SHARE


@dataclass(frozen=True)
class StepSeen:
    """One engine step inside a query's wait, relative to the query's last event."""

    at_ms: float
    own: int  # tokens of the query's own request in that step
    others: dict[str, int]  # other requests' tokens (vLLM request ids)
    others_complete: tuple[str, ...]  # which of the others were complete contexts


def waits(result: QueryResult, steps: list[dict], lead_s: float = 0.3) -> list[StepSeen]:
    """The steps scheduled from `lead_s` before `result`'s last event to its first token (the one
    in flight when the event came starts up to a step earlier)."""
    own = (result.session_id or "\0") + "-"
    seen = []
    for step in steps:
        if not result.t_last_event - lead_s <= step["t"] <= result.t_first_token:
            continue
        mine = sum(n for rid, n in step["scheduled"].items() if rid.startswith(own))
        others = {rid: n for rid, n in step["scheduled"].items() if not rid.startswith(own)}
        seen.append(StepSeen(to_ms(step["t"] - result.t_last_event), mine, others,
                             tuple(rid for rid in step.get("complete", []) if rid in others)))
    return seen


def report(results: list[QueryResult], floors: dict[str, float], steps: list[dict], worst: int = 8) -> dict:
    done = [r for r in results if r.finished]
    ttft = [r.ttft_last_s for r in done]
    excess = sorted(done, key=lambda r: r.ttft_last_s - floors.get(r.query, 0.0), reverse=True)
    return {
        "ttft_last_p50_ms": to_ms(percentile(ttft, 50)), "ttft_last_p95_ms": to_ms(percentile(ttft, 95)),
        "floor_p50_ms": to_ms(percentile(list(floors.values()), 50)),
        "queries": [{"query": r.query, "ttft_last_ms": to_ms(r.ttft_last_s), "floor_ms": to_ms(floors.get(r.query)),
                     "tail_tokens": r.tail_tokens, "steps": [s.__dict__ for s in waits(r, steps)]}
                    for r in excess[:worst]],
    }


def format_report(out: dict) -> str:
    lines = [f"TTFT from the last event P50 {out['ttft_last_p50_ms']:.0f} ms, P95 {out['ttft_last_p95_ms']:.0f} ms; "
             f"floor P50 {out['floor_p50_ms']:.0f} ms. The longest waits beyond the floor:"]
    for q in out["queries"]:
        lines.append(f"{q['query']}: {q['ttft_last_ms']:.0f} ms (floor {q['floor_ms']:.0f}), tail {q['tail_tokens']} tokens")
        for s in q["steps"]:
            others = ", ".join(f"{n}{'*' if rid in s['others_complete'] else ''}" for rid, n in s["others"].items())
            lines.append(f"    {s['at_ms']:+8.0f} ms  own {s['own']:>4}  others [{others}]")
    lines.append("Steps by when they were scheduled, from the query's last event; * marks another session's "
                 "complete context.")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict:
    from engine import EngineConfig, StreamEngine
    from eval.replay import BENCH_BLOCK_SIZE, replay
    from eval.workloads import generate

    trace = generate("crawler", args.queries, args.seed)
    trace.meta.setdefault("workload", "crawler")
    config = EngineConfig(model=args.model, record_steps=True, policy=args.policy, block_size=BENCH_BLOCK_SIZE,
                          serial_finals=None if args.serial_finals == "default" else args.serial_finals == "on")
    async with StreamEngine(config) as engine:
        result = await replay({"streamrag": engine}, trace, systems=("streamrag",), load=[args.load],
                              prefill_share=args.prefill_share, seed=args.seed, progress=not args.no_progress)
        steps = [s for s in engine.ledger.step_records() if "t" in s]
    floors = {f.query: f.ttft_last_s for f in result.floor if f.finished}
    out = report(list(result.passes[0].results), floors, steps, worst=args.worst)
    out["meta"] = {**result.meta, "command": "python -m eval.step_timeline " + " ".join(args.argv)}
    return out


def main(argv: list[str] | None = None) -> int:
    import sys

    p = argparse.ArgumentParser(prog="python -m eval.step_timeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--queries", type=int, default=30)
    p.add_argument("--load", type=float, default=0.4, help="fraction of the measured one-shot capacity")
    p.add_argument("--prefill-share", type=float, default=PREFILL_SHARE["crawler"],
                   help="share of retrieval time whole-prompt prefill takes (the bench's default for crawler)")
    p.add_argument("--policy", default="fcfs")
    p.add_argument("--serial-finals", choices=["default", "on", "off"], default="default")
    p.add_argument("--model", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worst", type=int, default=8, help="how many queries to list, longest wait first")
    p.add_argument("--out", type=Path, default=Path("results/timeline"))
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    prepare_if_packaged(args.model)  # a clean checkout has not run `make serve`
    args.argv = sys.argv[1:] if argv is None else argv
    out = asyncio.run(run(args))
    print(format_report(out))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "timeline.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out / 'timeline.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
