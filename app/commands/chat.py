"""`streamrag chat`: a terminal chat over a collection that shows the context streaming in.

    streamrag chat                                   # starts a server of its own (default model)
    streamrag chat --url http://127.0.0.1:8000       # a running server
    streamrag chat --collection python-docs --top-k 3 --no-retrieval

Each question goes to `/v1/chat/completions` with retrieval and its events on, as any client
would send it. Printed as they arrive: each source (rank, where it comes from, score, a
snippet), the gate opening (why, when, and a warning if it opened at its deadline), the
answer token by token, then the time to first token and how much of the prompt was prefilled
before the gate. Earlier turns are sent along (multi-turn). `/exit` or end of input quits;
Ctrl-C stops the answer in progress.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

SNIPPET = 70


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("chat", help="a terminal chat that shows sources, the gate and the answer streaming",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running streamrag server (default: start one for this chat)")
    p.add_argument("--api-key", help="the server's API key")
    p.add_argument("--model", default="default", help='the model of the server this chat starts ("default", "tiny")')
    p.add_argument("--collection", default="python-docs", help="the collection to retrieve from (python-docs)")
    p.add_argument("--top-k", type=int, default=3, help="chunks in the context (3)")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--no-retrieval", action="store_true", help="plain chat, no context")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.url:
        return _chat(args, args.url.rstrip("/"))
    from eval.server_process import StreamRAGServerProcess

    with tempfile.NamedTemporaryFile(prefix="streamrag-chat-", suffix=".log", delete=False) as log:
        server = StreamRAGServerProcess(log.name, args=("--model", args.model))
    print(f"starting a server (model {args.model}; log {server.log_path}) ...", file=sys.stderr, flush=True)
    server.start()
    try:
        import asyncio

        asyncio.run(server.wait_ready())
        return _chat(args, server.url)
    finally:
        server.stop()


def _chat(args: argparse.Namespace, url: str) -> int:
    import httpx

    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    history: list[dict[str, str]] = []
    print("Ask a question (/exit to quit).", flush=True)
    with httpx.Client(base_url=url, headers=headers, timeout=None) as http:
        while True:
            try:
                question = input("\n> ").strip()
            except EOFError:
                print()
                return 0
            if question in ("/exit", "/quit"):
                return 0
            if not question:
                continue
            history.append({"role": "user", "content": question})
            try:
                answer = _ask(http, args, history)
            except KeyboardInterrupt:
                print("\n(stopped)", flush=True)
                answer = None
            except _ServerError as error:
                print(f"\nerror: {error}", flush=True)
                answer = None
            if answer is None:
                history.pop()
            else:
                history.append({"role": "assistant", "content": answer})


class _ServerError(Exception):
    pass


def _ask(http, args: argparse.Namespace, messages: list[dict[str, str]]) -> str:
    from httpx_sse import connect_sse

    body = {"messages": messages, "stream": True, "max_tokens": args.max_tokens,
            "stream_options": {"include_usage": True}}
    if not args.no_retrieval:
        body["retrieval"] = {"collection": args.collection, "top_k": args.top_k, "events": True}
    t0, first, text, usage = time.monotonic(), None, [], {}
    with connect_sse(http, "POST", "/v1/chat/completions", json=body) as source:
        if source.response.status_code != 200:
            source.response.read()
            raise _ServerError(_message(source.response.text))
        for event in source.iter_sse():
            if event.data == "[DONE]":
                break
            data = json.loads(event.data)
            if event.event == "error":
                raise _ServerError(data["error"]["message"])
            if event.event == "context":
                _print_context(data["streamrag"]["context"])
            elif event.event == "gate":
                gate = data["streamrag"]["gate"]
                print(f"  gate open: {gate['reason']} at {gate['elapsed_ms']:.0f} ms", flush=True)
                if gate.get("warning"):
                    print(f"  warning: {gate['warning']}", flush=True)
            elif data.get("usage"):
                usage = data["usage"]
            for choice in data.get("choices", []):
                piece = choice.get("delta", {}).get("content") or ""
                if piece and first is None:
                    first = time.monotonic() - t0
                    print()
                text.append(piece)
                print(piece, end="", flush=True)
    stats = usage.get("streamrag") or {}
    line = f"\n\n  first token after {first * 1000:.0f} ms" if first is not None else "\n\n  no answer"
    if stats.get("prefilled_before_gate") is not None:
        line += (f"; {stats['prefilled_before_gate']} of {usage.get('prompt_tokens')} prompt tokens "
                 "prefilled before the gate")
    print(line, flush=True)
    return "".join(text)


def _print_context(context: dict) -> None:
    if context.get("error"):
        print(f"  retrieval error: {context['error']}", flush=True)
        return
    label = "ranking" if context["op"] == "update" else "more context"
    print(f"  {label}:", flush=True)
    for rank, chunk in enumerate(context.get("chunks", []), 1):
        snippet = " ".join(chunk["text"].split())[:SNIPPET]
        score = "-" if chunk["score"] is None else f"{chunk['score']:.3f}"
        print(f"    [{rank}] {chunk['source'] or chunk['id']}  ({score})  {snippet}...", flush=True)
    if context.get("dropped"):
        print(f"    ({context['dropped']} arrived after the gate and were not used)", flush=True)


def _message(body: str) -> str:
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return body[:200]
