"""`streamrag bench`: replay a crawler- or ANNS-shaped workload against the baselines.

    streamrag bench --workload crawler --quick
    streamrag bench --workload crawler --load 0.2 0.4 0.6 0.8 --engine-cores 0
    streamrag bench --workload anns --qps 0.25 0.5 0.75 --queries 30 --out results/bench
    streamrag bench --workload anns --policy lcas
    streamrag bench --workload crawler --trace my-trace.jsonl --server http://127.0.0.1:8000
    streamrag bench --quality --quick          # the gate's latency-quality trade-off (eval/quality.py)
    streamrag bench --http-overhead --repeats 10   # what HTTP + SSE adds (eval/http_overhead.py)

In-process, the baselines ("one-shot", "vllm-stream") run on an engine with vLLM's own
scheduling order (policy "vllm": vLLM's own streaming sessions), and "streamrag" on a second
engine of the same model and sizes with its scheduling policy, `--policy` (default "fcfs";
engine/policies.py). With `--policy vllm` one engine serves all three. With `--server` every
system runs on that server, whose engine has its own policy (`--policy` is refused there).
The table and the JSON's meta["engines"] record each system's policy.

Load levels are fractions of the machine's measured capacity (`--load`, default 20/40/60/80%):
the floor pass times every query's whole prompt on the idle engine, capacity is the one-shot
throughput that implies, and each level's QPS is its fraction of it, so that a level loads any
machine alike. `--qps` gives exact arrival rates instead. A generated trace at fractions of
capacity also has its times scaled so that whole-prompt prefill takes the workload's share of
retrieval time on this machine (eval/workloads.py PREFILL_SHARE: crawler 7%, ANNS 25%), since
streaming hides prefill in the gaps between chunks and a slower machine has more to hide in the
same gaps; `--prefill-share S` holds another share, `--trace-times` (the default with `--qps`,
`--trace` or `--time-factor`) keeps the trace's own times. The engines run one after the other
(only one is busy at a time), each on `--engine-cores` (default: vLLM's own binding).

Prints the table, writes <out>/<workload>.json, <out>/<workload>-trace.jsonl and the PNG
plots. See eval/replay.py for what runs and docs/benchmarks.md for measured results.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import AsyncExitStack
from pathlib import Path

DEFAULT_LOAD = (0.2, 0.4, 0.6, 0.8)  # fractions of the measured one-shot capacity
QUICK_LOAD = (0.4,)
QUICK_QUERIES = 12
DEFAULT_POLICY = "fcfs"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="replay crawler/ANNS-shaped traces against baselines, with plots",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", choices=("crawler", "anns"), help="the trace to replay (or --quality)")
    p.add_argument("--quality", action="store_true",
                   help="instead of a replay: every question of the question set through the chat endpoint under "
                        "each gate setting and retrieval mode; TTFT against answer quality, Pareto front and knee")
    p.add_argument("--http-overhead", action="store_true",
                   help="instead of a replay: one engine reached straight and through the app on uvicorn, "
                        "TTFT and time per token of each (--prompt-tokens, --max-tokens, --repeats)")
    p.add_argument("--prompt-tokens", type=int, default=512, metavar="N", help="--http-overhead: prompt length (512)")
    p.add_argument("--repeats", type=int, default=10, metavar="N", help="--http-overhead: pairs measured (10)")
    p.add_argument("--settings", nargs="+", metavar="NAME", help="--quality: gate settings to compare (default: all; "
                   "--quick: done, min_chunks=1, stable_updates=1, max_wait_s=0.02)")
    p.add_argument("--modes", nargs="+", choices=("update", "append"), help="--quality: retrieval modes (both)")
    p.add_argument("--questions", type=int, metavar="N", help="--quality: the first N questions (--quick: 5)")
    p.add_argument("--collection", default="python-docs", help="--quality: the collection asked (python-docs)")
    p.add_argument("--resume", action="store_true",
                   help="--quality: go on from the records an interrupted run with the same options left in --out")
    p.add_argument("--data-dir", help="--quality without --server: the data folder the server uses")
    p.add_argument("--load", type=float, nargs="+", metavar="F",
                   help="load levels as fractions of the measured one-shot capacity, one pass per system each "
                        f"(default {' '.join(map(str, DEFAULT_LOAD))}; --quick: {QUICK_LOAD[0]})")
    p.add_argument("--qps", type=float, nargs="+", metavar="Q",
                   help="exact Poisson arrival rates instead of --load")
    p.add_argument("--prefill-share", type=float, metavar="S",
                   help="scale the trace's times so that whole-prompt prefill takes this share of retrieval time "
                        "(per-query median, measured in the floor pass): two machines compared at one share "
                        "(default: the workload's, crawler 0.07 and anns 0.25, for a generated trace at --load)")
    p.add_argument("--trace-times", action="store_true",
                   help="keep the trace's own times, whatever share of them prefill takes on this machine "
                        "(the default with --qps, --trace or --time-factor)")
    p.add_argument("--engine-cores", metavar="CORES",
                   help='CPU cores each in-process engine computes on, e.g. "0" or "0-1" (default: vLLM\'s binding)')
    p.add_argument("--busy-poll", action="store_true", default=None,
                   help="let vLLM's engine core and worker spin on their shared queues, as vLLM does "
                        "(default: off on CPU; EngineConfig.busy_poll)")
    p.add_argument("--queries", type=int, default=30, metavar="N", help="queries in the trace (30)")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_QUERIES} queries at one load level: a few minutes on 2 cores")
    p.add_argument("--trace", type=Path, metavar="FILE", help="replay this JSONL trace instead of generating one")
    p.add_argument("--out", type=Path, default=Path("results/bench"), metavar="DIR")
    p.add_argument("--seed", type=int, default=0, help="seeds the trace and the arrivals")
    p.add_argument("--systems", nargs="+", choices=("one-shot", "vllm-stream", "streamrag"),
                   help="a subset of the systems (default: all three)")
    p.add_argument("--max-tokens", type=int, help="tokens to generate (default 1 for a replay: a TTFT study; "
                                                   "48 for --quality, 64 for --http-overhead)")
    p.add_argument("--size-factor", type=float, help="divide the paper's token counts by this")
    p.add_argument("--time-factor", type=float, help="multiply the paper's gaps and durations by this")
    p.add_argument("--policy", choices=("vllm", "fcfs", "lcas", "mcps"), metavar="{vllm,fcfs,lcas,mcps}",
                   help=f"scheduling policy of streamrag's engine (default {DEFAULT_POLICY}); the baselines run "
                        "on a second engine with vLLM's own order, unless this is vllm (one engine for all). "
                        "Not with --server, whose engine has its own policy")
    p.add_argument("--model", default="default",
                   help='"default", "gemma3-270m", "tiny", a model folder, or random:llama-1b / random:llama-8b (random weights '
                        "of a real shape, for TTFT)")
    p.add_argument("--block-size", type=int, default=64, help="KV block size (multiple of 32)")
    p.add_argument("--max-num-batched-tokens", type=int, default=4096)
    p.add_argument("--kv-cache-gib", type=float, default=1.0, help="KV cache size; 1 GiB holds ~23k tokens of SmolLM2")
    p.add_argument("--max-model-len", type=int, default=8192, help="SmolLM2 supports 8192")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                   help="engine dtype (default: the platform's, float32 on CPU and bfloat16 on CUDA)")
    p.add_argument("--gpu-memory-utilization", type=float, metavar="SHARE",
                   help="CUDA: each engine's share of the card (two engines: 0.45 each)")
    p.add_argument("--compile", action="store_true",
                   help="compile the model's graphs, as vLLM does by default: cheaper steps, start-up ~75 s "
                        "instead of ~20 s per engine on 2 cores (default: eager)")
    p.add_argument("--max-piece-tokens", type=int, metavar="N",
                   help="longest context piece (default: the platform's, 128 on CPU and 2048 on CUDA)")
    p.add_argument("--max-context-tokens", type=int, metavar="N",
                   help="cap on a query's prompt tokens after scaling (default 4000); with --size-factor 1 and "
                        "a model of that context, the paper's own counts")
    p.add_argument("--server", metavar="URL", help="replay against a streamrag server instead of in-process")
    p.add_argument("--api-key", help="bearer token for --server")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each pass, wait up to S seconds for other jobs to leave the CPU idle")
    p.add_argument("--max-others", type=float, metavar="SHARE",
                   help="run a pass again when other jobs took more than this share of the CPU during it")
    p.add_argument("--attempts", type=int, default=3, help="tries per pass with --max-others (3)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    if (args.quality or args.http_overhead or args.workload) and not _prepare_model(args):
        return 2
    if args.quality:
        from eval.quality_bench import quality_bench

        if args.out == Path("results/bench"):
            args.out = Path("results/quality")
        return asyncio.run(quality_bench(args))
    if args.http_overhead:
        return asyncio.run(_http_overhead(args))
    if args.workload is None:
        print("streamrag bench: error: give --workload crawler|anns (a replay), --quality or --http-overhead",
              file=sys.stderr)
        return 2
    return asyncio.run(_bench(args))


def held_share(args: argparse.Namespace) -> float | None:
    """The prefill share the replay holds, or None for the trace's own times: `--prefill-share`
    if given; else the workload's own for a generated trace at fractions of capacity; an exact
    replay (`--qps`, `--trace`) or a trace given its own `--time-factor` keeps its times."""
    from eval.workloads import PREFILL_SHARE

    if args.trace_times:
        return None
    if args.prefill_share is not None:
        return args.prefill_share
    return None if args.qps or args.trace or args.time_factor else PREFILL_SHARE[args.workload]


def _prepare_model(args: argparse.Namespace) -> bool:
    """A packaged model the bench will serve, converted from its installed package if it is not
    yet (what `make serve` does first; never a download). False, with the reason, if it cannot be."""
    from engine.errors import ModelError
    from engine.models import prepare_if_packaged

    if args.server:
        return True
    try:
        prepare_if_packaged(args.model, progress=not args.no_progress)
    except ModelError as error:
        print(f"streamrag bench: error: --model: {error}", file=sys.stderr)
        return False
    return True


async def _http_overhead(args: argparse.Namespace) -> int:
    from app.main import create_app
    from app.settings import Settings
    from eval.http_overhead import http_overhead

    if args.out == Path("results/bench"):
        args.out = Path("results/http")
    args.max_tokens = args.max_tokens or 64

    def make_app(engine, max_model_len: int):
        return create_app(Settings(model=args.model, retrieval=False, max_model_len=max_model_len), engine=engine)

    return await http_overhead(args, make_app)


async def _bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from engine import ConfigError, EngineConfig, StreamEngine
    from eval.plots import plot_report
    from eval.replay import replay
    from eval.report import build_report, format_table, write_report
    from eval.systems import SYSTEMS
    from eval.trace import read_trace, write_trace
    from eval.workloads import Scaling, generate
    from integrations.http_client import StreamRAGClient

    if args.server and args.policy is not None:
        print("streamrag bench: error: --policy applies to in-process engines only; with --server "
              "every system runs under the server's own policy", file=sys.stderr)
        return 2
    if args.qps and args.load:
        print("streamrag bench: error: --qps and --load: give one (exact rates, or fractions of capacity)",
              file=sys.stderr)
        return 2
    if args.prefill_share is not None and not 0 < args.prefill_share < 1:
        print(f"streamrag bench: error: --prefill-share: {args.prefill_share} must be in (0, 1)", file=sys.stderr)
        return 2
    if args.prefill_share is not None and args.trace_times:
        print("streamrag bench: error: --prefill-share and --trace-times: give one (a share held, or the "
              "trace's own times)", file=sys.stderr)
        return 2
    queries = QUICK_QUERIES if args.quick and args.queries == 30 else args.queries
    load = None if args.qps else (args.load or (QUICK_LOAD if args.quick else DEFAULT_LOAD))
    if args.trace:
        trace = read_trace(args.trace).head(queries)
    else:
        base = Scaling.default(args.workload)
        scaling = Scaling(args.size_factor or base.size_factor, args.time_factor or base.time_factor,
                          args.max_context_tokens or base.max_context_tokens)
        trace = generate(args.workload, queries, args.seed, scaling)
    trace.meta.setdefault("workload", args.workload)
    out = args.out
    write_trace(trace, out / f"{args.workload}-trace.jsonl")
    systems = tuple(args.systems or SYSTEMS)
    configs: dict[str, EngineConfig] = {}  # system -> config; systems sharing one share an engine
    if not args.server:
        policy = args.policy or DEFAULT_POLICY
        try:
            own = EngineConfig(
                model=args.model, max_model_len=args.max_model_len,
                block_size=args.block_size, kv_cache_gib=args.kv_cache_gib,
                max_num_batched_tokens=args.max_num_batched_tokens, record_steps=True, policy="vllm",
                cpu_cores=args.engine_cores, dtype=args.dtype, gpu_memory_utilization=args.gpu_memory_utilization,
                max_piece_tokens=args.max_piece_tokens, busy_poll=args.busy_poll, enforce_eager=not args.compile,
            )
        except ConfigError as error:
            print(f"streamrag bench: error: {error}", file=sys.stderr)
            return 2
        tuned = replace(own, policy=policy)
        # The baselines under vLLM's own order; streamrag under its policy (the same engine if "vllm").
        configs = {s: tuned if s == "streamrag" else own for s in systems}
    count = len(set(configs.values())) or 1
    levels = (f"{', '.join(f'{q:g}' for q in args.qps)} QPS" if args.qps
              else f"{', '.join(f'{f:.0%}' for f in load)} of capacity")
    print(f"bench {args.workload}: {len(trace.queries)} queries at {levels}; "
          f"starting {'the engine' if count == 1 else f'{count} engines'} ...", file=sys.stderr, flush=True)
    async with AsyncExitStack() as stack:  # every engine shuts down, on every path
        if args.server:
            engines = await stack.enter_async_context(
                StreamRAGClient(args.server, api_key=args.api_key, timeout_s=None, model=args.model))
        else:
            started: dict[EngineConfig, StreamEngine] = {}
            for config in configs.values():
                if config not in started:
                    engine = started[config] = StreamEngine(config)
                    stack.push_async_callback(engine.close)  # also if start() fails half way
                    await engine.start()
            engines = {s: started[c] for s, c in configs.items()}
        result = await replay(engines, trace, args.qps, systems, load=load,
                              max_tokens=args.max_tokens or 1, seed=args.seed, progress=not args.no_progress,
                              quiet_timeout_s=args.wait_quiet, max_others=args.max_others,
                              attempts=args.attempts, prefill_share=held_share(args))
    report = build_report(result)
    report["meta"]["command"] = "streamrag bench " + " ".join(sys.argv[2:])
    print(format_table(report))
    path = write_report(report, out / f"{args.workload}.json")
    plots = plot_report(report, out)
    print(f"\nwrote {path}, {', '.join(str(p) for p in plots)}")
    failed = sum(s["summary"]["queries"] - s["summary"]["finished"]
                 for level in report["levels"] for s in level["systems"].values())
    return 1 if failed else 0
