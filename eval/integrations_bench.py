"""Benchmark: TTFT from query start of a LlamaIndex `QueryFusionRetriever` pipeline, with streamrag's
`StreamingQueryEngine` versus the same retrieval followed by a plain (one-shot) vLLM call.

    python -m eval.integrations_bench [--model default] [--runs 5] [--delays 0.2,0.6,1.2]

The pipeline: a `QueryFusionRetriever` over three real retrievers (embedded Qdrant, the Python
reference corpus, all-MiniLM-L6-v2) whose answers take the given latencies, each searching its own
phrasing of the question (as a fusion retriever's sub-queries would). One engine, one run of
each system per question, interleaved:

  streamrag   StreamingQueryEngine + StreamRAGLLM: each sub-retriever's nodes are prefilled as
              it returns; after the last one only the tail is computed.
  one-shot    the same fusion retriever, then the final prompt (same layout and passages, in
              the fused order) submitted to vLLM at once: everything is prefilled after retrieval.
  stock       a stock RetrieverQueryEngine with StreamRAGLLM as its plain LLM (LlamaIndex's own
              prompt template and synthesizer): what swapping only the LLM gives.

TTFT runs from the query call to the first generated text; "after retrieval" is the part of it
after the last retriever returned (streamrag: after the gate). Every run has its own system prompt,
so vLLM's prefix cache never hands one run blocks another computed. Writes <out>/integrations.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.retrievers import QueryFusionRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle

from engine import EngineConfig, Sampling, StreamEngine
from engine.models import prepare_if_packaged
from integrations.llamaindex import StoreRetriever, StreamingQueryEngine, StreamRAGLLM
from retrievers import Embedder, QdrantStore, ingest, write_python_docs

# (question, paraphrase, follow-up sub-question): one phrasing per retriever.
QUESTIONS = (
    ("How does the with statement work?", "context manager __enter__ and __exit__ methods",
     "What happens when a with block raises an exception?"),
    ("How are exceptions handled with try and except?", "catching an exception in an except clause",
     "When does the finally clause run?"),
    ("How does a for loop iterate?", "iterating over a sequence with for", "What does break do inside a loop?"),
    ("What does the yield expression do?", "generator functions and yield", "How is a generator resumed?"),
    ("How does import find a module?", "the import statement and modules", "What is a relative import?"),
)
TOPICS = ("with context-managers try exceptions for break continue yield import function return "
          "while if class raise assert lambda global nonlocal pass del").split()


class StaggeredRetriever(StoreRetriever):
    """A store retriever that answers `delay` seconds after it was asked, for its own phrasing."""

    def __init__(self, delay: float, phrasing: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delay, self.phrasing, self.queries = delay, phrasing, {}

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        started = time.monotonic()
        query = self.queries.get(query_bundle.query_str, query_bundle.query_str)
        nodes = await super()._aretrieve(QueryBundle(query))
        await asyncio.sleep(max(0.0, self.delay - (time.monotonic() - started)))
        return nodes


def _system(label: str) -> str:
    return f"You answer from the numbered passages. Run {label}-{uuid.uuid4().hex[:8]}."


async def run_streamrag(llm, fusion, question) -> dict:
    engine = StreamingQueryEngine.from_args(fusion, llm=llm, system=_system("s"), streaming=True)
    ttft, response = await _query_ttft(engine, question)
    stats = response.metadata["streamrag_session"].stats
    return {"ttft_s": ttft, "after_retrieval_s": ttft - stats.t_gate, "prompt_tokens": stats.prompt_tokens,
            "prefilled_before_gate": stats.prefilled_before_gate, "tail_tokens": stats.tail_prefill_tokens}


async def run_one_shot(engine: StreamEngine, fusion, question, max_tokens) -> dict:
    t0 = time.perf_counter()
    nodes = await fusion.aretrieve(question)
    retrieval = time.perf_counter() - t0
    rendered = engine.template.render(question, _system("o"))
    prompt = list(rendered.prefix_ids)
    for i, node in enumerate(nodes):
        prompt += engine.template.chunk_ids(node.node.get_content(), i + 1)
    prompt += rendered.closing_ids
    ttft = None
    async for delta in engine.complete_stream(prompt_token_ids=prompt, sampling=Sampling(max_tokens=max_tokens)):
        if ttft is None and delta.token_ids:
            ttft = time.perf_counter() - t0
    return {"ttft_s": ttft, "after_retrieval_s": ttft - retrieval, "prompt_tokens": len(prompt),
            "prefilled_before_gate": 0, "tail_tokens": len(prompt)}


async def run_stock(llm, fusion, question) -> dict:
    llm_system = StreamRAGLLM(engine=llm.client, max_tokens=llm.max_tokens, system_prompt=_system("k"))
    engine = RetrieverQueryEngine.from_args(fusion, llm=llm_system, streaming=True)
    ttft, _ = await _query_ttft(engine, question)
    return {"ttft_s": ttft}


async def _query_ttft(engine, question):
    """Seconds from the query to its first streamed text, and the (drained) response."""
    t0 = time.perf_counter()
    response = await engine.aquery(question)
    ttft = None
    async for text in response.async_response_gen():
        if ttft is None and text:
            ttft = time.perf_counter() - t0
    return ttft, response


async def main_async(args) -> dict:
    delays = [float(d) for d in args.delays.split(",")]
    top_k = [int(k) for k in args.top_k.split(",")]
    config = EngineConfig(model=args.model, max_model_len=args.max_model_len, block_size=args.block_size)
    embedder = Embedder.load()
    async with StreamEngine(config) as engine, await QdrantStore.open(":memory:") as store:
        folder = Path(tempfile.mkdtemp()) / "python-docs"
        write_python_docs(folder, TOPICS)
        await ingest([folder], collection="docs", store=store, embedder=embedder, progress=False)
        retrievers = [StaggeredRetriever(d, i, store=store, embedder=embedder, collection="docs", top_k=k)
                      for i, (d, k) in enumerate(zip(delays, top_k))]
        for phrasings in QUESTIONS:
            for r in retrievers:
                r.queries[phrasings[0]] = phrasings[r.phrasing]
        llm = StreamRAGLLM(engine=engine, max_tokens=args.max_tokens)
        # similarity_top_k above the union: the one-shot prompt has every passage streamrag saw.
        fusion = QueryFusionRetriever(retrievers, llm=llm, num_queries=1, similarity_top_k=sum(top_k))
        rows: dict[str, list[dict]] = {"streamrag": [], "one-shot": [], "stock": []}
        questions = [q[0] for q in QUESTIONS]
        await run_streamrag(llm, fusion, questions[0])  # warm-up, not recorded
        await run_one_shot(engine, fusion, questions[0], args.max_tokens)
        for run in range(args.runs):
            question = questions[run % len(questions)]
            rows["streamrag"].append(await run_streamrag(llm, fusion, question))
            rows["one-shot"].append(await run_one_shot(engine, fusion, question, args.max_tokens))
            if not args.skip_stock:
                rows["stock"].append(await run_stock(llm, fusion, question))
    summary = {name: _summary(values) for name, values in rows.items() if values}
    return {"args": vars(args), "summary": summary, "runs": rows}


def _summary(rows: list[dict]) -> dict:
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


def table(report: dict) -> str:
    lines = ["| system | TTFT from query start: median (min–max) | of which after retrieval | prompt tokens "
             "| prefilled before gate | after gate |", "|---|---|---|---|---|---|"]
    for name, s in report["summary"].items():
        ttft = s["ttft_s"]
        cells = [f"{ttft['median']:.2f} s ({ttft['min']:.2f}–{ttft['max']:.2f})"]
        cells.append(f"{s['after_retrieval_s']['median']:.2f} s" if "after_retrieval_s" in s else "–")
        for key in ("prompt_tokens", "prefilled_before_gate", "tail_tokens"):
            cells.append(f"{s[key]['median']:.0f}" if key in s else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--delays", default="0.2,0.6,1.2", help="latency of each retriever, seconds")
    p.add_argument("--top-k", default="5,5,1", help="passages from each retriever")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--skip-stock", action="store_true", help="leave out the stock RetrieverQueryEngine row")
    p.add_argument("--out", default="results/integrations")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    prepare_if_packaged(args.model)  # a clean checkout has not run `make serve`
    report = asyncio.run(main_async(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "integrations.json").write_text(json.dumps(report, indent=2))
    print(table(report))


if __name__ == "__main__":
    main()
