"""Micro-benchmark: TTFT after the last context event, streamrag vs one-shot vs the floor.

    python -m eval.micro --mode append [--chunks 8] [--tokens 256] [--gap-ms 500]
    python -m eval.micro --mode update [--chunks 8] [--tokens 256] [--updates 6] [--gap-ms 300]

append: K chunks of ~N tokens arrive every D ms. Systems, one engine, one run:
  streamrag  a session; each chunk is appended (and prefilled) as it arrives;
  one-shot   wait for the last chunk, then submit the whole prompt at once;
  floor      everything before the last chunk prefilled ahead (untimed); then the last chunk
             and the closing template are prefilled and one token decoded.
update: a ranking of K chunks, then U re-rankings every D ms, each keeping a random prefix of
  the previous one (at least i/U of it for the i-th: refinements converge) and filling the
  rest with new chunks. Systems:
  streamrag  update mode "lcp": vLLM keeps the KV up to the longest common prefix;
  reopen     the baseline: end the vLLM request, reopen with the whole prompt (prefix cache);
  one-shot   the final prompt submitted at once after the last update.
  The table adds the tokens vLLM computed for the query (its own per-step counts).

Each system draws its own random text with the same shape, so vLLM's prefix cache cannot hand
one system blocks another computed. TTFT runs from the last event to the first token.
Writes <out>/micro-<mode>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path

from tqdm import tqdm

from engine import EngineConfig, Sampling, StreamEngine
from engine.models import prepare_if_packaged
from eval.machine import machine_line
from retrievers import Chunk

WORDS = (
    "the cache holds keys and values for every token so that decoding never recomputes them "
    "retrieval returns passages ranked by similarity and the engine prefills them as they arrive "
    "python raises an exception when a finally clause runs after the try block returns"
).split()


def chunk_of(engine: StreamEngine, rng: random.Random, n_tokens: int) -> Chunk:
    """A chunk of random words trimmed to ~n_tokens tokens of the engine's tokenizer."""
    ids = engine.template.encode(" ".join(rng.choice(WORDS) for _ in range(n_tokens * 2)))[:n_tokens]
    return Chunk(text=engine.template.decode(ids), id=f"c{rng.getrandbits(32)}")


