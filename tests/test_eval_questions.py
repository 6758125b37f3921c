"""The evaluation question set over the python-docs corpus is well formed and grounded.

`eval/questions/python_docs.jsonl` holds questions about CPython's language reference as
`pydoc_data.topics` ships it (one corpus document per topic). Each answerable question names
the topics that hold its answer and quotes short verbatim evidence from them, so retrieval can
be scored by topic and generation can be checked against the quotes. No model runs here.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

QUESTIONS = Path(__file__).resolve().parent.parent / "eval" / "questions" / "python_docs.jsonl"
FIELDS = {"id", "question", "kind", "topics", "evidence", "answer", "readme"}
MINIMUM = {"direct": 30, "refine": 20, "unanswerable": 10}
README_QUESTIONS = 10
MINIMUM_TOPICS = 35
UNANSWERED = "The context does not say."


@pytest.fixture(scope="module")
def topics() -> dict[str, str]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions split pydoc_data off the standard library
        pytest.skip("this Python has no pydoc_data")
    return topics


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()
    assert all(line.strip() for line in lines), "blank line in the question file"
    return [json.loads(line) for line in lines]


def test_ids_are_unique_and_sequential(rows):
    ids = [row["id"] for row in rows]
    assert ids == [f"q{n:03d}" for n in range(1, len(rows) + 1)]


def test_fields_and_kinds(rows):
    for row in rows:
        assert set(row) == FIELDS, row["id"]
        assert isinstance(row["question"], str) and row["question"].strip(), row["id"]
        assert isinstance(row["answer"], str) and row["answer"].strip(), row["id"]
        assert row["kind"] in MINIMUM, row["id"]
        assert isinstance(row["topics"], list) and isinstance(row["evidence"], list), row["id"]
        assert isinstance(row["readme"], bool), row["id"]
    kinds = Counter(row["kind"] for row in rows)
    for kind, minimum in MINIMUM.items():
        assert kinds[kind] >= minimum, f"{kind}: {kinds[kind]} < {minimum}"
    assert len({row["question"] for row in rows}) == len(rows), "duplicate question"


def test_exactly_ten_readme_questions_all_answerable(rows):
    showcase = [row for row in rows if row["readme"]]
    assert len(showcase) == README_QUESTIONS
    assert all(row["kind"] in ("direct", "refine") for row in showcase)


def test_topics_exist(rows, topics):
    for row in rows:
        unknown = [topic for topic in row["topics"] if topic not in topics]
        assert not unknown, f"{row['id']}: unknown topics {unknown}"
        assert len(set(row["topics"])) == len(row["topics"]), row["id"]


def test_evidence_is_verbatim_from_a_listed_topic(rows, topics):
    for row in rows:
        if row["kind"] == "unanswerable":
            continue
        assert row["topics"], row["id"]
        assert 1 <= len(row["evidence"]) <= 3, row["id"]
        for evidence in row["evidence"]:
            assert "\n" not in evidence, f"{row['id']}: newline in {evidence!r}"
            assert 25 <= len(evidence) <= 120, f"{row['id']}: length {len(evidence)} of {evidence!r}"
            assert any(evidence in topics[topic] for topic in row["topics"]), (
                f"{row['id']}: {evidence!r} is in none of {row['topics']}")


def test_unanswerable_questions_have_no_grounding(rows):
    for row in rows:
        if row["kind"] == "unanswerable":
            assert row["topics"] == [] and row["evidence"] == [], row["id"]
            assert row["answer"] == UNANSWERED, row["id"]
            assert row["readme"] is False, row["id"]


def test_questions_spread_over_many_topics(rows):
    distinct = {topic for row in rows for topic in row["topics"]}
    assert len(distinct) >= MINIMUM_TOPICS, f"only {len(distinct)} distinct topics"
