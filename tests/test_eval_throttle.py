"""eval/throttle.py: every process of a command, children included, runs under its own CPU
quota, and the groups are gone afterwards. Checked through the quota each process reads back
(eval.machine.cpu_quota, what every benchmark records), never through timings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest

from eval.throttle import CPU_ROOT

pytestmark = pytest.mark.skipif(
    not (CPU_ROOT / "cpu.cfs_quota_us").exists() or not os.access(CPU_ROOT, os.W_OK),
    reason="needs the cgroup v1 cpu controller and the right to create groups (root)")

# Waits (bounded) until the throttle has placed it, then reports its quota and its child's.
PROBE = """
import subprocess, sys, time
from eval.machine import cpu_quota
for _ in range(300):
    if cpu_quota() is not None:
        break
    time.sleep(0.1)
child = subprocess.run([sys.executable, "-c", '''
import time
from eval.machine import cpu_quota
for _ in range(300):
    if cpu_quota() is not None:
        break
    time.sleep(0.1)
print(cpu_quota())
'''], capture_output=True, text=True, check=True).stdout.strip()
print(cpu_quota(), child)
"""


def test_each_process_of_the_command_gets_the_fraction_and_the_groups_go():
    out = subprocess.run([sys.executable, "-m", "eval.throttle", "--fraction", "0.25", "--", sys.executable, "-c",
                          PROBE], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["0.25", "0.25"]
    assert not (CPU_ROOT / "streamrag-throttle").exists()


def test_a_fraction_out_of_range_is_refused():
    out = subprocess.run([sys.executable, "-m", "eval.throttle", "--fraction", "2", "--", "true"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "--fraction" in out.stderr


def test_a_signal_to_the_throttle_ends_the_command_and_the_groups_go():
    # The command prints its pid once it is under a quota, then waits to be ended.
    waiter = ("import os, time\nfrom eval.machine import cpu_quota\n"
              "while cpu_quota() is None:\n    time.sleep(0.05)\n"
              "print(os.getpid(), flush=True)\ntime.sleep(120)\n")
    throttle = subprocess.Popen([sys.executable, "-m", "eval.throttle", "--", sys.executable, "-c", waiter],
                                stdout=subprocess.PIPE, text=True)
    command = psutil.Process(int(throttle.stdout.readline()))
    try:
        throttle.send_signal(signal.SIGTERM)
        throttle.wait(timeout=60)
        command.wait(timeout=10)  # raises TimeoutExpired if the command outlived the throttle
    finally:
        if throttle.poll() is None:
            throttle.kill()
        if command.is_running():  # only where the test fails: nothing may outlive it
            command.kill()
    assert not (CPU_ROOT / "streamrag-throttle").exists()
