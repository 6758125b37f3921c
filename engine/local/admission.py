"""Admission: what vLLM's schedule loop may see this step, in what order.

Under a policy other than "vllm", before each of vLLM's `schedule()` calls the scheduler takes
out of its queues what the loop must not see, and puts it back afterwards:

  - paused sessions (waiting for their next piece): vLLM's loop would only skip them, one
    by one, every step;
  - ready requests whose blocks cannot be had this step: vLLM's loop stops at the first
    request it cannot allocate, so one big request would hold up every smaller one behind it
    (a request set aside for blocks gets them from lower ones, see preemption.py);
  - with `isolate_final`, partial contexts while a complete one waits for prefill: they are
    off the TTFT path, and on CPU a step's time grows with every token in it;
  - with `serial_finals`, every complete context but the first (or all, while one is still
    mid-prefill): for the same reason, complete contexts prefilled together would all wait
    for the largest.

What stays is sorted by the policy, and vLLM's running list too (vLLM preempts from its tail):
the decision is the order, the acquisition (allocation, vLLM's own preemption) stays vLLM's.
"""

from __future__ import annotations

from collections.abc import Callable

import engine.local.vllm_internals as vi


def set_aside(sched, rank: Callable, complete: Callable[[str], bool], isolate_final: bool,
              serial_finals: bool = False) -> list[tuple]:
    """Order the queues for this step and take out what must not be scheduled in it.

    `rank(request)` is the policy's sort key, `complete(request_id)` whether its context is
    complete. Returns (queue, request) pairs for `put_back` after vLLM's schedule.
    """
    sched.running.sort(key=rank)
    aside, ready = [], []
    for queue in vi.waiting_queues(sched):
        for request in queue:
            if vi.is_paused(request):
                aside.append((queue, request))
            else:
                ready.append((rank(request), queue, request))
    ready.sort(key=lambda item: item[0])
    # Blocks left for the waiting ones once running requests have what they need (an upper
    # bound on their need: prefix-cache hits can only make more room).
    free = vi.free_blocks(sched) - sum(vi.blocks_needed(sched, r) for r in sched.running)
    fits = []
    for _, queue, request in ready:
        need = vi.blocks_needed(sched, request)
        if need > free:
            aside.append((queue, request))
        else:
            free -= need
            fits.append((queue, request))
    # A complete context that will be prefilled now: admitted this step, or running mid-way
    # through a chunked prefill (in decode exactly one token is left to compute).
    finals = [r for _, r in fits if complete(r.request_id)]
    final_running = any(r.num_tokens - r.num_computed_tokens > 1 and complete(r.request_id) for r in sched.running)
    final_waiting = isolate_final and (bool(finals) or final_running)
    # With serial_finals, the one complete context admitted: the first in the policy's order.
    admitted = None if final_running or not finals else finals[0]
    keep: dict[int, list] = {id(queue): [] for queue in vi.waiting_queues(sched)}
    for queue, request in fits:
        is_final = complete(request.request_id)
        if (final_waiting and not is_final) or (serial_finals and is_final and request is not admitted):
            aside.append((queue, request))
        else:
            keep[id(queue)].append(request)
    for queue in vi.waiting_queues(sched):
        vi.replace_queue(queue, keep[id(queue)])
    return aside


def put_back(aside: list[tuple]) -> None:
    for queue, request in aside:
        queue.add_request(request)  # the next step sorts again
