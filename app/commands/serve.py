"""`streamrag serve`: the HTTP server (OpenAI-compatible chat, sessions, collections).

Its flags are `Settings`' fields, made by pydantic-settings (one place declares an option:
app/settings.py); each also reads `STREAMRAG_<NAME>`. The server stops gracefully on SIGTERM:
live streams end with a final event within `--drain-s`, then the engine stops; a second
SIGTERM exits at once (app/drain.py).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from pydantic_settings import CliSettingsSource

    from app.settings import Settings

    p = subparsers.add_parser("serve", help="run the HTTP server", description="Run the HTTP server. Every "
                              "flag also reads the environment variable shown next to it.")
    source = CliSettingsSource(Settings, root_parser=p, cli_kebab_case=True, cli_implicit_flags=True,
                               cli_show_env_vars=True, cli_hide_none_type=True, cli_avoid_json=True)
    p.set_defaults(func=run, settings_source=source)


def settings_of(args: argparse.Namespace):
    """The `Settings` the parsed flags (and `STREAMRAG_*` variables) describe."""
    from app.settings import Settings

    return Settings(_cli_settings_source=args.settings_source(parsed_args=args))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.quiet_logs import configure
    from retrievers.paths import cache_dir

    settings = settings_of(args)
    if settings.stop_with_parent:  # a killed bench must not leave its server holding the port and the store
        import signal

        from engine.local.lifeline import die_with_parent

        die_with_parent(signal.SIGTERM)
    configure(settings.vllm_log_level, Path(settings.cache_dir) if settings.cache_dir else cache_dir())  # before vLLM

    from app.drain import DrainingServer
    from app.main import create_app

    app = create_app(settings)
    server = DrainingServer(app, host=settings.host, port=settings.port, drain_s=settings.drain_s)
    server.run()
    supervisor = getattr(app.state, "supervisor", None)
    return supervisor.exit_code if supervisor is not None else 0
