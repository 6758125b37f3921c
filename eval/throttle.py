"""Run a command as if on a slower machine: every process of it held to a fraction of a core.

    python -m eval.throttle --fraction 0.5 -- streamrag bench --workload crawler --quick   # as root

A benchmark's ratios (streamrag against one-shot at the same fraction of capacity) should be a
property of the project, not of the machine it ran on. A second machine is the best check;
this is the next best: the same machine made uniformly slower. Each process of the command's
tree (the bench, vLLM's engine core, its worker) is moved into a cgroup of its own whose CPU
quota is `fraction` of one core per `period_ms`, so every single-threaded process runs at that
fraction of its speed, the way a slower core would run it. (One cgroup for the whole tree
would not do: a process alone on the CPU would still get a full core.) Threads a process
starts later are in its cgroup; child processes start in their parent's and are moved to their
own within `--poll-s`.

Needs the cgroup v1 `cpu` controller mounted at /sys/fs/cgroup/cpu and the right to create
groups there (root). The groups are removed when the command ends.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

CPU_ROOT = Path("/sys/fs/cgroup/cpu")


class Throttle:
    """Cgroups under `CPU_ROOT/name`, one per process, each at `fraction` of a core."""

    def __init__(self, fraction: float, period_ms: int = 10, name: str = "streamrag-throttle") -> None:
        if not 0.05 <= fraction <= 1.0:
            raise ValueError(f"--fraction must be in [0.05, 1], got {fraction}")
        if not (CPU_ROOT / "cpu.cfs_quota_us").exists():
            raise RuntimeError(f"no cgroup v1 cpu controller at {CPU_ROOT}: cannot throttle here")
        self.period_us = period_ms * 1000
        self.quota_us = int(fraction * self.period_us)
        self.root = CPU_ROOT / name
        self.placed: set[int] = set()

    def place(self, pid: int) -> None:
        group = self.root / str(pid)
        group.mkdir(parents=True, exist_ok=True)
        (group / "cpu.cfs_period_us").write_text(str(self.period_us))
        (group / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        (group / "cgroup.procs").write_text(str(pid))
        self.placed.add(pid)

    def place_tree(self, root: psutil.Process) -> None:
        for process in [root, *root.children(recursive=True)]:
            if process.pid not in self.placed:
                try:
                    self.place(process.pid)
                except (OSError, psutil.NoSuchProcess):
                    pass  # ended meanwhile

    def remove(self) -> None:
        """Move what is left back to the root group, then delete the groups (empty ones only)."""
        for group in sorted(self.root.glob("*"), reverse=True):
            if not group.is_dir():
                continue
            for pid in (group / "cgroup.procs").read_text().split():
                try:
                    (CPU_ROOT / "cgroup.procs").write_text(pid)
                except OSError:
                    pass
            group.rmdir()
        if self.root.exists():
            self.root.rmdir()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fraction", type=float, default=0.5, help="share of one core each process gets (default 0.5)")
    p.add_argument("--period-ms", type=int, default=10, help="CFS period: the quota refills this often (default 10)")
    p.add_argument("--poll-s", type=float, default=0.2, help="how often new child processes are placed")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = p.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the command to run after --")
    try:
        throttle = Throttle(args.fraction, args.period_ms)
    except (ValueError, RuntimeError) as error:
        p.error(str(error))
    child = subprocess.Popen(command)
    # A signal that ends the throttle is passed on to the command, and the throttle waits for
    # it: dying at once would leave the command running, still in its cgroups.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    try:
        root = psutil.Process(child.pid)
        while child.poll() is None:
            try:
                throttle.place_tree(root)
            except psutil.NoSuchProcess:
                break
            time.sleep(args.poll_s)
        return child.wait()
    finally:
        if child.poll() is None:
            child.terminate()
            child.wait(timeout=60)
        throttle.remove()


if __name__ == "__main__":
    sys.exit(main())
