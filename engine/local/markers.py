"""The markers a session puts in `SamplingParams.extra_args` for streamrag's scheduler.

`extra_args` is a free dict that travels with each streamed piece into vLLM's engine-core
process, where `StreamScheduler` reads it. This module is the whole protocol between the two
sides, and imports nothing of vLLM, so the session side can use it without the scheduler.
"""

from __future__ import annotations

# Key in VllmConfig.additional_config (a free dict vLLM hands to every component).
CONFIG_KEY = "streamrag"
# A piece that replaces everything after the first `keep` tokens of the session's prompt.
REPLACE_KEY = "streamrag_replace_keep"
# The session's context is complete (policies rank complete contexts first).
FINAL_KEY = "streamrag_final"


def replace_marker(keep: int) -> dict[str, int]:
    """`extra_args` for a piece that replaces everything after the first `keep` tokens."""
    return {REPLACE_KEY: keep}


def final_marker() -> dict[str, bool]:
    """`extra_args` for a piece sent once the session's context is complete."""
    return {FINAL_KEY: True}


def read_markers(extra_args: dict | None) -> tuple[int | None, bool]:
    """(tokens to keep if this piece is a replace, whether the context is complete)."""
    extra = extra_args or {}
    keep = extra.get(REPLACE_KEY)
    return (None if keep is None else int(keep)), bool(extra.get(FINAL_KEY))
