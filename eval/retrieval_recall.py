"""Evidence recall of the chat endpoint's retrieval, stage by stage, over the question set.

    python -m eval.retrieval_recall [--top-k 4] [--readme-only]

For every answerable question of eval/questions/python_docs.jsonl it runs the retrieval the chat
endpoint runs (`StagedRetriever` + `distinct`) over the whole sample corpus in an in-memory Qdrant,
and checks each stage's shown chunks against the question's verbatim evidence. The baseline, in
the same run, is the retrieval before stages: reciprocal-rank fusion of the question's search with
no near-duplicate filter. Reported per stage: recall (a chunk shown holds some evidence of the
question), and rankings that showed one passage twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from eval.machine import machine_line
from retrievers import (
    Embedder,
    FusionRetriever,
    QdrantStore,
    StagedRetriever,
    Update,
    distinct,
    ingest,
    write_python_docs,
)
from retrievers.distinct import has_repeats

QUESTIONS = Path(__file__).parent / "questions" / "python_docs.jsonl"
COLLECTION = "python-docs"


@dataclass(frozen=True)
class StageRecall:
    stage: str
    questions: int
    recall: float  # share of questions with evidence in a shown chunk
    with_repeats: int  # rankings that showed one passage twice (word-trigram Jaccard >= NEAR)


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def holds_evidence(texts, evidence) -> bool:
    shown = [_flat(t) for t in texts]
    return any(_flat(e) in t for e in evidence for t in shown)


def load_questions(readme_only: bool = False) -> list[dict]:
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["evidence"] and (r["readme"] or not readme_only)]


async def measure(top_k: int, readme_only: bool, bm25_weights=(0.2,)) -> list[StageRecall]:
    rows = load_questions(readme_only)
    embedder = await asyncio.to_thread(Embedder.load)
    store = await QdrantStore.open(":memory:")
    try:
        with tempfile.TemporaryDirectory() as folder:
            docs = Path(folder) / COLLECTION
            write_python_docs(docs)
            await ingest([docs], collection=COLLECTION, store=store, embedder=embedder, progress=True)
        shown: dict[str, list[tuple[dict, list[str]]]] = {}
        for row in tqdm(rows, desc="questions", unit="q"):
            fused = FusionRetriever(store, embedder, COLLECTION, k=top_k)
            async for event in fused.stream(row["question"]):
                if isinstance(event, Update):
                    shown.setdefault("fused, no filter (before)", []).append((row, [c.text for c in event.chunks]))
            for weight in bm25_weights:
                staged = StagedRetriever(store, embedder, COLLECTION, pool=4 * top_k, bm25_weight=weight)
                async for event in distinct(staged.stream(row["question"]), top_k):
                    if isinstance(event, Update) and not (event.stage == "dense" and weight != bm25_weights[0]):
                        name = event.stage if event.stage == "dense" else f"{event.stage} (bm25 {weight})"
                        shown.setdefault(name, []).append((row, [c.text for c in event.chunks]))
    finally:
        await store.close()
    return [StageRecall(stage, len(items), sum(holds_evidence(t, r["evidence"]) for r, t in items) / len(items),
                        sum(has_repeats(t) for _, t in items)) for stage, items in shown.items()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top-k", type=int, default=4, help="chunks shown (default 4, the chat default)")
    parser.add_argument("--readme-only", action="store_true", help="only the 10 questions of the README check")
    parser.add_argument("--bm25-weight", type=float, nargs="+", default=[0.2],
                        help="the hybrid stage's BM25 weights to compare (default 0.2, the server's)")
    parser.add_argument("--out", type=Path, default=Path("results/retrieval_recall.json"))
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.top_k, args.readme_only, args.bm25_weight))
    print(f"\n{'stage':<28} {'questions':>9} {'recall@' + str(args.top_k):>9} {'repeats':>8}")
    for r in results:
        print(f"{r.stage:<28} {r.questions:>9} {r.recall:>9.2f} {r.with_repeats:>8}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine_line(), "top_k": args.top_k, "readme_only": args.readme_only,
                                    "stages": [asdict(r) for r in results]}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
