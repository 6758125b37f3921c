"""`StreamEngine`: an in-process vLLM `AsyncLLM` that serves streaming-context sessions.

    async with StreamEngine(EngineConfig(model="default")) as engine:
        s = engine.open_session(question="...", gate=Gate(min_chunks=3, max_wait_s=2.0))
        await s.append([Chunk(text="...", id="doc-1", score=0.82)])
        await s.finish_context()
        async for delta in s.generate(max_tokens=64):
            ...

vLLM starts its engine core in a separate process, so a script that builds a StreamEngine
needs an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator

from engine.config import EngineConfig
from engine.cost_model import default_profile_path
from engine.detokenizer import IncrementalDetokenizer
from engine.errors import ConfigError, PromptTooLongError, SessionStateError
from engine.gate import Gate
from engine.ledger import SchedulerLedger
from engine.models import resolve_model
from engine.prompt import PromptTemplate
from engine.session import StreamSession
from engine.types import Completion, Delta, PreemptionStats


class StreamEngine:
    """Owns the vLLM engine, the tokenizer and the live sessions. Use as `async with`."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._llm = None
        self._sessions: dict[str, StreamSession] = {}
        self._ledger_dir: str | None = None
        self.ledger: SchedulerLedger | None = None
        self.template: PromptTemplate | None = None
        self.tokenizer = None
        self.model_path = None

    async def __aenter__(self) -> StreamEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def max_model_len(self) -> int:
        return self.config.max_model_len

    async def start(self) -> None:
        # Imported here so that `import engine` stays light for the CLI and the docs.
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from engine.vllm_scheduler import CONFIG_KEY, SCHEDULER_CLS, check_vllm_internals

        check_vllm_internals()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
        cfg = self.config
        self.model_path = resolve_model(cfg.model, cfg.cache_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_path))
        self.template = PromptTemplate(self.tokenizer)
        cost_model = cfg.cost_model
        if cost_model is None and default_profile_path(cfg.model, cfg.cache_dir).is_file():
            cost_model = str(default_profile_path(cfg.model, cfg.cache_dir))  # from `streamrag profile`
        self._ledger_dir = tempfile.mkdtemp(prefix="streamrag-ledger-")
        self.ledger = SchedulerLedger(self._ledger_dir)
        args = AsyncEngineArgs(
            model=str(self.model_path),
            dtype=cfg.dtype,
            max_model_len=cfg.max_model_len,
            block_size=cfg.block_size,
            kv_cache_memory_bytes=int(cfg.kv_cache_gib * 2**30),
            num_gpu_blocks_override=cfg.num_kv_blocks,
            max_num_batched_tokens=cfg.max_num_batched_tokens,
            max_num_seqs=cfg.max_num_seqs,
            enforce_eager=cfg.enforce_eager,
            enable_prefix_caching=cfg.enable_prefix_caching,
            scheduler_cls=SCHEDULER_CLS,
            additional_config={
                CONFIG_KEY: {"ledger_dir": self._ledger_dir, "record_steps": cfg.record_steps,
                             "policy": cfg.policy, "preempt_idle": cfg.idle_preemption,
                             "isolate_final": cfg.final_isolation,
                             "cost_model": cost_model}
            },
            seed=cfg.seed,
            disable_log_stats=True,
        )
        self._llm = AsyncLLM.from_engine_args(args)

    async def close(self) -> None:
        """Abort live sessions, stop vLLM's engine process, remove the ledger."""
        for session in list(self._sessions.values()):
            await session.abort()
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None
        if self._ledger_dir is not None:
            shutil.rmtree(self._ledger_dir, ignore_errors=True)
            self._ledger_dir = None

    # -- sessions -------------------------------------------------------------------------
    def open_session(
        self,
        question: str,
        system: str | None = None,
        gate: Gate | None = None,
        update_mode: str | None = None,
    ) -> StreamSession:
        """Open a session; its fixed prefix (system, question, header) starts prefilling now.

        `update_mode` overrides `EngineConfig.update_mode` for this session ("lcp" or the
        "reopen" baseline), so one engine can compare both.
        """
        llm = self._require_started()
        if not question or not question.strip():
            raise ValueError("question: empty; a session needs the user's question")
        update_mode = update_mode or self.config.update_mode
        if update_mode not in ("lcp", "reopen"):
            raise ConfigError("update_mode", f"{update_mode!r}: use 'lcp' or 'reopen'")
        session = StreamSession(
            llm=llm,
            template=self.template,
            rendered=self.template.render(question, system),
            session_id=f"sr-{uuid.uuid4().hex[:16]}",
            gate=gate or Gate(),
            max_model_len=self.max_model_len,
            block_size=self.config.block_size,
            update_mode=update_mode,
            on_close=lambda s: self._sessions.pop(s.id, None),
            max_piece_tokens=self.config.max_piece_tokens,
        )
        self._sessions[session.id] = session
        return session

    def session(self, session_id: str) -> StreamSession | None:
        return self._sessions.get(session_id)

    @property
    def live_sessions(self) -> int:
        return len(self._sessions)

    # -- one-shot completions -------------------------------------------------------------
    async def complete_stream(
        self,
        prompt_token_ids: list[int] | None = None,
        prompt: str | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        ignore_eos: bool = False,
    ) -> AsyncIterator[Delta]:
        """Stream a plain completion of a whole prompt (token ids or text)."""
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        llm = self._require_started()
        if (prompt_token_ids is None) == (prompt is None):
            raise ValueError("give exactly one of prompt_token_ids and prompt")
        ids = list(prompt_token_ids) if prompt is None else self.template.encode(prompt)
        if not ids:
            raise ValueError("prompt: empty")
        if len(ids) + 1 > self.max_model_len:
            raise PromptTooLongError(len(ids) + 1, self.max_model_len)
        if max_tokens < 1:
            raise ValueError(f"max_tokens: {max_tokens} must be >= 1")
        params = SamplingParams(
            max_tokens=min(max_tokens, self.max_model_len - len(ids)), temperature=temperature,
            top_p=top_p, seed=seed, ignore_eos=ignore_eos, detokenize=False,
            output_kind=RequestOutputKind.DELTA,
        )
        detok = IncrementalDetokenizer(self.template.decode)
        request_id = f"cmpl-{uuid.uuid4().hex[:16]}"
        async for out in llm.generate(TokensPrompt(prompt_token_ids=ids), params, request_id):
            step = out.outputs[0]
            text = detok.push(step.token_ids)
            if step.finish_reason is not None:
                text += detok.flush()
            yield Delta(text=text, token_ids=tuple(step.token_ids), finish_reason=step.finish_reason)

    async def complete(self, prompt_token_ids: list[int] | None = None, prompt: str | None = None,
                       **sampling) -> Completion:
        """One-shot completion: the whole prompt at once. Returns token ids and text."""
        ids: list[int] = []
        text: list[str] = []
        finish = None
        async for delta in self.complete_stream(prompt_token_ids, prompt, **sampling):
            ids.extend(delta.token_ids)
            text.append(delta.text)
            finish = delta.finish_reason or finish
        n_prompt = len(prompt_token_ids) if prompt is None else len(self.template.encode(prompt))
        return Completion("".join(text), tuple(ids), n_prompt, finish)

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

    async def wait_for_blocks(self, expected: int, timeout_s: float = 10.0) -> int:
        """Poll `kv_blocks_in_use()` until it equals `expected` or the time is up."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (used := self.kv_blocks_in_use()) != expected:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        return used

    def _require_started(self):
        if self._llm is None:
            raise SessionStateError("the engine is not started; use `async with StreamEngine(...)`")
        return self._llm
