"""The gate's latency–quality trade-off: every question through the chat endpoint, per setting.

    streamrag bench --quality [--quick] [--server URL]

For each retrieval mode of the chat endpoint ("update": the staged rankings; "append": each
search's hits appended) and each gate setting (retrieval done; `min_chunks`; `min_score`;
`stable_updates`; short `max_wait_s` deadlines), every question of the question set is asked the
way a client asks it: a streamed `POST /v1/chat/completions` with `retrieval` and
`"events": true`, greedy, a fixed `max_tokens`. Per answer it records

    ttft_ms                 first token, from the request (client clock)
    ttft_after_context_ms   first token, from the last context event (negative: decoding began
                            before retrieval ended)
    evidence_at_gate        the context the answer saw holds the question's evidence
    rouge_full              ROUGE-L F1 against the same question's answer with the whole context
                            (the "done" setting of the first mode, the endpoint's default
                            "update"), so that every point of both modes is compared to one answer
    rouge_reference         ROUGE-L F1 against the question's reference answer

Before a question's settings are measured, one unmeasured request warms the engine's prefix
cache for it, so every setting meets the same cache. eval/quality_report.py turns the records
into the table, the Pareto front and the plot.

A whole run is hours on 2 cores, so each question's records are appended to a journal as soon
as its settings are measured; `--resume` goes on from it (JOURNAL below), asking nothing twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse
from tqdm import tqdm

QUESTIONS = Path(__file__).parent / "questions" / "python_docs.jsonl"
MODES = ("update", "append")
# name -> the request's `retrieval.gate` (None: the server's default, which opens when retrieval is done)
SETTINGS: dict[str, dict | None] = {
    "done": None,
    "min_chunks=1": {"min_chunks": 1},
    "min_chunks=2": {"min_chunks": 2},
    "min_chunks=3": {"min_chunks": 3},
    "min_score=1.0": {"min_score": 1.0},
    "min_score=2.0": {"min_score": 2.0},
    "stable_updates=1": {"stable_updates": 1},
    "stable_updates=2": {"stable_updates": 2},
    "stable_updates=3": {"stable_updates": 3},
    "max_wait_s=0.02": {"max_wait_s": 0.02},
    "max_wait_s=0.1": {"max_wait_s": 0.1},
    "max_wait_s=0.5": {"max_wait_s": 0.5},
}
QUICK_SETTINGS = ("done", "min_chunks=1", "stable_updates=1", "max_wait_s=0.02")
JOURNAL = "quality-records.jsonl"  # in the output folder: the run's parameters and machine, then one record per line


class JournalMismatch(ValueError):
    """The journal to resume was written by a run with other parameters."""


@dataclass(frozen=True)
class Answer:
    """What one request through the chat endpoint gave."""

    text: str
    finished: bool
    gate_reason: str | None
    ttft_ms: float | None
    ttft_after_context_ms: float | None
    context_events: int
    shown: tuple[str, ...]  # the chunk texts the answer saw (at the gate)
    error: str | None = None


@dataclass(frozen=True)
class QualityRecord:
    question: str
    kind: str
    mode: str
    setting: str
    finished: bool
    gate_reason: str | None
    ttft_ms: float | None
    ttft_after_context_ms: float | None
    context_events: int
    evidence_at_gate: bool | None  # None: the question has no evidence (unanswerable)
    rouge_full: float | None
    rouge_reference: float | None
    answer: str
    error: str | None


def load_questions(limit: int | None = None, readme_first: bool = True) -> list[dict]:
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    if readme_first:  # --quick asks the README's questions first: all answerable
        rows.sort(key=lambda r: not r["readme"])
    return rows[:limit] if limit else rows


async def ask(http: httpx.AsyncClient, question: str, collection: str, mode: str, gate: dict | None,
              max_tokens: int, model: str | None) -> Answer:
    retrieval: dict = {"collection": collection, "mode": mode, "events": True}
    if gate is not None:
        retrieval["gate"] = gate
    body = {"messages": [{"role": "user", "content": question}], "stream": True, "temperature": 0,
            "seed": 0, "max_tokens": max_tokens, "retrieval": retrieval}
    if model:
        body["model"] = model
    t0 = time.perf_counter()
    text, first, last_context, gate_reason, events, finished = [], None, None, None, 0, False
    shown: list[str] = []
    async with aconnect_sse(http, "POST", "/v1/chat/completions", json=body) as source:
        if source.response.status_code != 200:
            await source.response.aread()
            return Answer("", False, None, None, None, 0, (), f"{source.response.status_code}: {source.response.text}")
        async for sse in source.aiter_sse():
            if sse.data == "[DONE]":
                finished = True
                break
            data = json.loads(sse.data)
            now = (time.perf_counter() - t0) * 1000
            if sse.event == "error":
                return Answer("".join(text), False, gate_reason, first, None, events, tuple(shown),
                              data["error"]["message"])
            if sse.event == "context":
                events, last_context = events + 1, now
                context = data["streamrag"]["context"]
                if gate_reason is None and not context["dropped"]:  # what the gate let in
                    texts = [c["text"] for c in context["chunks"]]
                    shown = texts if context["op"] == "update" else shown + texts
            elif sse.event == "gate":
                gate_reason = data["streamrag"]["gate"]["reason"]
            else:
                for choice in data["choices"]:
                    if choice["delta"].get("content"):
                        first = first if first is not None else now
                        text.append(choice["delta"]["content"])
    after = None if first is None or last_context is None else first - last_context
    return Answer("".join(text), finished, gate_reason, first, after, events, tuple(shown))


def _flat(text: str) -> str:
    return " ".join(text.split())


def evidence_in(shown: tuple[str, ...], evidence: list[str]) -> bool | None:
    if not evidence:
        return None
    flat = [_flat(t) for t in shown]
    return any(_flat(e) in t for e in evidence for t in flat)


def journal_params(settings: tuple[str, ...], modes: tuple[str, ...], collection: str, max_tokens: int,
                   served: str | None) -> dict:
    """What a resumed run must share with the run that wrote the journal (`served`: which model
    or server answered); the question set may grow."""
    ordered = ("done", *[s for s in settings if s != "done"])
    return {"settings": list(ordered), "modes": list(modes), "collection": collection, "max_tokens": max_tokens,
            "served": served}


def read_journal(path: Path, params: dict) -> list[QualityRecord]:
    """The records of an earlier run with the same `params` (its first line), in order."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        return []
    written = {k: v for k, v in json.loads(lines[0]).items() if k != "machine"}
    if written != params:
        changed = sorted(k for k in params.keys() | written.keys() if params.get(k) != written.get(k))
        raise JournalMismatch(f"{path} was written by a run with other {', '.join(changed)}; "
                              "give the same options, or another --out to start afresh")
    return [QualityRecord(**json.loads(line)) for line in lines[1:]]


