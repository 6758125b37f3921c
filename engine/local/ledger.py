"""`SchedulerLedger`: what vLLM's scheduler reports about itself, written to a folder.

vLLM runs its scheduler in a separate engine-core process, out of reach of the session
objects. The streamrag scheduler (engine/vllm_scheduler.py) writes two files here:

    status.json   KV blocks in use and live requests, replaced atomically after every
                  schedule step, output update and abort;
    steps.jsonl   with EngineConfig.record_steps, one line per schedule step:
                  {"step": n, "scheduled": {vllm_request_id: tokens}, "t": when it was
                   scheduled (time.monotonic(), the clock of perf_counter on Linux, so it
                   lines up with the other process's timestamps), "schedule_us": its cost,
                   "waiting": queued requests, "complete": [ids whose context is complete]};
                  always, one line per scheduler event: {"replace": id, "keep": k, ...},
                  {"preempt": id, "mode": m, "tokens": n, ...}, {"resume": id, ...}.

These numbers are vLLM's own record of what it computed: the ground truth for tests of
overlap, recompute and leaks, independent of the session's arithmetic.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LedgerStatus:
    blocks_in_use: int  # excluding vLLM's reserved null block
    blocks_total: int
    requests: int
    seq: int  # increases with every write; lets readers wait for a fresh status


class SchedulerLedger:
    """Both sides of the ledger: the scheduler writes, the engine reads."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._status = self.folder / "status.json"
        self._steps = self.folder / "steps.jsonl"
        self._seq = 0
        self._step = 0

    # -- writer side (engine-core process) ------------------------------------------------
    def write_status(self, blocks_in_use: int, blocks_total: int, requests: int) -> None:
        self._seq += 1
        tmp = self._status.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(
            json.dumps(
                {"blocks_in_use": blocks_in_use, "blocks_total": blocks_total,
                 "requests": requests, "seq": self._seq}
            )
        )
        os.replace(tmp, self._status)  # readers never see a half-written file

    def append_step(self, scheduled: dict[str, int], **fields) -> None:
        self._step += 1
        if not scheduled:
            return
        with self._steps.open("a") as f:
            f.write(json.dumps({"step": self._step, "scheduled": scheduled, **fields}) + "\n")

    def append_event(self, event: dict) -> None:
        with self._steps.open("a") as f:
            f.write(json.dumps({"step": self._step, **event}) + "\n")

    # -- reader side (the process that owns the engine) -----------------------------------
    def read_status(self) -> LedgerStatus | None:
        try:
            data = json.loads(self._status.read_text())
        except FileNotFoundError:
            return None
        return LedgerStatus(**data)

    def scheduled_tokens(self, external_id: str) -> list[int]:
        """Tokens vLLM scheduled for a request, step by step (prefill chunks and decodes).

        vLLM suffixes each external request id with "-" and 8 random characters.
        """
        counts: list[int] = []
        for record in self._records():
            for request_id, n in record.get("scheduled", {}).items():
                if _belongs(request_id, external_id):
                    counts.append(n)
        return counts

    def replaces(self, external_id: str) -> list[dict]:
        """The replaces the scheduler applied to a session's request, in order."""
        return self.events("replace", external_id)

    def events(self, kind: str, external_id: str | None = None) -> list[dict]:
        """Scheduler events of one kind ("replace", "preempt", "resume"), optionally of one session."""
        return [r for r in self._records()
                if kind in r and (external_id is None or _belongs(r[kind], external_id))]

    def step_records(self) -> list[dict]:
        """Every recorded schedule step (with `schedule_us` and `waiting` at that step)."""
        return [r for r in self._records() if "scheduled" in r]

    def _records(self) -> list[dict]:
        if not self._steps.exists():
            return []
        return [json.loads(line) for line in self._steps.read_text().splitlines()]


def _belongs(vllm_request_id: str, external_id: str) -> bool:
    # vLLM appends "-" and 8 random characters; a reopened session adds ".rN" before that.
    base = vllm_request_id.rsplit("-", 1)[0]
    return base == external_id or base.startswith(external_id + ".r")
