"""`streamrag corpus` and `streamrag ingest`, run through their parsers as the CLI runs them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from app.commands import corpus, ingest
from tests.retrievers_fixtures import SMALL_TOPICS


def run(*argv: str) -> int:
    # Only the two commands under test: the others belong to other modules and may not exist yet.
    parser = argparse.ArgumentParser(prog="streamrag")
    subparsers = parser.add_subparsers(dest="command", required=True)
    corpus.register(subparsers)
    ingest.register(subparsers)
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_corpus_writes_the_python_docs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("corpus", "python-docs", "--data-dir", str(tmp_path)) == 0
    files = list((tmp_path / "corpus" / "python-docs").glob("*.md"))
    assert len(files) >= 70 and "wrote" in capsys.readouterr().out
    assert run("corpus", "python-docs", "--out", str(tmp_path / "elsewhere")) == 0
    assert len(list((tmp_path / "elsewhere").glob("*.md"))) == len(files)


def test_an_unknown_corpus_is_an_error_naming_the_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("corpus", "wikipedia", "--out", str(tmp_path)) == 2
    assert "python-docs" in capsys.readouterr().err


def test_ingest_shows_progress_then_reingests_nothing(
    tmp_path: Path, small_docs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")
    assert run("ingest", str(small_docs), "--collection", "docs", "--data-dir", data) == 0
    out, err = capsys.readouterr()
    assert "embedding into docs" in err and "100%" in err  # the progress bar
    assert f"ingested {len(SMALL_TOPICS)} documents into 'docs'" in out and "0 unchanged" in out
    assert (tmp_path / "data" / "qdrant").is_dir()

    assert run("ingest", str(small_docs), "--collection", "docs", "--data-dir", data, "--no-progress") == 0
    out, err = capsys.readouterr()
    assert " 0 embedded" in out and "embedding into" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--chunk-overlap", "600"], "chunk overlap"),
        (["--shards", "0"], "--shards"),
        (["--embedding-model", "nope"], "embedding model"),
    ],
)
def test_ingest_errors_name_the_setting(
    tmp_path: Path, small_docs: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert run("ingest", str(small_docs), "--collection", "c", "--data-dir", str(tmp_path), *extra) == 2
    assert message in capsys.readouterr().err


def test_ingest_of_a_missing_path_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(
            "ingest",
            str(tmp_path / "missing"),
            "--collection",
            "c",
            "--data-dir",
            str(tmp_path),
            "--no-progress",
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
