"""engine/local/lifeline.py: a process started by multiprocessing, the way vLLM starts its engine
core, does not outlive its parent, also where the parent died before `die_with_parent()` ran
(vLLM builds the scheduler, which makes the call, only after loading the model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

# The parent starts a child the way vLLM starts its engine core and prints the child's pid.
# "orphan": the parent exits at once, and the child makes the call once its parent is gone.
# "live": the parent waits for the child, which makes the call at once. The child writes
# "survived" after the call.
PARENT = """
import multiprocessing, os, sys, time

def child(flag, orphan):
    started_by = multiprocessing.parent_process().pid
    while orphan and os.getppid() == started_by:
        time.sleep(0.05)
    from engine.local.lifeline import die_with_parent
    die_with_parent()
    open(flag, "w").write("survived")

if __name__ == "__main__":
    flag, mode = sys.argv[1], sys.argv[2]
    process = multiprocessing.get_context("spawn").Process(target=child, args=(flag, mode == "orphan"))
    process.start()
    print(process.pid, flush=True)
    if mode == "orphan":
        os._exit(0)  # no join, no atexit: the child is orphaned
    process.join(60)
"""


def run_parent(tmp_path: Path, mode: str) -> bool:
    """Whether the child lived past its `die_with_parent()` call."""
    script, flag = tmp_path / "parent.py", tmp_path / "survived"
    script.write_text(PARENT)
    out = subprocess.run([sys.executable, str(script), str(flag), mode], capture_output=True, text=True,
                         timeout=90, cwd=Path(__file__).resolve().parents[1], check=True)
    try:
        child = psutil.Process(int(out.stdout.strip()))
    except psutil.NoSuchProcess:
        return flag.exists()  # already ended
    try:
        child.wait(timeout=60)
    except psutil.TimeoutExpired:
        child.kill()
        raise
    return flag.exists()


def test_a_child_whose_parent_died_before_the_call_ends(tmp_path: Path):
    assert run_parent(tmp_path, "orphan") is False


def test_a_child_whose_parent_lives_goes_on(tmp_path: Path):
    assert run_parent(tmp_path, "live") is True
