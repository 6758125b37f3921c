"""Start-up without noise: vLLM's known-harmless warnings are dropped, in every vLLM process.

On vLLM's CPU build every start prints a dozen warnings that ask nothing of the user (no Triton
on CPU, eager mode, the custom scheduler class streamrag installs on purpose, tcmalloc and iomp
hints, ...). `configure(level)` writes a logging configuration that vLLM applies in this process
and in its engine processes (`VLLM_LOGGING_CONFIG_PATH`, vLLM's own mechanism): vLLM's format,
the level asked for (`--vllm-log-level`, default WARNING: no INFO lines), and `KnownHarmless`,
a filter for exactly the messages below. Anything else still prints. `VLLM_LOGGING_LEVEL` in
the environment sets the level instead; `VLLM_LOGGING_CONFIG_PATH` replaces all of this.

One line is left per process: "Triton is installed, but doesn't include CPU backend", which vLLM
logs while it is being imported, before any logging configuration of its own applies.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

# Message openings that are expected on every start of this project's engine; why each is harmless.
HARMLESS = (
    "Enforce eager set",                        # eager mode is the CPU build's mode
    "Inductor compilation was disabled",        # follows from eager mode
    "Triton is not installed",                  # vLLM's CPU path runs without Triton
    "Model Runner V2 requires Triton",          # the V1 runner is the one used on CPU
    "Reset SSM cache type",                     # no SSM layers in the models used
    "Using custom scheduler class",             # streamrag's scheduler, installed on purpose
    "libtcmalloc is not found in LD_PRELOAD",   # allocator hints: a deployment tuning, not an error
    "libiomp is not found in LD_PRELOAD",
    "Passing raw prompts to InputProcessor is deprecated",  # streaming input goes this way in 0.32
)


class KnownHarmless(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(HARMLESS)


def config(level: str) -> dict:
    fmt = "(%(vllm_process_name)s pid=%(process)d) %(levelname)s %(asctime)s [%(fileinfo)s:%(lineno)d] %(message)s"
    return {
        "version": 1, "disable_existing_loggers": False,
        "filters": {"harmless": {"()": "app.quiet_logs.KnownHarmless"}},
        "formatters": {"vllm": {"()": "vllm.logging_utils.NewLineFormatter", "format": fmt,
                                "datefmt": "%m-%d %H:%M:%S"}},
        "handlers": {"vllm": {"class": "logging.StreamHandler", "formatter": "vllm", "level": level,
                              "filters": ["harmless"], "stream": "ext://sys.stdout"}},
        "loggers": {"vllm": {"handlers": ["vllm"], "level": level, "propagate": False}},
    }


def configure(level: str, folder: Path) -> None:
    """Before vLLM is imported: its logging (here and in its engine processes) through `config`."""
    warnings.filterwarnings("ignore", message=".*torch.distributed.reduce_op.*", category=FutureWarning)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")  # the engine processes' copy
    if "VLLM_LOGGING_CONFIG_PATH" in os.environ:
        return  # the user configured vLLM's logging
    level = os.environ.get("VLLM_LOGGING_LEVEL", level)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"vllm-logging-{level.lower()}.json"
    path.write_text(json.dumps(config(level.upper()), indent=1))
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(path)
