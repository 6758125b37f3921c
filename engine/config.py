"""`EngineConfig`: every knob of the in-process engine, frozen and validated once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from engine.errors import ConfigError

# The one place the policy names are written (engine/local/policies.py defines their order).
Policy = Literal["vllm", "fcfs", "lcas", "mcps"]
POLICY_NAMES: tuple[str, ...] = get_args(Policy)
UpdateMode = Literal["lcp", "reopen"]
UPDATE_MODES: tuple[str, ...] = get_args(UpdateMode)


@dataclass(frozen=True)
class EngineConfig:
    """How to build the vLLM engine behind `StreamEngine`.

    model: "default" (SmolLM2-135M-Instruct, prepared by `streamrag models prepare`), "tiny"
        (the random-weight test model) or a path to a Hugging Face model folder.
    max_model_len: the context length; None takes the model's own (its config's
        `max_position_embeddings`).
    dtype: float32 by default: bf16 on CPU flips near-tied greedy tokens, which breaks the
        exactness guarantees the tests check.
    block_size: KV block size in tokens. The CPU attention backend takes multiples of 32; it
        bounds the granularity of prefix reuse, so it is worth measuring.
    kv_cache_gib: KV cache size; `num_kv_blocks` overrides it with an exact block count
        (tests use that to build a deliberately small cache).
    enforce_eager: skip graph compilation; cuts start-up from ~75 s to ~20 s on 2 cores.
    record_steps: write vLLM's per-step scheduled-token counts to the scheduler ledger, so
        tests and benchmarks can read what vLLM actually computed.
    policy: who gets compute and memory first (engine/policies.py): "fcfs" (the default),
        "lcas", "mcps", or "vllm" (stock vLLM's order, the baseline; it can jam when idle
        sessions fill the cache). The next two default to on for every policy but "vllm", which stays vLLM's
        own behaviour (the baseline):
    preempt_idle: take KV back from sessions that hold it while they wait (for their next
        chunk, at the gate, or queued behind others) when a ready request of higher priority
        lacks blocks (vLLM never preempts a waiting session).
    isolate_final: while a request whose context is complete waits for prefill, partial
        contexts wait one step: their prefill is off the TTFT path, and on CPU a step's time
        grows with every token in it.
    max_piece_tokens: the longest context piece a session sends vLLM at once (None: no
        limit). A piece in flight cannot be recalled: the next ranking, and the last chunks
        on the TTFT path, wait until it is prefilled. 128 tokens is ~0.17 s on 2 CPU cores
        with the default model; on a GPU a few thousand cost about as little.
    cost_model: a `streamrag profile` JSON that picks the preemption mode per victim (None:
        recompute, the only mode on CPU).
    """

    model: str = "default"
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    max_model_len: int | None = None
    block_size: int = 128
    kv_cache_gib: float = 1.0
    num_kv_blocks: int | None = None
    max_num_batched_tokens: int = 4096
    max_num_seqs: int = 64
    enforce_eager: bool = True
    enable_prefix_caching: bool = True
    policy: Policy = "fcfs"
    preempt_idle: bool | None = None
    isolate_final: bool | None = None
    cost_model: str | None = None
    update_mode: UpdateMode = "lcp"
    max_piece_tokens: int | None = 128
    record_steps: bool = False
    cache_dir: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model", 'empty; use "default", "tiny" or a model folder path')
        if self.dtype not in ("float32", "bfloat16", "float16", "auto"):
            raise ConfigError("dtype", f"{self.dtype!r} is not one of float32, bfloat16, float16, auto")
        if self.max_model_len is not None and self.max_model_len < 64:
            raise ConfigError("max_model_len", f"{self.max_model_len} is too small; use at least 64")
        if self.block_size <= 0 or self.block_size % 32:
            raise ConfigError(
                "block_size",
                f"{self.block_size} is not a positive multiple of 32, which the CPU attention "
                "backend requires; use 32, 64, 128 ...",
            )
        if self.kv_cache_gib <= 0:
            raise ConfigError("kv_cache_gib", f"{self.kv_cache_gib} must be > 0")
        if self.num_kv_blocks is not None and self.num_kv_blocks < 2:
            raise ConfigError("num_kv_blocks", f"{self.num_kv_blocks} must be >= 2 (or None)")
        if self.max_num_batched_tokens < self.block_size:
            raise ConfigError(
                "max_num_batched_tokens",
                f"{self.max_num_batched_tokens} is below block_size {self.block_size}",
            )
        if self.max_num_seqs < 1:
            raise ConfigError("max_num_seqs", f"{self.max_num_seqs} must be >= 1")
        if self.policy not in POLICY_NAMES:
            raise ConfigError("policy", f"{self.policy!r} is not one of {', '.join(POLICY_NAMES)}")
        for name in ("preempt_idle", "isolate_final"):
            if getattr(self, name) not in (None, True, False):
                raise ConfigError(name, f"{getattr(self, name)!r}: use True, False or None (on unless policy is 'vllm')")
        if self.max_piece_tokens is not None and self.max_piece_tokens < 1:
            raise ConfigError("max_piece_tokens", f"{self.max_piece_tokens} must be >= 1 (or None: no limit)")
        check_update_mode(self.update_mode)

    @property
    def idle_preemption(self) -> bool:
        """`preempt_idle` with its default resolved: on for every policy but "vllm"."""
        return self.policy != "vllm" if self.preempt_idle is None else self.preempt_idle

    @property
    def final_isolation(self) -> bool:
        """`isolate_final` with its default resolved: on for every policy but "vllm"."""
        return self.policy != "vllm" if self.isolate_final is None else self.isolate_final


def check_update_mode(mode: str) -> None:
    if mode not in UPDATE_MODES:
        raise ConfigError("update_mode", f"{mode!r}: use 'lcp' or 'reopen'")
