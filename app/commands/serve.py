"""`streamrag serve`: the HTTP server (OpenAI-compatible chat, sessions, collections)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="run the HTTP server (flags override STREAMRAG_* variables)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--model", help='"default", "tiny" or a path to a Hugging Face model folder')
    p.add_argument("--data-dir", help="where the embedded Qdrant keeps its data")
    p.add_argument("--qdrant-url", help="a Qdrant server instead of the embedded store")
    p.add_argument("--vllm-url", action="append", dest="vllm_urls", metavar="URL",
                   help="a vLLM server to use instead of the in-process engine (repeat for replicas)")
    p.add_argument("--api-key", help="require `Authorization: Bearer KEY` on every route but /health")
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--policy", choices=("vllm", "fcfs", "lcas", "mcps"),
                   help="scheduling policy of the in-process engine (fcfs)")
    p.add_argument("--no-retrieval", action="store_true", help="do not load the embedder and Qdrant")
    p.add_argument("--session-ttl-s", type=float)
    p.add_argument("--no-restart", action="store_true",
                   help="if the engine dies, exit with status 3 instead of restarting it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app
    from app.settings import Settings

    overrides = {k: v for k, v in {
        "host": args.host, "port": args.port, "model": args.model, "data_dir": args.data_dir,
        "qdrant_url": args.qdrant_url, "api_key": args.api_key, "max_model_len": args.max_model_len,
        "session_ttl_s": args.session_ttl_s, "vllm_urls": args.vllm_urls, "policy": args.policy,
        "retrieval": False if args.no_retrieval else None, "restart": False if args.no_restart else None,
    }.items() if v is not None}
    settings = Settings(**overrides)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info"))
    app.state.stop_server = lambda: setattr(server, "should_exit", True)
    server.run()
    supervisor = getattr(app.state, "supervisor", None)
    return supervisor.exit_code if supervisor is not None else 0
