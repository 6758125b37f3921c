"""CPU that vLLM's engine core and worker use, with vLLM's spinning queue readers and without.

    python -m eval.busy_poll [--model default] [--seconds 8] [--pieces 20] [--gap 0.3]

For each setting of `EngineConfig.busy_poll` (vLLM's spin, then readers that sleep): an engine,
then two phases, each timed by the CPU seconds per second of every process (`psutil`):
one-shot prompts of ~900 tokens back to back for `--seconds`, and one session that receives a
piece every `--gap` seconds (as a retriever streams them). Writes <out>/busy-poll.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import psutil

from engine import EngineConfig, Sampling, StreamEngine
from engine.models import prepare_if_packaged
from eval.machine import cpu_seconds_by_name, machine_line
from retrievers import Chunk

TEXT = "The for statement iterates over the items of any sequence, in the order that they appear. " * 50


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of vLLM's processes, by name, and of everything else here ("server")."""
    out: dict[str, float] = {}
    for name, seconds in cpu_seconds_by_name(psutil.Process()).items():
        key = name.removeprefix("VLLM::") if name.startswith("VLLM::") else "server"
        out[key] = out.get(key, 0.0) + seconds
    return out


async def phase(work) -> dict:
    before, start = cpu_seconds(), time.perf_counter()
    count = await work()
    wall, after = time.perf_counter() - start, cpu_seconds()
    return {"wall_s": round(wall, 2), "count": count,
            **{name: round((after[name] - before.get(name, 0.0)) / wall, 2) for name in after}}


async def measure(busy_poll: bool, args) -> dict:
    config = EngineConfig(model=args.model, busy_poll=busy_poll, max_model_len=4096, block_size=64, kv_cache_gib=0.5)
    async with StreamEngine(config) as engine:

        async def one_shot() -> int:
            n, deadline = 0, time.perf_counter() + args.seconds
            while time.perf_counter() < deadline:
                async for _ in engine.complete_stream(prompt=f"{n} {TEXT}", sampling=Sampling(max_tokens=1)):
                    pass
                n += 1
            return n

        async def streaming() -> int:
            session = await engine.open_session("What does the for statement do?")
            for i in range(args.pieces):
                await session.append([Chunk(f"c{i}", f"Passage {i}: the for statement iterates over a sequence. " * 3)])
                await asyncio.sleep(args.gap)
            await session.abort()
            return args.pieces

        return {"busy_poll": busy_poll, "one_shot": await phase(one_shot), "streaming": await phase(streaming)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--seconds", type=float, default=8.0, help="length of the one-shot phase")
    p.add_argument("--pieces", type=int, default=20, help="pieces the streaming session receives")
    p.add_argument("--gap", type=float, default=0.3, help="seconds between two pieces")
    p.add_argument("--out", default="results/busy-poll")
    args = p.parse_args(argv)
    prepare_if_packaged(args.model)  # a clean checkout has not run `make serve`
    rows = [asyncio.run(measure(busy_poll, args)) for busy_poll in (True, False)]
    print(f"\nCPU seconds per second (model {args.model}); busy_poll True is vLLM's own spin")
    print(f"{'busy_poll':<10}{'phase':<11}{'wall s':>8}{'done':>6}{'EngineCore':>12}{'Worker':>8}{'server':>8}")
    for r in rows:
        for name in ("one_shot", "streaming"):
            m = r[name]
            print(f"{r['busy_poll']!s:<10}{name:<11}{m['wall_s']:>8}{m['count']:>6}{m.get('EngineCore', 0):>12}"
                  f"{m.get('Worker', 0):>8}{m['server']:>8}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "busy-poll.json").write_text(json.dumps({"args": vars(args), "machine": machine_line(), "rows": rows},
                                                   indent=2))
    print(f"wrote {out / 'busy-poll.json'}")


if __name__ == "__main__":
    main()
