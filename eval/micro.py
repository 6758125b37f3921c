"""Micro-benchmark: K chunks of ~N tokens arriving every D ms; TTFT from the last chunk.

    python -m eval.micro [--model default] [--chunks 8] [--tokens 256] [--gap-ms 500]

Three systems on the same engine, in one run, each on its own random text (so vLLM's prefix
cache cannot hand one system the blocks another computed):

  streamrag  a session: each chunk is appended (and prefilled) as it arrives;
  one-shot   wait for the last chunk, then submit the whole prompt at once;
  floor      the context before the last chunk is prefilled ahead, untimed; then the last
             chunk + closing template are prefilled and one token decoded: the least any
             system can do after the last chunk arrives.

TTFT is measured from the arrival of the last chunk to the first generated token.
Writes <out>/micro-append.json.
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

from engine import Chunk, EngineConfig, StreamEngine

WORDS = (
    "the cache holds keys and values for every token so that decoding never recomputes them "
    "retrieval returns passages ranked by similarity and the engine prefills them as they arrive "
    "python raises an exception when a finally clause runs after the try block returns"
).split()


def chunk_of(engine: StreamEngine, rng: random.Random, n_tokens: int) -> str:
    """Random words trimmed to ~n_tokens tokens of the engine's tokenizer."""
    words = [rng.choice(WORDS) for _ in range(n_tokens * 2)]
    ids = engine.template.encode(" ".join(words))[:n_tokens]
    return engine.template.decode(ids)


async def run_streamrag(engine, rng, args) -> tuple[float, dict]:
    session = engine.open_session(question=f"q{rng.random()} what does the cache hold?")
    for _ in range(args.chunks):
        await asyncio.sleep(args.gap_ms / 1000)
        await session.append([Chunk(text=chunk_of(engine, rng, args.tokens))])
    t_last = time.perf_counter()
    await session.finish_context()
    async for _ in session.generate(max_tokens=1):
        ttft = time.perf_counter() - t_last
    s = session.stats
    return ttft, {"prompt_tokens": s.prompt_tokens, "tail_tokens": s.tail_tokens}


async def run_one_shot(engine, rng, args) -> tuple[float, dict]:
    # The very prompt a session would build, submitted whole once the last chunk is in.
    rendered = engine.template.render(f"q{rng.random()} what does the cache hold?")
    prompt = list(rendered.prefix_ids)
    for i in range(args.chunks):
        await asyncio.sleep(args.gap_ms / 1000)
        prompt += engine.template.chunk_ids(chunk_of(engine, rng, args.tokens), i + 1)
    prompt += rendered.closing_ids
    t_last = time.perf_counter()
    async for _ in engine.complete_stream(prompt_token_ids=prompt, max_tokens=1):
        ttft = time.perf_counter() - t_last
    return ttft, {"prompt_tokens": len(prompt), "tail_tokens": len(prompt)}


async def run_floor(engine, rng, args) -> tuple[float, dict]:
    session = engine.open_session(question=f"q{rng.random()} what does the cache hold?")
    for _ in range(args.chunks - 1):
        await session.append([Chunk(text=chunk_of(engine, rng, args.tokens))])
    await session.wait_prefilled()
    last = Chunk(text=chunk_of(engine, rng, args.tokens))
    t_last = time.perf_counter()
    await session.append([last])
    await session.finish_context()
    async for _ in session.generate(max_tokens=1):
        ttft = time.perf_counter() - t_last
    s = session.stats
    return ttft, {"prompt_tokens": s.prompt_tokens, "tail_tokens": s.tail_tokens}


SYSTEMS = {"streamrag": run_streamrag, "one-shot": run_one_shot, "floor": run_floor}


async def main_async(args) -> dict:
    config = EngineConfig(model=args.model, max_model_len=args.max_model_len, block_size=args.block_size)
    rng = random.Random(args.seed)
    results: dict[str, list[dict]] = {name: [] for name in SYSTEMS}
    async with StreamEngine(config) as engine:
        await run_floor(engine, rng, argparse.Namespace(**{**vars(args), "chunks": 2}))  # warm-up
        with tqdm(total=args.repeats * len(SYSTEMS), desc="micro", unit="run") as bar:
            for _ in range(args.repeats):
                for name, run in SYSTEMS.items():  # interleaved, so drift hits all alike
                    ttft, extra = await run(engine, rng, args)
                    results[name].append({"ttft_s": ttft, **extra})
                    bar.update()
    summary = {
        name: {
            "ttft_p50_s": statistics.median(r["ttft_s"] for r in runs),
            "ttft_min_s": min(r["ttft_s"] for r in runs),
            "prompt_tokens": statistics.median(r["prompt_tokens"] for r in runs),
            "tokens_after_last_chunk": statistics.median(r["tail_tokens"] for r in runs),
        }
        for name, runs in results.items()
    }
    return {"mode": "append", "args": vars(args), "summary": summary, "runs": results}


def print_table(report: dict) -> None:
    base = report["summary"]["one-shot"]["ttft_p50_s"]
    print(f"\n{'system':<12}{'TTFT p50 (ms)':>15}{'vs one-shot':>13}{'prompt tok':>12}{'tok after last':>16}")
    for name, s in report["summary"].items():
        print(
            f"{name:<12}{s['ttft_p50_s'] * 1000:>15.1f}{base / s['ttft_p50_s']:>12.2f}x"
            f"{s['prompt_tokens']:>12.0f}{s['tokens_after_last_chunk']:>16.0f}"
        )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--chunks", type=int, default=8, help="K: chunks per prompt")
    p.add_argument("--tokens", type=int, default=256, help="N: tokens per chunk")
    p.add_argument("--gap-ms", type=float, default=500.0, help="D: ms between chunks")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/micro")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    report = asyncio.run(main_async(args))
    print_table(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "micro-append.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out / 'micro-append.json'}")


if __name__ == "__main__":
    main()
