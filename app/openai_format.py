"""Run events in OpenAI's wire formats: SSE chunks for streams, one JSON for the rest.

Extension events (`event: context`, `event: gate`) carry a `chat.completion.chunk`-shaped
body with no choices and a `streamrag` object. Deliberate: the official `openai` SDK (3.x)
parses every SSE event whatever its name, so a body of another shape would reach the
caller's loop as a malformed chunk; an empty-choices chunk is what the SDK already yields
for usage, which clients skip. SSE-aware clients read the event name. Chat completions send
them only when asked (`"retrieval": {"events": true}`), so a client that reads `choices[0]` of
every chunk never meets one; the session API, streamrag's own, always sends them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Literal

from sse_starlette import ServerSentEvent

from app.logprobs_format import LogprobsFormat
from app.runs import ContextInfo, Finish, GateInfo, RunEvent, TokenInfo

Kind = Literal["chat", "text"]


class Formatter:
    """Formats one response's events; holds its id, creation time and model name."""

    def __init__(self, kind: Kind, model: str, extension_events: bool = True,
                 logprobs: LogprobsFormat | None = None) -> None:
        self.kind = kind
        self.logprobs = logprobs or LogprobsFormat(kind, str)
        self.extension_events = extension_events
        self.model = model
        self.id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self._role_sent = False

    def _envelope(self, choices: list, **extra) -> dict:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "choices": choices, **extra}

    def _choice(self, text: str, token_ids, finish_reason, logprobs=()) -> dict:
        rendered = self.logprobs.render(logprobs)
        if self.kind == "text":
            return {"index": 0, "text": text, "logprobs": rendered, "finish_reason": finish_reason,
                    "token_ids": list(token_ids)}
        delta: dict = {"content": text}
        if not self._role_sent:
            delta["role"] = "assistant"
            self._role_sent = True
        return {"index": 0, "delta": delta, "logprobs": rendered, "finish_reason": finish_reason,
                "token_ids": list(token_ids)}

    @staticmethod
    def usage(finish: Finish) -> dict:
        return {"prompt_tokens": finish.prompt_tokens, "completion_tokens": finish.completion_tokens,
                "total_tokens": finish.prompt_tokens + finish.completion_tokens,
                "streamrag": finish.streamrag}

    def sse(self, event: RunEvent, include_usage: bool) -> list[ServerSentEvent]:
        if isinstance(event, (ContextInfo, GateInfo)) and not self.extension_events:
            return []
        if isinstance(event, ContextInfo):
            body = {"op": event.op, "stage": event.stage or None, "chunk_ids": list(event.chunk_ids), "scores": list(event.scores),
                    "prompt_tokens": event.prompt_tokens, "dropped": event.dropped, "error": event.error,
                    "chunks": _chunks(event)}
            return [ServerSentEvent(json.dumps(self._envelope([], streamrag={"context": body})), event="context")]
        if isinstance(event, GateInfo):
            body = {"reason": event.reason, "elapsed_ms": event.elapsed_ms, "warning": event.warning}
            return [ServerSentEvent(json.dumps(self._envelope([], streamrag={"gate": body})), event="gate")]
        if isinstance(event, TokenInfo):
            d = event.delta
            choice = self._choice(d.text, d.token_ids, d.finish_reason, d.logprobs)
            return [ServerSentEvent(json.dumps(self._envelope([choice])))]
        out = []
        if include_usage:
            out.append(ServerSentEvent(json.dumps(self._envelope([], usage=self.usage(event)))))
        out.append(ServerSentEvent("[DONE]"))
        return out

    def error_sse(self, message: str, type_: str = "server_error", code: str | None = None,
                  param: str | None = None) -> list[ServerSentEvent]:
        body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        return [ServerSentEvent(json.dumps(body), event="error"), ServerSentEvent("[DONE]")]

    async def collect(self, events: AsyncIterator[RunEvent]) -> dict:
        """The non-streaming response: all tokens in one choice, usage, and the context log."""
        text, ids, context, gate, finish, logprobs = [], [], [], None, None, []
        async for event in events:
            if isinstance(event, TokenInfo):
                text.append(event.delta.text)
                ids.extend(event.delta.token_ids)
                if (rendered := self.logprobs.render(event.delta.logprobs)) is not None:
                    logprobs.append(rendered)
            elif isinstance(event, ContextInfo):
                context.append({"op": event.op, "stage": event.stage or None, "chunk_ids": list(event.chunk_ids), "chunks": _chunks(event),
                                "dropped": event.dropped})
            elif isinstance(event, GateInfo):
                gate = {"reason": event.reason, "elapsed_ms": event.elapsed_ms, "warning": event.warning}
            elif isinstance(event, Finish):
                finish = event
        content = "".join(text)
        if self.kind == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": content},
                      "logprobs": LogprobsFormat.merge(logprobs), "finish_reason": finish.finish_reason, "token_ids": ids}
        else:
            choice = {"index": 0, "text": content, "logprobs": LogprobsFormat.merge(logprobs),
                      "finish_reason": finish.finish_reason, "token_ids": ids}
        body = self._envelope([choice], usage=self.usage(finish))
        body["object"] = "chat.completion" if self.kind == "chat" else "text_completion"
        if context or gate:
            body["streamrag"] = {"context": context, "gate": gate}
        return body


def _chunks(event: ContextInfo) -> list[dict]:
    """Each chunk of a context event as a client shows it: id, source, score and text."""
    titles = event.titles or (None,) * len(event.chunk_ids)
    return [{"id": i, "source": src, "title": title, "score": score, "text": text}
            for i, src, title, score, text in zip(event.chunk_ids, event.sources, titles, event.scores, event.texts)]
