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
        # On the engine's loop. Stop strings are applied by the engine (or the server) itself;
        # the last delta carries the finish reason and the usage.
        sampling = to_sampling({**sampling, "stop": stop})
        engine = self.runner.engine
        if self.runner.is_remote:
            body = {"model": engine.model_name, "messages": messages, "stream": True,
                    "stream_options": {"include_usage": True}, **sampling_body(sampling)}
            finish, usage, generated = None, None, 0
            async with aclosing(engine.events("/v1/chat/completions", body)) as events:
                async for event in events:
                    if event.get("usage"):
                        u = event["usage"]
                        usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
                    for choice in event.get("choices") or ():
                        finish = choice.get("finish_reason") or finish
                        text, tokens = (choice.get("delta") or {}).get("content") or "", len(choice.get("token_ids") or ())
                        generated += tokens
                        if text or tokens:
                            yield ChatDelta(text, tokens=tokens)
            yield ChatDelta("", 0, finish or "stop", usage or Usage(0, generated))
            return
        ids = engine.template.chat_ids(messages)
        generated = 0
        async with aclosing(engine.complete_stream(prompt_token_ids=ids, sampling=sampling)) as deltas:
            async for delta in deltas:
                generated += len(delta.token_ids)
                usage = Usage(len(ids), generated) if delta.finish_reason is not None else None
                yield ChatDelta(delta.text, len(delta.token_ids), delta.finish_reason, usage)


def to_sampling(params: Mapping[str, Any]) -> Sampling:
    """A framework's sampling arguments (None: not set) as the engine's `Sampling`."""
    values = {k: v for k, v in params.items() if v is not None}
    if "stop" in values:
        values["stop"] = (values["stop"],) if isinstance(values["stop"], str) else tuple(values["stop"])
    return Sampling(**values)
