"""`streamrag demo`: a console walk through one streaming session on the default model."""

from __future__ import annotations

import argparse

PASSAGES = (
    ("try-1", "The try statement specifies exception handlers and/or cleanup code for a group of statements."),
    ("try-2", "If a finally clause is present, it specifies a cleanup handler: the try clause is executed, "
              "then the finally clause runs, whether or not an exception occurred."),
    ("try-3", "When a return, break or continue statement is executed in the try suite, the finally clause "
              "is also executed on the way out."),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="stream three passages into a session and answer (console)")
    p.add_argument("--model", default="default", help='"default", "tiny" or a model folder')
    p.add_argument("--gap-s", type=float, default=0.5, help="seconds between passages")
    p.add_argument("--max-tokens", type=int, default=64)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_demo(args))


async def _demo(args: argparse.Namespace) -> int:
    import asyncio

    from engine import EngineConfig, Gate, Sampling, StreamEngine
    from retrievers import Chunk

    async with StreamEngine(EngineConfig(model=args.model)) as engine:
        session = await engine.open_session(
            question="When does the finally clause of a try statement run?", gate=Gate(max_wait_s=30)
        )
        for doc_id, text in PASSAGES:
            await asyncio.sleep(args.gap_s)  # a retriever taking its time
            receipt = await session.append([Chunk(text=text, id=doc_id, score=1.0)])
            print(f"context {doc_id}: prompt now {receipt.prompt_tokens} tokens (prefilling)")
        await session.finish_context()
        print("answer: ", end="", flush=True)
        async for delta in session.generate(Sampling(max_tokens=args.max_tokens)):
            print(delta.text, end="", flush=True)
        s = session.stats
        print(f"\n\nprefilled before the gate: {s.prefilled_before_gate} tokens, after: {s.tail_prefill_tokens}; "
              f"TTFT from the gate: {s.ttft_from_gate_s * 1000:.0f} ms")
    return 0
