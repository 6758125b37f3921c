"""The quality bench (`streamrag bench --quality`) on the tiny model over three questions."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict

import pytest

from app.cli import main as cli_main
from eval.metrics import percentile
from eval.quality import (
    JOURNAL,
    QUICK_SETTINGS,
    QualityRecord,
    evidence_in,
    journal_params,
    load_questions,
    run_quality,
)
from eval.quality_report import build_report, format_table, pareto, points


async def test_every_question_finishes_under_every_setting(app_server, tmp_path):
    questions = load_questions(3)
    records = await run_quality(app_server, questions, QUICK_SETTINGS, ("update", "append"), "python-docs",
                                max_tokens=6, progress=False)
    assert len(records) == 3 * len(QUICK_SETTINGS) * 2
    assert all(r.finished and r.error is None for r in records), [r for r in records if not r.finished]
    assert {(r.question, r.mode, r.setting) for r in records} == {
        (q["id"], m, s) for q in questions for m in ("update", "append") for s in QUICK_SETTINGS}
    for r in records:
        assert r.context_events >= 1 and r.ttft_ms is not None and r.ttft_ms > 0
        assert r.gate_reason in ("done", "criteria", "deadline")
        assert r.evidence_at_gate is not None  # the README questions are all answerable
        if r.setting == "done":
            assert r.gate_reason == "done"
            if r.mode == "update":
                assert r.rouge_full in (None, 1.0)  # the whole-context answer every setting is compared to
    report = build_report(records, {"model": "tiny", "questions": 3})
    rows = report["settings"]
    assert [(r["mode"], r["setting"]) for r in rows] == [(m, s) for m in ("update", "append") for s in QUICK_SETTINGS]
    assert all(r["finished"] == r["answers"] == 3 for r in rows)
    knees = [p for p in report["points"] if p["knee"]]
    assert len(knees) == 1 and knees[0]["on_front"] and report["knee"]["settings"] == knees[0]["settings"]
    assert {r["setting"] for r in rows if r["knee"]} == set(knees[0]["settings"])  # each setting is in its point
    assert sorted(s for p in report["points"] for s in p["settings"]) == sorted(r["setting"] for r in rows)
    assert "knee" in format_table(report)


def test_the_front_and_its_knee():
    rows = [{"mode": "u", "setting": s, "ttft_p50_ms": t, "rouge_full": q}
            for s, t, q in (("fast", 100, 0.5), ("knee", 120, 0.95), ("slow", 400, 1.0), ("worse", 300, 0.6))]
    front, knee = pareto(rows)
    assert [r["setting"] for r in front] == ["fast", "knee", "slow"] and knee["setting"] == "knee"
    assert pareto([]) == ([], None)


def test_a_slower_point_is_the_knee_when_it_buys_more_of_the_range_than_it_costs():
    def point(setting, ttft, quality):
        return {"mode": "u", "settings": [setting], "ttft_p50_ms": ttft, "rouge_full": quality}

    # 4% slower for the whole range: worth it. Twice as slow for it: not.
    assert pareto([point("early", 1000, 0.4), point("done", 1040, 1.0)])[1]["settings"] == ["done"]
    assert pareto([point("early", 1000, 0.4), point("done", 2100, 1.0)])[1]["settings"] == ["early"]


def _record(setting, question, answer, ttft, mode="update"):
    return QualityRecord(question=question, kind="direct", mode=mode, setting=setting, finished=True,
                         gate_reason="done", ttft_ms=ttft, ttft_after_context_ms=ttft, context_events=1,
                         evidence_at_gate=True, rouge_full=1.0 if answer == "a" else 0.5, rouge_reference=0.2,
                         answer=answer, error=None)


def test_settings_that_gave_the_same_answers_are_one_point_with_their_ttfts_pooled():
    records = [_record("done", "q1", "a", 100), _record("done", "q2", "a", 300),
               _record("max_wait_s=0.5", "q1", "a", 110), _record("max_wait_s=0.5", "q2", "a", 290),
               _record("min_chunks=1", "q1", "b", 90), _record("min_chunks=1", "q2", "a", 95),
               _record("done", "q1", "a", 80, mode="append"), _record("done", "q2", "a", 85, mode="append")]
    pts = points(records)
    assert [(p["mode"], p["settings"]) for p in pts] == [
        ("update", ["done", "max_wait_s=0.5"]), ("update", ["min_chunks=1"]), ("append", ["done"])]
    assert pts[0]["answers"] == 4 and pts[0]["ttft_p50_ms"] == percentile([100, 300, 110, 290], 50)
    report = build_report(records, {})
    assert [r["setting"] for r in report["settings"]] == ["done", "max_wait_s=0.5", "min_chunks=1", "done"]


def test_evidence_is_matched_across_line_breaks():
    assert evidence_in(("the finally\n   clause runs",), ["finally clause runs"]) is True
    assert evidence_in(("nothing here",), ["finally clause"]) is False
    assert evidence_in(("anything",), []) is None


async def test_the_command_writes_table_json_and_plot(app_server, tmp_path, capsys):
    argv = ["bench", "--quality", "--server", app_server, "--questions", "2", "--settings", "done", "min_chunks=1",
            "--modes", "update", "--max-tokens", "4", "--out", str(tmp_path), "--no-progress"]
    assert await asyncio.to_thread(cli_main, argv) == 0
    report = json.loads((tmp_path / "quality.json").read_text())
    assert report["meta"]["machine"]["logical_cpus"] >= 1 and report["meta"]["questions"] == 2
    assert len(report["records"]) == 4 and (tmp_path / "quality.png").stat().st_size > 0
    assert "min_chunks=1" in capsys.readouterr().out


async def test_an_interrupted_run_resumes_without_asking_twice(app_server, tmp_path, capsys):
    def argv(questions: int, *extra: str, max_tokens: int = 4) -> list[str]:
        return ["bench", "--quality", "--server", app_server, "--questions", str(questions), "--settings", "done",
                "--modes", "update", "--max-tokens", str(max_tokens), "--out", str(tmp_path), "--no-progress", *extra]

    assert await asyncio.to_thread(cli_main, argv(1)) == 0  # as if stopped after the first question
    first = json.loads((tmp_path / "quality.json").read_text())["records"]
    assert await asyncio.to_thread(cli_main, argv(2, "--resume")) == 0
    assert "resuming from" in capsys.readouterr().err
    records = json.loads((tmp_path / "quality.json").read_text())["records"]
    assert [r["question"] for r in records] == [first[0]["question"], load_questions(2)[1]["id"]]
    assert records[0] == first[0]  # read back from the journal, not asked again
    journal = (tmp_path / JOURNAL).read_text().splitlines()
    assert len(journal) == 1 + 2 and json.loads(journal[0])["max_tokens"] == 4

    started_on = json.loads(journal[0])["machine"]  # where the answers were measured
    assert started_on["cpu_model"] and started_on["busy_poll"] is None  # --server: the server's own

    (tmp_path / "quality.json").unlink()  # a finished journal: the report again, nothing asked
    assert await asyncio.to_thread(cli_main, argv(2, "--resume")) == 0
    assert "reporting without asking again" in capsys.readouterr().err
    report = json.loads((tmp_path / "quality.json").read_text())
    assert report["records"] == records
    assert report["meta"]["machine"] == started_on and "resumed_on" not in report["meta"]
    assert (tmp_path / JOURNAL).read_text().splitlines() == journal

    # A journal from another machine: its report says where the answers came from, and where now.
    header = {**json.loads(journal[0]), "machine": {**started_on, "cpu_model": "Another CPU"}}
    (tmp_path / JOURNAL).write_text("\n".join([json.dumps(header), *journal[1:]]) + "\n")
    assert await asyncio.to_thread(cli_main, argv(2, "--resume")) == 0
    out = capsys.readouterr()
    assert "started on another machine" in out.err
    assert out.out.startswith("machine: Another CPU") and f"resumed on another: machine: {started_on['cpu_model']}" in out.out
    meta = json.loads((tmp_path / "quality.json").read_text())["meta"]
    assert meta["machine"]["cpu_model"] == "Another CPU" and meta["resumed_on"] == started_on

    assert await asyncio.to_thread(cli_main, argv(2, "--resume", max_tokens=8)) == 2
    assert "max_tokens" in capsys.readouterr().err  # a run with other options does not join the journal


@pytest.mark.parametrize("argv", [["bench"], ["bench", "--quality", "--settings", "nope", "--server", "http://x"]])
def test_bad_invocations_say_what_to_give(argv, capsys):
    assert cli_main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_a_clean_cache_gets_the_packaged_model_before_the_bench_needs_it(tmp_path, monkeypatch, capsys):
    """From a clean clone `make serve` has not run: the bench converts the default model from its
    installed package itself (here before reporting a finished journal, so no server starts)."""
    monkeypatch.setenv("STREAMRAG_CACHE_DIR", str(tmp_path / "cache"))
    question = load_questions(1)[0]["id"]
    records = [QualityRecord(question=question, kind="direct", mode="update", setting="done", finished=True,
                             gate_reason="done", ttft_ms=1.0, ttft_after_context_ms=1.0, context_events=1,
                             evidence_at_gate=True, rouge_full=1.0, rouge_reference=0.5, answer="a", error=None)]
    params = journal_params(("done",), ("update",), "python-docs", 4, "--model default")
    (tmp_path / JOURNAL).write_text("\n".join(json.dumps(x) for x in [params, *map(asdict, records)]) + "\n")
    argv = ["bench", "--quality", "--resume", "--questions", "1", "--settings", "done", "--modes", "update",
            "--max-tokens", "4", "--out", str(tmp_path), "--no-progress"]
    assert cli_main(argv) == 0
    assert (tmp_path / "cache" / "models" / "smollm2-135m-instruct" / "config.json").is_file()
    assert "reporting without asking again" in capsys.readouterr().err
