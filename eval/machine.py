"""`CpuMeter`: how much of the machine's CPU a replay pass got, and how much others took.

On a 2-core machine shared with other jobs, a pass that ran while someone else's tests ran
is slower for reasons that have nothing to do with the system measured. Each pass therefore
records the CPU time of this process and its children (vLLM's engine core and worker) and the
machine's total busy time over the same wall time:

    ours   = CPU seconds of our process tree / (wall seconds x cores)
    others = (busy CPU seconds of the machine - ours) / (wall seconds x cores)

`wait_for_quiet` holds a pass back (bounded) until other jobs leave the CPU mostly idle.
`machine_line` and `engine_binding` record what a result depends on: the CPU model, its
vector ISA, the cores, and the cores each engine's processes were allowed to run on.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class CpuShare:
    wall_s: float
    ours: float  # share of all cores' time used by this process tree
    others: float  # share used by everything else on the machine


def _busy_s() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def cpu_seconds_by_name(process: psutil.Process) -> dict[str, float]:
    """CPU seconds so far of `process` and every process under it, summed by process name
    (vLLM names its own: "VLLM::EngineCore", "VLLM::Worker")."""
    out: dict[str, float] = {}
    for p in [process, *process.children(recursive=True)]:
        try:
            name, c = p.name(), p.cpu_times()
        except psutil.NoSuchProcess:
            continue  # a child that ended counts no more; its time is in the machine's busy total
        out[name] = out.get(name, 0.0) + c.user + c.system
    return out


def _ours_s(process: psutil.Process) -> float:
    return sum(cpu_seconds_by_name(process).values())


class CpuMeter:
    """`start()` then `stop()` -> CpuShare over the interval."""

    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self._cores = psutil.cpu_count() or 1
        self._t = self._busy = self._ours = 0.0

    def start(self) -> None:
        self._t, self._busy, self._ours = time.perf_counter(), _busy_s(), _ours_s(self._process)

    def stop(self) -> CpuShare:
        wall = time.perf_counter() - self._t
        capacity = max(1e-9, wall * self._cores)
        ours = max(0.0, _ours_s(self._process) - self._ours)
        busy = max(0.0, _busy_s() - self._busy)
        return CpuShare(round(wall, 2), round(ours / capacity, 3), round(max(0.0, busy - ours) / capacity, 3))


async def wait_for_quiet(max_others: float = 0.1, window_s: float = 5.0, timeout_s: float = 0.0) -> float:
    """Wait until other jobs used < `max_others` of the CPU over one `window_s` window, for
    at most `timeout_s` seconds (0: do not wait). Returns the seconds waited."""
    started = time.perf_counter()
    meter = CpuMeter()
    while time.perf_counter() - started < timeout_s:
        meter.start()
        await asyncio.sleep(window_s)
        if meter.stop().others < max_others:
            break
    return round(time.perf_counter() - started, 1)


ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")  # what vLLM's CPU kernels use


def machine_line() -> dict:
    """The machine a result was measured on: CPU model, ISA flags that matter, cores."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"cpu_model": fields.get("model name") or platform.processor() or platform.machine(),
            "isa": [f for f in ISA_FLAGS if f in flags], "logical_cpus": psutil.cpu_count(),
            "physical_cores": psutil.cpu_count(logical=False), "allowed_cpus": sorted(os.sched_getaffinity(0)),
            "cpu_quota": cpu_quota(), "python": platform.python_version()}


def cpu_quota() -> float | None:
    """The share of one core this process's cgroup may use (cgroup v1 `cpu` or v2 `cpu.max`;
    `python -m eval.throttle` sets one to emulate a slower machine); None when unlimited."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "cpu" in controllers.split(","):  # v1
                group = Path("/sys/fs/cgroup/cpu") / path.lstrip("/")
                quota = int((group / "cpu.cfs_quota_us").read_text())
                return None if quota < 0 else round(quota / int((group / "cpu.cfs_period_us").read_text()), 3)
            if controllers == "":  # v2
                quota, period = (Path("/sys/fs/cgroup") / path.lstrip("/") / "cpu.max").read_text().split()
                return None if quota == "max" else round(int(quota) / int(period), 3)
    except (OSError, ValueError):
        pass
    return None


def engine_binding() -> list[dict]:
    """Each child process of this one (vLLM's engine core and worker): its name, its thread
    count, and which cores its threads may run on ({"0": 3} = three threads on core 0), read
    from /proc, so that it shows the binding vLLM really applied."""
    out = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            allowed: dict[str, int] = {}
            for tid in os.listdir(f"/proc/{child.pid}/task"):
                status = Path(f"/proc/{child.pid}/task/{tid}/status").read_text()
                cores = next(line.split(":", 1)[1].strip() for line in status.splitlines()
                             if line.startswith("Cpus_allowed_list"))
                allowed[cores] = allowed.get(cores, 0) + 1
            out.append({"name": child.name(), "threads": sum(allowed.values()), "cores": allowed})
        except (psutil.NoSuchProcess, FileNotFoundError, StopIteration):
            continue  # a process that ended meanwhile
    return out
