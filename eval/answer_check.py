"""The README's ten questions against a running server: are the sources relevant, do answers loop?

    python -m eval.answer_check --server http://127.0.0.1:8000 [--collection python-docs]

Each question of eval/questions/python_docs.jsonl marked `readme` is asked through the chat
endpoint with retrieval, twice: greedy (`temperature: 0`, no penalty) and with what a request
that names no sampling setting gets (the model's generation defaults; a fixed seed so that the
run repeats). Per answer it reports the sources the last ranking showed that come from a topic
holding the answer, whether a passage was shown twice, whether the evidence was shown, and
whether the answer loops (some run of 8 words appears twice in it).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from tqdm import tqdm

from eval.machine import machine_line
from eval.retrieval_recall import holds_evidence, load_questions
from retrievers.distinct import has_repeats

LOOP_WORDS = 8


@dataclass(frozen=True)
class Answer:
    question: str
    sampling: str
    relevant: int  # shown chunks from a topic that holds the answer
    shown: int
    repeats: bool
    evidence: bool
    loops: bool
    completion_tokens: int
    text: str


def loops(text: str, n: int = LOOP_WORDS) -> bool:
    words = re.findall(r"\w+", text.lower())
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


def ask(http: httpx.Client, row: dict, collection: str, sampling: dict, model: str | None) -> Answer:
    body = {"messages": [{"role": "user", "content": row["question"]}], "max_tokens": 200,
            "retrieval": {"collection": collection}, **sampling}
    if model:
        body["model"] = model
    response = http.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    out = response.json()
    chunks = out["streamrag"]["context"][-1]["chunks"] if out.get("streamrag", {}).get("context") else []
    topics = set(row["topics"])
    text = out["choices"][0]["message"]["content"]
    return Answer(row["id"], "greedy" if sampling.get("temperature") == 0 else "model defaults",
                  sum(Path(c["source"]).stem in topics for c in chunks), len(chunks),
                  has_repeats([c["text"] for c in chunks]), holds_evidence([c["text"] for c in chunks], row["evidence"]),
                  loops(text), out["usage"]["completion_tokens"], text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="a running streamrag server's base URL")
    parser.add_argument("--collection", default="python-docs")
    parser.add_argument("--model", default=None, help="the model name to send (default: the server's)")
    parser.add_argument("--out", type=Path, default=Path("results/answer_check.json"))
    args = parser.parse_args(argv)
    rows = load_questions(readme_only=True)
    samplings = [{"temperature": 0}, {"seed": 0}]
    answers = []
    with httpx.Client(base_url=args.server, timeout=600) as http:
        for row in tqdm(rows, desc="questions", unit="q"):
            answers.extend(ask(http, row, args.collection, s, args.model) for s in samplings)
    print(f"\n{'sampling':<16} {'answers':>7} {'relevant sources':>17} {'evidence shown':>15} "
          f"{'repeated passage':>17} {'answers that loop':>18}")
    for name in ("greedy", "model defaults"):
        group = [a for a in answers if a.sampling == name]
        print(f"{name:<16} {len(group):>7} {sum(a.relevant for a in group):>9} of {sum(a.shown for a in group):<5} "
              f"{sum(a.evidence for a in group):>15} {sum(a.repeats for a in group):>17} {sum(a.loops for a in group):>18}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine_line(), "server": args.server,
                                    "answers": [asdict(a) for a in answers]}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
