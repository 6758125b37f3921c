"""`streamrag bench --http-overhead` on the tiny model: one engine of its own, reached straight and
through the app on a real uvicorn; the report's shape, never its times."""

from __future__ import annotations

import json

from app.cli import main as cli_main


def test_the_bench_measures_both_paths_and_writes_its_report(tmp_path):
    argv = ["bench", "--http-overhead", "--model", "tiny", "--prompt-tokens", "48", "--max-tokens", "3",
            "--repeats", "2", "--out", str(tmp_path)]
    assert cli_main(argv) == 0
    report = json.loads((tmp_path / "http-overhead.json").read_text())
    assert report["args"] == {"model": "tiny", "prompt_tokens": 48, "max_tokens": 3, "repeats": 2, "seed": 0}
    assert set(report["summary"]) == set(report["runs"]) == {"in-process", "http+sse"}
    for runs in report["runs"].values():
        assert len(runs) == 2 and all(ttft > 0 and tpot >= 0 for ttft, tpot in runs)
    assert report["machine"]["logical_cpus"] >= 1
