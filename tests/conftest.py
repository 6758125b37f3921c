"""Shared fixtures. The vLLM engine starts once per test session (start-up takes ~20 s)."""

from __future__ import annotations

import os

# Quiet vLLM's per-request logging and never reach for a model hub.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# STREAMRAG_TESTS=engine loads the engine's fixtures alone: for running the engine tests where
# only vLLM is installed (a GPU machine; README "On a GPU"). Unset: everything.
pytest_plugins = ["tests.engine_fixtures"] + ([] if os.environ.get("STREAMRAG_TESTS") == "engine" else [
    "tests.retrievers_fixtures", "tests.app_fixtures", "tests.integrations_fixtures", "tests.remote_fixtures"])
