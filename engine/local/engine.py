"""`StreamEngine`: an in-process vLLM `AsyncLLM` that serves streaming-context sessions.

    async with StreamEngine(EngineConfig(model="default")) as engine:
        s = await engine.open_session(question="...", gate=Gate(min_chunks=3, max_wait_s=2.0))
        await s.append([Chunk(id="doc-1", text="...", score=0.82)])
        await s.finish_context()
        async for delta in s.generate(Sampling(max_tokens=64)):
            ...

vLLM starts its engine core in a separate process, so a script that builds a StreamEngine
needs an `if __name__ == "__main__":` guard.

If that process dies (a crash, the OOM killer, a kill), a watchdog notices within
`WATCH_INTERVAL_S`: every live session ends with `EngineDeadError`, `health()` says why, and
`on_death` callbacks run (the server's supervisor restarts the engine or exits).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Sequence

from engine.answer_text import AnswerText
from engine.config import EngineConfig, check_update_mode
from engine.errors import EngineDeadError, SessionStateError
from engine.gate import Gate
from engine.local.cost_model import default_profile_path
from engine.local.ledger import SchedulerLedger
from engine.local.options import SchedulerOptions
from engine.models import model_context_length, resolve_model
from engine.one_shot import collect, one_shot_ids
from engine.prompt import PromptTemplate, Turn, check_history
from engine.types import Completion, Delta, Health, PreemptionStats, Sampling

WATCH_INTERVAL_S = 0.2  # how often the watchdog looks at vLLM's engine process
DEATH = "vLLM's engine process died (its log says why)"


class StreamEngine:
    """Owns the vLLM engine, the tokenizer and the live sessions. Use as `async with`."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._llm = None
        self._sessions: dict = {}  # id -> StreamSession
        self._ledger_dir: str | None = None
        self._watchdog: asyncio.Task | None = None
        self._death: str | None = None
        self._on_death: list[Callable[[str], None]] = []
        self.ledger: SchedulerLedger | None = None
        self.template: PromptTemplate | None = None
        self.tokenizer = None
        self.model_path = None
        self._max_model_len: int | None = None

    async def __aenter__(self) -> StreamEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def max_model_len(self) -> int:
        """The context length: `EngineConfig.max_model_len`, or the model's own when None."""
        return self._max_model_len or self.config.max_model_len or 0

    async def start(self) -> None:
        # Imported here so that `import engine` never loads vLLM.
        from transformers import AutoTokenizer
        from vllm.config import StructuredOutputsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from engine.local.markers import CONFIG_KEY
        from engine.local.scheduler import SCHEDULER_CLS
        from engine.local.vllm_internals import WORKER_HOOKS, check_vllm_internals

        check_vllm_internals()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
        cfg = self.config
        self.model_path = resolve_model(cfg.model, cfg.cache_dir)
        self.tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, str(self.model_path))
        self.template = PromptTemplate(self.tokenizer)
        self._max_model_len = cfg.max_model_len or model_context_length(self.model_path, cfg.model)
        cost_model = cfg.cost_model
        if cost_model is None and default_profile_path(cfg.model, cfg.cache_dir).is_file():
            cost_model = str(default_profile_path(cfg.model, cfg.cache_dir))  # from `streamrag profile`
        self._ledger_dir = tempfile.mkdtemp(prefix="streamrag-ledger-")
        self.ledger = SchedulerLedger(self._ledger_dir)
        options = SchedulerOptions.from_config(cfg, self._ledger_dir, cost_model)
        args = AsyncEngineArgs(
            model=str(self.model_path), dtype=cfg.resolved_dtype, max_model_len=self._max_model_len,
            block_size=cfg.block_size, kv_cache_memory_bytes=int(cfg.kv_cache_gib * 2**30),
            num_gpu_blocks_override=cfg.num_kv_blocks, max_num_batched_tokens=cfg.max_num_batched_tokens,
            max_num_seqs=cfg.max_num_seqs, enforce_eager=cfg.enforce_eager,
            enable_prefix_caching=cfg.enable_prefix_caching, scheduler_cls=SCHEDULER_CLS,
            additional_config={CONFIG_KEY: options.to_dict()}, seed=cfg.seed, disable_log_stats=True,
            # Off on every platform: streamrag's scheduler hooks assume each schedule() sees the
            # previous step's output (a replace cuts a request's computed tokens, which a step
            # still in flight would then overwrite); vLLM turns it on by default on CUDA.
            async_scheduling=False,
            # One KV cache group for every layer: the scheduler's block edits (vllm_internals:
            # cut_blocks, held_blocks) assume each layer keeps every block of a request. A model
            # with sliding-window layers (Gemma 3) would otherwise get a second group that swaps
            # blocks outside its window for null blocks; the window still applies in attention.
            disable_hybrid_kv_cache_manager=True,
            # Compact JSON in structured answers: a small model free to put whitespace between
            # JSON tokens pads forever. vLLM reads this per engine (ignoring a request's own
            # flag), and only its xgrammar and guidance backends honour it.
            structured_outputs_config=StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True),
            worker_extension_cls=WORKER_HOOKS,  # busy polling off in the worker (below)
            **({} if cfg.gpu_memory_utilization is None else {"gpu_memory_utilization": cfg.gpu_memory_utilization}),
        )
        if cfg.on == "cuda" and importlib.util.find_spec("flashinfer") is None:
            os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")  # used when present, not required
        with _core_binding(cfg.cpu_cores):  # read by vLLM's worker process as it starts
            self._llm = AsyncLLM.from_engine_args(args)
        if not cfg.busy_polling:  # the worker's side; the scheduler stops the engine core's
            await self._llm.collective_rpc("streamrag_stop_busy_polling")
        self._watchdog = asyncio.create_task(self._watch(), name="streamrag-engine-watchdog")

    async def close(self) -> None:
        """Abort live sessions, stop vLLM's engine process, remove the ledger."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        for session in list(self._sessions.values()):
            await session.abort()
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None
        if self._ledger_dir is not None:
            shutil.rmtree(self._ledger_dir, ignore_errors=True)
            self._ledger_dir = None

    # -- health ---------------------------------------------------------------------------
    def health(self) -> Health:
        if self._death is None and self._llm is not None and self._llm.errored:
            self._died(DEATH)  # noticed before the watchdog's next look
        if self._death is not None:
            return Health(False, self._death)
        if self._llm is None:
            return Health(False, "the engine is not started")
        return Health(True)

    def on_death(self, callback: Callable[[str], None]) -> None:
        """Call `callback(reason)` once, on this engine's loop, if vLLM's engine process dies."""
        self._on_death.append(callback)

    async def _watch(self) -> None:
        while not self._llm.errored:
            await asyncio.sleep(WATCH_INTERVAL_S)
        self._died(DEATH)

    def _died(self, reason: str) -> None:
        if self._death is not None:
            return
        self._death = reason
        error = EngineDeadError(reason)
        for session in list(self._sessions.values()):
            session.fail(error)  # every waiter (gate, tokens, prefill) raises at once
        for callback in self._on_death:
            callback(reason)

    # -- sessions -------------------------------------------------------------------------
    async def open_session(self, question: str, system: str | None = None, gate: Gate | None = None,
                           update_mode: str | None = None, history: Sequence[Turn] = ()):
        """Open a session; its fixed prefix (system, question, header) starts prefilling now.

        `update_mode` overrides `EngineConfig.update_mode` for this session ("lcp" or the
        "reopen" baseline), so one engine can compare both.
        """
        from engine.local.session import StreamSession

        llm = self._require_started()
        if not question or not question.strip():
            raise ValueError("question: empty; a session needs the user's question")
        update_mode = update_mode or self.config.update_mode
        check_update_mode(update_mode)
        session = StreamSession(
            llm=llm, template=self.template, rendered=self.template.render(question, system, check_history(history)),
            session_id=f"sr-{uuid.uuid4().hex[:16]}", gate=gate or Gate(), max_model_len=self.max_model_len,
            block_size=self.config.block_size, update_mode=update_mode,
            on_close=lambda s: self._sessions.pop(s.id, None), max_piece_tokens=self.config.piece_tokens,
        )
        self._sessions[session.id] = session
        return session

    def session(self, session_id: str):
        return self._sessions.get(session_id)

    @property
    def live_sessions(self) -> int:
        return len(self._sessions)

    def check_sampling(self, sampling: Sampling) -> None:
        """Refuse now (ConfigError naming the field) what vLLM would refuse in an answer with
        `sampling`: a JSON schema its grammar backends cannot compile, most likely."""
        from engine.local.params import check_answer_params

        check_answer_params(self._require_started(), sampling)

    # -- one-shot completions -------------------------------------------------------------
    async def complete_stream(self, prompt_token_ids: Sequence[int] | None = None, prompt: str | None = None,
                              sampling: Sampling | None = None) -> AsyncIterator[Delta]:
        """Stream a plain completion of a whole prompt (token ids or text)."""
        from vllm.inputs import TokensPrompt

        from engine.local.params import answer_params, token_logprobs

        ids = self._one_shot_ids(prompt_token_ids, prompt)
        llm = self._llm
        sampling = (sampling or Sampling()).with_max_tokens(self.max_model_len - len(ids))
        self.check_sampling(sampling)
        answer = AnswerText(self.template.decode, sampling.stop)
        request_id = f"cmpl-{uuid.uuid4().hex[:16]}"
        try:
            async for out in llm.generate(TokensPrompt(prompt_token_ids=ids), answer_params(sampling), request_id):
                step = out.outputs[0]
                logprobs = token_logprobs(step, sampling.logprobs)
                if (delta := answer.delta(step.token_ids, step.finish_reason, logprobs)) is not None:
                    yield delta
                if answer.done:
                    break  # leaving vLLM's generator aborts the rest of the request
        except Exception as error:
            if llm.errored:
                raise EngineDeadError(f"the vLLM engine died during completion {request_id}") from error
            raise

    async def complete(self, prompt_token_ids: Sequence[int] | None = None, prompt: str | None = None,
                       sampling: Sampling | None = None) -> Completion:
        """One-shot completion: the whole prompt at once. Returns token ids and text."""
        ids = self._one_shot_ids(prompt_token_ids, prompt)
        return await collect(self.complete_stream(ids, None, sampling), len(ids))

    def _one_shot_ids(self, prompt_token_ids: Sequence[int] | None, prompt: str | None) -> list[int]:
        self._require_started()
        return one_shot_ids(self.template, self.max_model_len, prompt_token_ids, prompt)

    # -- observability --------------------------------------------------------------------
    def kv_blocks_in_use(self) -> int:
        """KV blocks vLLM's scheduler holds right now (from its last step or abort).

        Excludes vLLM's reserved null block; blocks kept only by the prefix cache count as
        free. An abort is applied by the engine process a moment after `abort()` returns;
        `wait_for_blocks` waits for that.
        """
        self._require_started()
        status = self.ledger.read_status()
        return status.blocks_in_use if status else 0

    def preemption_stats(self) -> PreemptionStats:
        """Preemptions of idle sessions by mode, KV dropped, and time spent preempted."""
        self._require_started()
        by_mode: dict[str, int] = {}
        preempts = self.ledger.events("preempt")
        for event in preempts:
            by_mode[event["mode"]] = by_mode.get(event["mode"], 0) + 1
        resumes = self.ledger.events("resume")
        return PreemptionStats(by_mode, sum(e["tokens"] for e in preempts), len(resumes),
                               sum(e["preempted_s"] for e in resumes))

    async def wait_for_blocks(self, expected: int = 0, timeout_s: float = 10.0) -> int:
        """Poll `kv_blocks_in_use()` until it equals `expected` or the time is up."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (used := self.kv_blocks_in_use()) != expected and asyncio.get_running_loop().time() <= deadline:
            await asyncio.sleep(0.05)
        return used

    def _require_started(self):
        if self._death is not None:
            raise EngineDeadError(self._death)
        if self._llm is None:
            raise SessionStateError("the engine is not started; use `async with StreamEngine(...)`")
        return self._llm


@contextlib.contextmanager
def _core_binding(cores: str | None):
    """vLLM reads its CPU binding from the environment of the processes it starts: set it for
    the start of this engine alone."""
    before = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
    if cores is not None:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cores
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
        else:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = before
