"""Fails loudly, naming what moved, when a vLLM upgrade changes what the scheduler relies on."""

from __future__ import annotations

from engine.vllm_scheduler import StreamScheduler, check_vllm_internals


def test_vllm_internals_are_where_the_scheduler_expects_them():
    check_vllm_internals()  # raises VLLMInternalsError listing each missing piece


def test_scheduler_class_is_importable_by_name():
    # vLLM resolves `scheduler_cls` by dotted name inside its engine process.
    import importlib

    from engine.vllm_scheduler import SCHEDULER_CLS

    module, _, name = SCHEDULER_CLS.rpartition(".")
    assert getattr(importlib.import_module(module), name) is StreamScheduler
