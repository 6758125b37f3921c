"""`streamrag bench --quality`: the quality bench from the command line, against a server.

Without `--server` it prepares what `make serve` prepares when missing (the packaged model, done
by `streamrag bench` before it comes here, and the sample corpus in the embedded Qdrant of the
data folder) and starts `streamrag serve` on a free port for the run, so the answers take
exactly the path a user's request takes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eval.machine import machine_line
from eval.quality import (
    JOURNAL,
    MODES,
    QUICK_SETTINGS,
    SETTINGS,
    JournalMismatch,
    journal_machine,
    journal_params,
    load_questions,
    read_journal,
    run_quality,
)
from eval.quality_report import build_report, format_table, write_report

QUICK_QUESTIONS = 5
MAX_TOKENS = 48


async def ensure_collection(data: Path, collection: str) -> None:
    """The sample corpus ingested into `collection` of the embedded store under `data`, once."""
    from retrievers import PYTHON_DOCS, Embedder, QdrantStore, corpus_path, ingest, qdrant_path, write_python_docs

    store = await QdrantStore.open(qdrant_path(data))
    try:
        if collection in await store.collection_names():
            return
        print(f"bench --quality: ingesting the sample corpus into {collection!r} (once) ...", file=sys.stderr)
        folder = corpus_path(data, PYTHON_DOCS)
        write_python_docs(folder)
        await ingest([folder], collection=collection, store=store, embedder=Embedder.load(), progress=True)
    finally:
        await store.close()  # the server opens the same folder next


async def quality_bench(args: argparse.Namespace) -> int:
    from eval.server_process import StreamRAGServerProcess
    from retrievers import data_dir

    settings = tuple(args.settings or (QUICK_SETTINGS if args.quick else SETTINGS))
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        print(f"streamrag bench: error: --settings: unknown {unknown}; choose from {list(SETTINGS)}", file=sys.stderr)
        return 2
    limit = args.questions or (QUICK_QUESTIONS if args.quick else None)
    questions = load_questions(limit)
    modes = tuple(args.modes or MODES)
    out = args.out
    max_tokens = args.max_tokens or MAX_TOKENS
    served = args.server or f"--model {args.model}"  # which answers a resumed run may join
    journal = out / JOURNAL
    done: list = []
    if args.resume and journal.is_file():  # refuse a mismatch before a server is started
        try:
            done = read_journal(journal, journal_params(settings, modes, args.collection, max_tokens, served))
        except JournalMismatch as error:
            print(f"streamrag bench: error: --resume: {error}", file=sys.stderr)
            return 2
        print(f"bench --quality: resuming from {journal} ({len(done)} answers measured)", file=sys.stderr)
    # The machine the answers are measured on: the one that started the journal, if one is resumed.
    here = {**machine_line(), "busy_poll": _busy_poll(args)}
    machine = (journal_machine(journal) if done else None) or here
    if machine != here:
        print("bench --quality: warning: the journal was started on another machine or with other engine "
              "settings; the report records both", file=sys.stderr)
    wanted = {(m, q["id"], s) for m in modes for q in questions for s in settings}
    if done and wanted <= {(r.mode, r.question, r.setting) for r in done}:
        print("bench --quality: every answer is in the journal; reporting without asking again", file=sys.stderr)
        records = [r for r in done if (r.mode, r.question, r.setting) in wanted]
        return _report(records, args, questions, modes, settings, max_tokens, out, machine, here,
                       model=args.model if args.server is None else f"the server's ({args.server})")
    server = None
    url = args.server
    if url is None:
        data = Path(args.data_dir) if args.data_dir else data_dir()
        await ensure_collection(data, args.collection)
        server = StreamRAGServerProcess(out / "quality-server.log", ("--model", args.model, "--data-dir", str(data)))
        print(f"bench --quality: starting streamrag serve --model {args.model} ...", file=sys.stderr)
        server.start()
    try:
        if server is not None:
            await server.wait_ready()
            url = server.url
        records = await run_quality(url, questions, settings, modes, args.collection, max_tokens, model=None,
                                    api_key=args.api_key, progress=not args.no_progress, journal=journal,
                                    done=done, served=served, machine=machine)
    finally:
        if server is not None:
            server.stop()
    return _report(records, args, questions, modes, settings, max_tokens, out, machine, here,
                   model=args.model if server is not None else f"the server's ({url})")


def _busy_poll(args: argparse.Namespace) -> bool | None:
    """Whether the server's vLLM queue readers spin: those of the server this bench starts (its
    engine's default); None for `--server`, whose settings are its own."""
    if args.server:
        return None
    from engine import EngineConfig

    return EngineConfig(model=args.model).busy_polling


def _report(records, args, questions, modes, settings, max_tokens, out: Path, machine: dict, here: dict,
            model: str) -> int:
    meta = {"command": "streamrag bench " + " ".join(sys.argv[2:]), "machine": machine, "model": model,
            "questions": len(questions), "modes": list(modes), "settings": list(settings), "max_tokens": max_tokens,
            "sampling": "greedy (temperature 0, seed 0)", "collection": args.collection,
            **({"resumed_on": here} if here != machine else {})}
    report = build_report(records, meta)
    print(format_table(report))
    if report["knee"]:
        print(f"\nknee of the front: {report['knee']['mode']} mode, {' / '.join(report['knee']['settings'])}")
    json_path, png = write_report(report, out)
    print(f"wrote {json_path}, {png}")
    return 0 if all(r.finished for r in records) else 1
