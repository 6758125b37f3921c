"""app/quiet_logs.py: the known-harmless vLLM warnings are dropped, nothing else is."""

from __future__ import annotations

import logging
import logging.config

from app.quiet_logs import HARMLESS, KnownHarmless, config


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("vllm.platforms.cpu", logging.WARNING, __file__, 1, msg, (), None)


def test_exactly_the_known_messages_are_dropped():
    keep = KnownHarmless()
    for opening in HARMLESS:
        assert not keep.filter(_record(opening + " and the rest of the message"))
    for real in ("Out of memory while allocating KV cache", "Model architecture not supported",
                 "The request was preempted", "Triton kernels failed"):
        assert keep.filter(_record(real))


def test_the_configuration_is_one_vllm_accepts(tmp_path):
    import vllm.logging_utils  # noqa: F401  the formatter the configuration names

    logger = logging.getLogger("vllm")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        logging.config.dictConfig(config("WARNING"))  # raises on a configuration it cannot apply
        handler = logger.handlers[0]
        assert handler.level == logging.WARNING and isinstance(handler.filters[0], KnownHarmless)
    finally:  # this process's engine keeps the logging it had
        logger.handlers[:], logger.level, logger.propagate = saved
