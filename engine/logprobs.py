"""Logprobs on the wire: OpenAI's two formats, with tokens named by id, read into `TokenLogprob`s.

A client that sends `return_tokens_as_token_ids: true` (vLLM's extension, which streamrag's
server takes too) gets every token written as "token_id:<id>", so that logprobs map back to ids
exactly, whatever the tokenizer's strings. Two formats carry them:

    completions  {"tokens": [...], "token_logprobs": [...], "top_logprobs": [{token: logprob}, ...]}
    chat         {"content": [{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}, ...]}

The engine over vLLM servers reads the first; the HTTP client of a streamrag server reads both.
"""

from __future__ import annotations

from engine.types import TokenLogprob

PREFIX = "token_id:"


def token_name(token_id: int) -> str:
    return f"{PREFIX}{token_id}"


def token_id(name: str) -> int:
    if not name.startswith(PREFIX):
        raise ValueError(f"token {name!r} is not named by id: send return_tokens_as_token_ids")
    return int(name[len(PREFIX):])


def _top(pairs, k: int | None) -> tuple[tuple[int, float], ...]:
    ranked = sorted(((token_id(t), float(lp)) for t, lp in pairs), key=lambda p: -p[1])
    return tuple(ranked if k is None else ranked[:k])  # None: every alternative given


def from_completion(logprobs: dict | None, k: int | None) -> tuple[TokenLogprob, ...]:
    if not logprobs:
        return ()
    tops = logprobs.get("top_logprobs") or [None] * len(logprobs["tokens"])
    return tuple(TokenLogprob(token_id(t), float(lp), _top((top or {}).items(), k))
                 for t, lp, top in zip(logprobs["tokens"], logprobs["token_logprobs"], tops))


def from_chat(logprobs: dict | None, k: int | None) -> tuple[TokenLogprob, ...]:
    if not logprobs or not logprobs.get("content"):
        return ()
    return tuple(TokenLogprob(token_id(e["token"]), float(e["logprob"]),
                              _top(((t["token"], t["logprob"]) for t in e.get("top_logprobs") or ()), k))
                 for e in logprobs["content"])
