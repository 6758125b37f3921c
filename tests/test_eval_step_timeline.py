"""`eval.step_timeline`: a query's wait read from ledger step records (recorded ones, laid out here)."""

from __future__ import annotations

from eval.metrics import QueryResult
from eval.step_timeline import format_report, report, waits


def _result(query: str, session: str, t_last: float, t_first: float) -> QueryResult:
    return QueryResult(query, "streamrag", True, 100, 0.0, t_last, t_first, t_first, tail_tokens=40,
                       session_id=session)


STEPS = [
    {"step": 1, "t": 9.5, "scheduled": {"sr-a-1234": 128}, "complete": []},  # before the lead
    {"step": 2, "t": 9.9, "scheduled": {"sr-a-1234": 128, "sr-b-5678": 60}, "complete": []},
    {"step": 3, "t": 10.05, "scheduled": {"sr-b-5678": 564}, "complete": ["sr-b-5678"]},
    {"step": 4, "t": 11.2, "scheduled": {"sr-a-1234": 40}, "complete": ["sr-a-1234"]},
    {"step": 5, "t": 11.5, "scheduled": {"sr-c-0000": 12}, "complete": []},  # after the first token
]


def test_a_wait_lists_own_and_other_steps_from_the_last_event_to_the_first_token():
    seen = waits(_result("q1", "sr-a", 10.0, 11.4), STEPS)
    assert [s.at_ms for s in seen] == [-100.0, 50.0, 1200.0]
    assert [s.own for s in seen] == [128, 0, 40]
    assert seen[1].others == {"sr-b-5678": 564} and seen[1].others_complete == ("sr-b-5678",)
    assert seen[2].others == {} and seen[2].others_complete == ()


def test_the_report_puts_the_longest_wait_beyond_the_floor_first():
    results = [_result("q1", "sr-a", 10.0, 11.4), _result("q2", "sr-b", 9.95, 10.3)]
    out = report(results, {"q1": 0.2, "q2": 0.3}, STEPS)
    assert [q["query"] for q in out["queries"]] == ["q1", "q2"]  # 1,200 ms over its floor, then 50
    assert out["ttft_last_p50_ms"] == 875.0 and out["floor_p50_ms"] == 250.0
    assert "564*" in format_report(out)  # another session's complete context, marked
