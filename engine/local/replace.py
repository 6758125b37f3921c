"""The replace: how a re-ranked context keeps the KV of its longest common prefix.

vLLM's streaming-input sessions are append-only. A session that wants its prompt replaced from
token `keep` on sends the new tokens with a replace marker (engine/local/markers.py); when the
piece reaches the scheduler, `apply_replace` cuts the waiting request back before vLLM appends:

    before  tokens  [0 ............ keep ........ computed)        keep = LCP(old, new)
            blocks  | b0 | b1 | b2 | b3 | b4 |
    cut  =  min(keep, computed) rounded down to a block boundary (here: 2 blocks)
    after   tokens  [0 ..... cut) + old[cut:keep] + piece
            blocks  | b0 | b1 |   b2, b3, b4 back to the pool (still in the prefix cache
                                  under their old hashes, so other requests may hit them)

Invariants, each enforced here:
  - Blocks are never cut inside: full blocks are hashed into vLLM's prefix cache and may be
    shared, so overwriting part of one would corrupt other requests. The tokens between `cut`
    and `keep` are re-sent and recomputed instead: an update recomputes at most
    (new length - LCP) + block size tokens.
  - A request vLLM's block managers still track (`num_cached_block`) must have something
    computed. vLLM gives a waiting request with nothing computed a prefix-cache lookup and
    asserts that a tracked request gets no hits. So when `cut` is 0 (the LCP is shorter than a
    block) the request is released the normal way (`release_request_kv`): untracked and
    without blocks, it looks new; the lookup legally hands back whatever the cache holds,
    blocks other sessions computed for the same prefix included. (Before this rule an engine
    died on an ordinary sequence of rankings once earlier sessions had cached the new prefix.)
  - After a preemption the request holds no blocks and nothing computed: the same rule holds,
    it is released already, and the cut only trims its tokens.

The worker needs no change: a continuation reaches it as a scheduled new request with the full
token list, the full block id list and `num_computed_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

import engine.local.vllm_internals as vi


@dataclass(frozen=True)
class Replace:
    """What one replace did, for the ledger."""

    keep: int
    cut: int
    computed: int  # tokens vLLM had computed before (what the cut may throw away)
    freed_blocks: int


def apply_replace(sched, session, update, keep: int) -> Replace:
    """Cut waiting request `session` back for a piece that keeps its first `keep` tokens.

    `update` (vLLM's StreamingUpdate) carries the new tokens from `keep` on; it gets the old
    tokens between the cut and `keep` prepended, so vLLM's own append then restores them.
    """
    old = session.prompt_token_ids
    assert 0 <= keep <= len(old), (keep, len(old))
    session_computed = session.num_computed_tokens
    computed = min(keep, session.num_computed_tokens)  # all of `old`, unless it was preempted
    cut = computed - computed % sched.block_size
    update.prompt_token_ids = old[cut:keep] + list(update.prompt_token_ids or ())
    if cut > 0:
        vi.truncate_tokens(sched, session, cut)
        freed = vi.cut_blocks(sched, session, cut)
    else:
        freed = vi.release_request_kv(sched, session)
        vi.truncate_tokens(sched, session, 0)
    return Replace(keep, cut, session_computed, freed)
