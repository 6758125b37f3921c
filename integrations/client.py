"""`EngineClient`: the one handle both integrations hold on "an engine somewhere".

It takes what a user has: an `EngineRunner`, a `StreamEngine` started on the caller's loop, or
the URL of a streamrag server; and offers the two things a framework model needs, each async
and sync, from any thread or loop (see integrations/runner.py for how calls cross loops):

    chat_stream(messages, ...)   a plain chat turn: the model's own chat template, one-shot
    open_session(question, ...)  a streaming-context session (-> `SessionHandle`)

In-process, a chat is rendered with the tokenizer's chat template and run as a one-shot
completion of those token ids; over HTTP it is the server's /v1/chat/completions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from engine import Gate, Sampling, StreamEngine
from integrations.client_session import sampling_body
from integrations.runner import EngineRunner
from integrations.session_handle import SessionHandle

Messages = Sequence[Mapping[str, str]]  # [{"role": "system"|"user"|"assistant", "content": "..."}]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ChatDelta:
    """New text of a chat answer; the last one has `finish_reason` and `usage`."""

    text: str
    tokens: int = 0  # generated tokens behind this text (0 when the server does not say)
    finish_reason: str | None = None
    usage: Usage | None = None


class EngineClient:
    def __init__(self, runner: EngineRunner) -> None:
        self.runner = runner

    @classmethod
    def of(cls, target: Any, api_key: str | None = None) -> EngineClient:
        """An `EngineClient`, `EngineRunner`, started `StreamEngine` or server URL, as a client."""
        if isinstance(target, EngineClient):
            return target
        if isinstance(target, EngineRunner):
            return cls(target)
        if isinstance(target, StreamEngine):
            return cls(EngineRunner.attach(target))
        if isinstance(target, str):
            return cls(EngineRunner.connect(target, api_key=api_key))
        raise TypeError(
            f"engine: got {type(target).__name__}; pass an EngineRunner (EngineRunner.start(config)), "
            "a started StreamEngine, or the URL of a streamrag server"
        )

    @property
    def model_name(self) -> str:
        engine = self.runner.engine
        return engine.model_name if self.runner.is_remote else str(engine.config.model)

    @property
    def context_window(self) -> int | None:
        return self.runner.engine.max_model_len

    # -- sessions -------------------------------------------------------------------------
    async def open_session(self, question: str, system: str | None = None, gate: Gate | None = None) -> SessionHandle:
        return SessionHandle(await self.runner.call(lambda: self._open(question, system, gate)), self.runner)

    def open_session_sync(self, question: str, system: str | None = None, gate: Gate | None = None) -> SessionHandle:
        return SessionHandle(self.runner.call_sync(lambda: self._open(question, system, gate)), self.runner)

    async def _open(self, question: str, system: str | None, gate: Gate | None) -> Any:
        # On the engine's loop: a session creates its queues and tasks on the running loop.
        return await self.runner.engine.open_session(question=question, system=system, gate=gate)

    # -- plain chat -----------------------------------------------------------------------
    def chat_stream(self, messages: Messages, *, stop: Sequence[str] | None = None,
                    **sampling: Any) -> AsyncIterator[ChatDelta]:
        """Stream one chat turn; `sampling`: max_tokens, temperature, top_p, seed."""
        return self.runner.stream(lambda: self._chat_on_loop(list(messages), stop, sampling))

    def chat_stream_sync(self, messages: Messages, *, stop: Sequence[str] | None = None,
                         **sampling: Any) -> Iterator[ChatDelta]:
        return self.runner.stream_sync(lambda: self._chat_on_loop(list(messages), stop, sampling))

    async def _chat_on_loop(self, messages: list, stop: Sequence[str] | None, sampling: dict) -> AsyncIterator[ChatDelta]:
        # On the engine's loop. Returning early (a stop string) closes the engine's stream,
        # which aborts the request.
        sampling = Sampling(**{k: v for k, v in sampling.items() if v is not None})
        engine = self.runner.engine
        if self.runner.is_remote:
            # Stop strings stay on this side: the server refuses them (its sessions have none).
            body = {"model": engine.model_name, "messages": messages, "stream": True,
                    "stream_options": {"include_usage": True}, **sampling_body(sampling)}
            stops = _StopFilter(stop, prompt_tokens=0)
            finish, usage = None, None
            async with aclosing(engine.events("/v1/chat/completions", body)) as events:
                async for event in events:
                    if event.get("usage"):
                        u = event["usage"]
                        usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
                    for choice in event.get("choices") or ():
                        finish = choice.get("finish_reason") or finish
                        text = (choice.get("delta") or {}).get("content") or ""
                        if text or choice.get("token_ids"):
                            out = stops.filter(ChatDelta(text, tokens=len(choice.get("token_ids") or ()) or 1))
                            yield out
                            if out.finish_reason is not None:
                                return
            yield stops.filter(ChatDelta("", 0, finish or "stop", usage or Usage(0, stops.generated)))
            return
        ids = engine.template.chat_ids(messages)
        stops = _StopFilter(stop, prompt_tokens=len(ids))
        async with aclosing(engine.complete_stream(prompt_token_ids=ids, sampling=sampling)) as deltas:
            async for delta in deltas:
                out = stops.filter(ChatDelta(delta.text, len(delta.token_ids), delta.finish_reason))
                yield out
                if out.finish_reason is not None:
                    return


class _StopFilter:
    """Cuts the answer at the first stop string (the engine's one-shots have none of their own)
    and puts the usage on the last delta. Text that could be the start of a stop string is held
    back until the next delta decides."""

    def __init__(self, stop: Sequence[str] | None, prompt_tokens: int) -> None:
        self._stops = [s for s in stop or () if s]
        self._held = ""
        self._prompt = prompt_tokens
        self.generated = 0

    def filter(self, delta: ChatDelta) -> ChatDelta:
        self.generated += delta.tokens
        text = self._held + delta.text
        self._held = ""
        cut = min((i for s in self._stops if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            return ChatDelta(text[:cut], delta.tokens, "stop", Usage(self._prompt, self.generated))
        if delta.finish_reason is not None:
            return ChatDelta(text, delta.tokens, delta.finish_reason, delta.usage or Usage(self._prompt, self.generated))
        longest = max(map(len, self._stops), default=1)
        hold = next((n for n in range(min(len(text), longest - 1), 0, -1)
                     if any(s.startswith(text[-n:]) for s in self._stops)), 0)
        self._held = text[len(text) - hold:]
        return ChatDelta(text[: len(text) - hold], delta.tokens)
