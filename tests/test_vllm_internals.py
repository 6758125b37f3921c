"""Fails loudly, naming what moved, when a vLLM upgrade changes what the scheduler relies on."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from engine.local.scheduler import SCHEDULER_CLS, StreamScheduler
from engine.local.vllm_internals import check_vllm_internals

LOCAL = Path(__file__).resolve().parents[1] / "engine" / "local"


def test_vllm_internals_are_where_the_scheduler_expects_them():
    check_vllm_internals()  # raises VLLMInternalsError listing each missing piece


def test_scheduler_class_is_importable_by_name():
    # vLLM resolves `scheduler_cls` by dotted name inside its engine process.
    module, _, name = SCHEDULER_CLS.rpartition(".")
    assert getattr(importlib.import_module(module), name) is StreamScheduler


def test_only_vllm_internals_touches_vllms_private_state():
    """Private attributes of vLLM objects (`x._name`) are read or written in vllm_internals.py only
    (scheduler.py overrides vLLM's hook methods, which is how it plugs in, not a state touch)."""
    ours = {"_ctx", "_llm", "_options", "_ledger", "_cost", "_meta", "_preempted", "_last_status",
            "_rank", "_complete", "_candidate", "_note_resumed", "_event", "_write_status", "_update_request_as_session",
            "_free_request"}
    offenders = []
    for path in LOCAL.glob("*.py"):
        if path.name in ("vllm_internals.py",):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in ("self", "cls") and path.name != "scheduler.py":
                    continue  # a class's own private state
                if node.attr in ours:
                    continue
                offenders.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert not offenders, offenders