def journal_machine(path: Path) -> dict | None:
    """The machine line of the run that started the journal at `path` (None: no journal, or one
    written before journals recorded it)."""
    if not path.is_file():
        return None
    first = next((line for line in path.read_text().splitlines() if line.strip()), None)
    return json.loads(first).get("machine") if first else None


async def run_quality(base_url: str, questions: list[dict], settings: tuple[str, ...], modes: tuple[str, ...],
                      collection: str, max_tokens: int, model: str | None = None, api_key: str | None = None,
                      progress: bool = True, journal: Path | None = None,
                      done: list[QualityRecord] | None = None, served: str | None = None,
                      machine: dict | None = None) -> list[QualityRecord]:
    """Every (mode, question, setting), "done" first within a question (the others compare to it).

    `journal`: append each question's records there as they are measured; a new journal starts
    with these parameters and `machine` (where the answers are measured). `done`: the records an
    earlier run wrote there (`read_journal`, which the caller checked against these parameters):
    only the (mode, question) pairs they lack are asked; without them the journal starts afresh."""
    from rouge_score.rouge_scorer import RougeScorer

    rouge = RougeScorer(["rougeL"], use_stemmer=True)

    def rouge_l(target: str, prediction: str) -> float | None:
        return rouge.score(target, prediction)["rougeL"].fmeasure if target and prediction else None

    params = journal_params(settings, modes, collection, max_tokens, served or model)
    ordered = tuple(params["settings"])
    records = list(done or [])
    if journal is not None and not records:
        journal.parent.mkdir(parents=True, exist_ok=True)
        journal.write_text(json.dumps({**params, "machine": machine}) + "\n")
    measured = {(r.mode, r.question) for r in records}
    full = {r.question: r.answer for r in records if r.mode == modes[0] and r.setting == "done"}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    per_question = len(ordered) + 1
    total = len(modes) * len(questions) * per_question
    async with httpx.AsyncClient(base_url=base_url, timeout=600, headers=headers) as http:
        with tqdm(total=total, desc="quality", unit="answer", disable=not progress) as bar:
            for mode in modes:
                for row in questions:
                    if (mode, row["id"]) in measured:
                        bar.update(per_question)
                        continue
                    await ask(http, row["question"], collection, mode, None, max_tokens, model)  # warm the cache
                    bar.update()
                    group = []
                    for setting in ordered:
                        a = await ask(http, row["question"], collection, mode, SETTINGS[setting], max_tokens, model)
                        if setting == "done" and mode == modes[0]:
                            full[row["id"]] = a.text
                        group.append(QualityRecord(
                            row["id"], row["kind"], mode, setting, a.finished, a.gate_reason, a.ttft_ms,
                            a.ttft_after_context_ms, a.context_events, evidence_in(a.shown, row["evidence"]),
                            rouge_l(full.get(row["id"], ""), a.text), rouge_l(row["answer"], a.text), a.text, a.error))
                        bar.update()
                    records += group
                    if journal is not None:  # a whole question at a time: a resumed run never holds half of one
                        with journal.open("a") as out:
                            out.writelines(json.dumps(asdict(r)) + "\n" for r in group)
    wanted = {(m, q["id"]) for m in modes for q in questions}
    return [r for r in records if r.setting in settings and (r.mode, r.question) in wanted]