def rankings(engine, shape: random.Random, text: random.Random, args) -> list[list[Chunk]]:
    """The update script: `shape` fixes how much each re-ranking keeps, `text` the words."""
    current = [chunk_of(engine, text, args.tokens) for _ in range(args.chunks)]
    script = [current]
    for i in range(args.updates):
        # ANN refinement converges: update i keeps at least i/U of the previous ranking.
        keep = shape.randint(i * args.chunks // args.updates, args.chunks - 1)
        current = current[:keep] + [chunk_of(engine, text, args.tokens) for _ in range(args.chunks - keep)]
        script.append(current)
    return script


def question(rng: random.Random) -> str:
    return f"q{rng.getrandbits(32)}: what does the cache hold?"


async def _first_token(gen, t0: float) -> float:
    async for _ in gen:
        return time.perf_counter() - t0
    raise RuntimeError("no token generated")


async def _session_events(engine, session, events, gap_s: float, op: str) -> float:
    for event in events:
        await asyncio.sleep(gap_s)
        await (session.append(event) if op == "append" else session.update(event))
    t_last = time.perf_counter()
    await session.finish_context()
    return await _first_token(session.generate(Sampling(max_tokens=1)), t_last)


def _computed(engine, session_id: str) -> int:
    return sum(engine.ledger.scheduled_tokens(session_id)) - 1  # minus the decoded token's step


async def run_stream(engine, shape, text, args, update_mode="lcp"):
    session = await engine.open_session(question=question(text), update_mode=update_mode)
    if args.mode == "append":
        events = [[chunk_of(engine, text, args.tokens)] for _ in range(args.chunks)]
        ttft = await _session_events(engine, session, events, args.gap_ms / 1000, "append")
    else:
        ttft = await _session_events(engine, session, rankings(engine, shape, text, args), args.gap_ms / 1000, "update")
    s = session.stats
    return {"ttft_s": ttft, "prompt_tokens": s.prompt_tokens, "tokens_after_gate": s.tail_prefill_tokens,
            "computed_tokens": _computed(engine, session.id), "recomputed_tokens": s.recomputed_tokens}


async def run_reopen(engine, shape, text, args):
    return await run_stream(engine, shape, text, args, update_mode="reopen")


async def run_one_shot(engine, shape, text, args):
    rendered = engine.template.render(question(text))
    if args.mode == "append":
        final = []
        for _ in range(args.chunks):
            await asyncio.sleep(args.gap_ms / 1000)
            final.append(chunk_of(engine, text, args.tokens))
    else:
        script = rankings(engine, shape, text, args)
        await asyncio.sleep(len(script) * args.gap_ms / 1000)
        final = script[-1]
    prompt = list(rendered.prefix_ids)
    for i, c in enumerate(final):
        prompt += engine.template.chunk_ids(c.text, i + 1)
    prompt += rendered.closing_ids
    t_last = time.perf_counter()
    ttft = await _first_token(engine.complete_stream(prompt_token_ids=prompt, sampling=Sampling(max_tokens=1)), t_last)
    return {"ttft_s": ttft, "prompt_tokens": len(prompt), "tokens_after_gate": len(prompt),
            "computed_tokens": len(prompt), "recomputed_tokens": 0}


async def run_floor(engine, shape, text, args):
    session = await engine.open_session(question=question(text))
    for _ in range(args.chunks - 1):
        await session.append([chunk_of(engine, text, args.tokens)])
    await session.wait_prefilled()
    last = chunk_of(engine, text, args.tokens)
    t_last = time.perf_counter()
    await session.append([last])
    await session.finish_context()
    ttft = await _first_token(session.generate(Sampling(max_tokens=1)), t_last)
    s = session.stats
    return {"ttft_s": ttft, "prompt_tokens": s.prompt_tokens, "tokens_after_gate": s.tail_prefill_tokens,
            "computed_tokens": _computed(engine, session.id), "recomputed_tokens": 0}


SYSTEMS = {
    "append": {"streamrag": run_stream, "one-shot": run_one_shot, "floor": run_floor},
    "update": {"streamrag": run_stream, "reopen": run_reopen, "one-shot": run_one_shot},
}


async def main_async(args) -> dict:
    config = EngineConfig(model=args.model, max_model_len=args.max_model_len,
                          block_size=args.block_size, record_steps=True)
    systems = SYSTEMS[args.mode]
    results: dict[str, list[dict]] = {name: [] for name in systems}
    async with StreamEngine(config) as engine:
        warm = argparse.Namespace(**{**vars(args), "chunks": 2, "mode": "append"})
        await run_floor(engine, random.Random(-1), random.Random(-2), warm)
        with tqdm(total=args.repeats * len(systems), desc=f"micro {args.mode}", unit="run") as bar:
            for r in range(args.repeats):
                for i, (name, run) in enumerate(systems.items()):  # interleaved: drift hits all
                    shape = random.Random(args.seed * 1000 + r)  # same script shape per system
                    text = random.Random(args.seed * 1000 + r + 10_000 * (i + 1))
                    results[name].append(await run(engine, shape, text, args))
                    bar.update()
    summary = {
        name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for name, runs in results.items()
    }
    return {"mode": args.mode, "model": args.model, "args": vars(args), "summary": summary, "runs": results}


def print_table(report: dict) -> None:
    base = report["summary"]["one-shot"]["ttft_s"]
    print(f"\nmode={report['mode']} model={report['model']} (medians)")
    print(f"{'system':<11}{'TTFT ms':>9}{'vs one-shot':>13}{'prompt':>8}{'after gate':>12}"
          f"{'computed':>10}{'recomputed':>12}")
    for name, s in report["summary"].items():
        print(f"{name:<11}{s['ttft_s'] * 1000:>9.1f}{base / s['ttft_s']:>12.2f}x{s['prompt_tokens']:>8.0f}"
              f"{s['tokens_after_gate']:>12.0f}{s['computed_tokens']:>10.0f}{s['recomputed_tokens']:>12.0f}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("append", "update"), default="append")
    p.add_argument("--model", default="default")
    p.add_argument("--chunks", type=int, default=8, help="K: chunks in the prompt")
    p.add_argument("--tokens", type=int, default=256, help="N: tokens per chunk")
    p.add_argument("--updates", type=int, default=6, help="U: re-rankings after the first (update mode)")
    p.add_argument("--gap-ms", type=float, default=500.0, help="D: ms between events")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/micro")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    prepare_if_packaged(args.model)  # a clean checkout has not run `make serve`
    report = asyncio.run(main_async(args))
    print_table(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"micro-{args.mode}.json"
    report["machine"] = machine_line()
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
