"""`StreamScheduler`: vLLM's scheduler with streamrag's hooks. Written for vLLM 0.32.0.

The key idea of vLLM's v1 scheduler holds throughout: there is no prefill or decode phase; a
request's `num_computed_tokens` catches up with its known tokens. Appending streamed prompt
tokens raises the target; a replace lowers both and gives back the blocks past what is kept.

streamrag installs this class through the engine argument `scheduler_cls`, which vLLM resolves
by name inside its engine-core process (so it lives in an importable module). Each hook below
does one thing and hands the work to the module of that concern:

    _update_request_as_session   a replace marker -> replace.py (LCP cut); a preempted
                                 session continues from its old frontier
    schedule                     admission.py (order, set-aside) around vLLM's own schedule,
                                 then preemption.py (KV back from waiting sessions)
    add_request / _free_request  per-request metadata the policies read (policies.py)
    every hook                   the ledger (ledger.py): blocks in use, steps, events

Every read or write of vLLM's private state goes through vllm_internals.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from vllm.v1.core.sched.scheduler import Scheduler

import engine.local.admission as admission
import engine.local.preemption as preemption
import engine.local.vllm_internals as vi
from engine.local.cost_model import CostModel
from engine.local.ledger import SchedulerLedger
from engine.local.lifeline import die_with_parent
from engine.local.markers import CONFIG_KEY, read_markers
from engine.local.options import SchedulerOptions
from engine.local.policies import Candidate, priority
from engine.local.replace import apply_replace

SCHEDULER_CLS = "engine.local.scheduler.StreamScheduler"


@dataclass
class RequestMeta:
    """What the policies know of a request beyond vLLM's own fields (monotonic seconds)."""

    arrival: float
    last_chunk: float
    complete: bool  # the context is complete: the piece with the closing template is in


class StreamScheduler(Scheduler):
    """vLLM's scheduler plus: the ledger, the replace (update mode), a policy order over
    running and waiting requests, and preemption of waiting sessions."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        die_with_parent()  # built in vLLM's engine-core process: it must not outlive the server
        if vi.kv_cache_groups(self) != 1:  # cut_blocks and held_blocks edit one group's block list
            raise RuntimeError(f"streamrag needs one KV cache group, vLLM made {vi.kv_cache_groups(self)}; "
                               "start it with disable_hybrid_kv_cache_manager=True")
        self._options = SchedulerOptions.from_dict((self.vllm_config.additional_config or {}).get(CONFIG_KEY, {}))
        opts = self._options
        if not opts.busy_poll:  # this process's side of the queues to the worker (vllm_internals)
            vi.stop_busy_polling()
        self._ledger = SchedulerLedger(opts.ledger_dir) if opts.ledger_dir else None
        self._cost = CostModel.load(opts.cost_model) if opts.cost_model else CostModel.recompute_only()
        self._meta: dict[str, RequestMeta] = {}
        # Waiting sessions whose blocks were taken back, until scheduled again: id -> (when, tokens).
        self._preempted: dict[str, tuple[float, int]] = {}
        self._last_status: tuple | None = None
        self._write_status()

    # -- vLLM hooks -----------------------------------------------------------------------
    def add_request(self, request) -> None:
        existing = self.requests.get(request.request_id)
        if existing is None:
            now = time.monotonic()
            _, final = read_markers(vi.extra_args(request))
            self._meta[request.request_id] = RequestMeta(now, now, final or not request.resumable)
        elif not vi.is_paused(existing) and (meta := self._meta.get(request.request_id)) is not None:
            # vLLM queues this input behind the piece it has not finished yet. If it completes
            # the context, that piece is now on the answer's path: rank it so at once.
            _, final = read_markers(vi.extra_args(request))
            meta.complete = meta.complete or final
        super().add_request(request)

    def schedule(self, *args, **kwargs):
        started = time.perf_counter()
        aside = (admission.set_aside(self, self._rank, self._complete, self._options.isolate_final,
                                     self._options.serial_finals)
                 if self._options.policy != "vllm" else [])
        try:
            output = super().schedule(*args, **kwargs)
        finally:
            admission.put_back(aside)
        scheduled = output.num_scheduled_tokens
        if self._preempted:
            self._note_resumed(scheduled)
        if self._options.preempt_idle:
            for p in preemption.preempt_for_starved(self, self._options.policy, scheduled, self._candidate):
                self._preempted[p.request_id] = (time.monotonic(), p.tokens)
                self._event("preempt", p.request_id, mode=self._cost.mode(p.tokens), tokens=p.tokens,
                            for_request=p.for_request)
        if self._ledger is not None and self._options.record_steps:
            self._ledger.append_step(dict(scheduled), t=round(time.monotonic(), 6),
                                     schedule_us=round((time.perf_counter() - started) * 1e6, 1),
                                     waiting=sum(len(q) for q in vi.waiting_queues(self)),
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
        keep, final = read_markers(vi.extra_args(update))
        if (meta := self._meta.get(session.request_id)) is not None:
            meta.last_chunk, meta.complete = time.monotonic(), final
        if keep is not None:
            done = apply_replace(self, session, update, keep)
            self._event("replace", session.request_id, keep=done.keep, cut=done.cut, computed=done.computed,
                        freed_blocks=done.freed_blocks)
        elif session.request_id in self._preempted and session.num_computed_tokens == 0:
            # vLLM continues a session from num_computed_tokens, which the preemption zeroed:
            # continue from the old frontier, then zero it again so that the whole prompt is
            # recomputed or, where its blocks were not reused, found in the prefix cache.
            session.num_computed_tokens = len(session.prompt_token_ids)
            super()._update_request_as_session(session, update)
            session.num_computed_tokens = 0
            return
        super()._update_request_as_session(session, update)

    # -- policies -------------------------------------------------------------------------
    def _candidate(self, request) -> Candidate:
        meta = self._meta.get(request.request_id) or RequestMeta(0.0, 0.0, True)
        return Candidate(request.request_id, meta.arrival, meta.last_chunk, meta.complete, request.num_computed_tokens)

    def _complete(self, request_id: str) -> bool:
        meta = self._meta.get(request_id)
        return True if meta is None else meta.complete

    def _rank(self, request) -> tuple:
        return priority(self._options.policy, self._candidate(request))

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
        in_use, total = vi.blocks_in_use(self)
        status = (in_use, total, len(self.requests))
        if status != self._last_status:  # a waiting engine steps in a busy loop
            self._last_status = status
            self._ledger.write_status(*status)
