"""vLLM's engine core and worker stop spinning on the queues between them on CPU (EngineConfig.busy_poll).

vLLM's shared-memory queue readers spin for a second after each message; a streaming session
sends a piece every few hundred ms, so on a 2-core machine the two processes would hold both
cores between pieces. With busy polling off they sleep on their notification socket, a
millisecond at a time. These tests check the switch in each process and its effect: a paused
session costs vLLM's processes little CPU.
"""

from __future__ import annotations

import asyncio

import psutil
import pytest
import zmq
from vllm.distributed.device_communicators.shm_broadcast import SpinCondition
from vllm.utils.network_utils import get_open_zmq_ipc_path

import engine.local.vllm_internals as vi
from engine import EngineConfig
from engine.local.options import SchedulerOptions
from eval.machine import cpu_seconds_by_name
from retrievers.events import Chunk


@pytest.fixture
def spinning_wait():
    """vLLM's own SpinCondition.wait, put back after the test (the patch is per process)."""
    original = SpinCondition.wait
    yield
    SpinCondition.wait = original


def poll_timeouts(context: zmq.Context, read_ago_s: float) -> list:
    """The timeouts a reader that last read `read_ago_s` ago passes to its socket poll in one
    wait (none: it spun)."""
    reader = SpinCondition(is_reader=True, context=context, notify_address=get_open_zmq_ipc_path())
    polls = []
    poll = reader.poller.poll
    reader.poller.poll = lambda timeout=None: polls.append(timeout) or poll(timeout=0)
    reader.record_read()
    reader.last_read -= read_ago_s
    reader.wait(timeout_ms=10)
    return polls


def test_stop_busy_polling_makes_a_reader_sleep_briefly_instead_of_spinning(spinning_wait):
    context = zmq.Context()
    try:
        # vLLM's own: inside its one-second window a reader spins, after it a reader sleeps.
        assert vi.busy_polling() and poll_timeouts(context, 0.0) == [] and poll_timeouts(context, 2.0) == [10]
        vi.stop_busy_polling()
        vi.stop_busy_polling()  # idempotent: wrapped once
        # Inside the window: a sleep of at most QUIET_POLL_MS; after it, vLLM's own wait.
        assert not vi.busy_polling()
        assert poll_timeouts(context, 0.0) == [vi.QUIET_POLL_MS] and poll_timeouts(context, 2.0) == [10]
    finally:
        context.destroy(linger=0)


@pytest.mark.parametrize(("platform", "busy_poll", "expected"), [
    ("cpu", None, False), ("cuda", None, True), ("cpu", True, True), ("cuda", False, False),
])
def test_busy_poll_default_is_off_on_cpu_only(platform, busy_poll, expected):
    config = EngineConfig(platform=platform, busy_poll=busy_poll)
    assert config.busy_polling is expected
    assert SchedulerOptions.from_config(config, None, None).busy_poll is expected


def test_busy_poll_rejects_a_non_boolean():
    with pytest.raises(ValueError, match="busy_poll"):
        EngineConfig(busy_poll="yes")


def vllm_cpu_seconds() -> float:
    """CPU seconds used so far by vLLM's engine core and worker (this process's children)."""
    return sum(s for name, s in cpu_seconds_by_name(psutil.Process()).items() if name.startswith("VLLM::"))


async def test_the_worker_stops_busy_polling_on_cpu(engine):
    assert engine.config.on == "cpu" and not engine.config.busy_polling
    assert await engine._llm.collective_rpc("streamrag_busy_polling") == [False]


async def test_a_paused_session_leaves_vllms_processes_idle(engine, idle_blocks):
    session = await engine.open_session("What does the for statement do?")
    try:
        for i in range(5):  # a few pieces, as a retriever streams them
            await session.append([Chunk(f"busy-{i}", f"Piece {i}: the for statement iterates over a sequence. " * 4)])
            await session.wait_prefilled()
        before = vllm_cpu_seconds()
        await asyncio.sleep(2.0)  # waiting for the next piece: with vLLM's spin, ~1 s of CPU here
        used = vllm_cpu_seconds() - before
    finally:
        await session.abort()
    assert used < 0.5, f"vLLM's processes used {used:.2f} CPU s in 2 s while the session waited"
    assert await engine.wait_for_blocks(idle_blocks) == idle_blocks


def test_the_busy_poll_bench_measures_both_settings(tmp_path, capsys):
    """`python -m eval.busy_poll` on the tiny model: one row per setting, each with the CPU of
    vLLM's two processes in both phases, and its JSON."""
    import json

    from eval.busy_poll import main

    main(["--model", "tiny", "--seconds", "1", "--pieces", "3", "--gap", "0.05", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "busy-poll.json").read_text())["rows"]
    assert [r["busy_poll"] for r in rows] == [True, False]
    for row in rows:
        assert row["one_shot"]["count"] >= 1 and row["streaming"]["count"] == 3
        for phase in ("one_shot", "streaming"):
            assert {"EngineCore", "Worker", "server"} <= row[phase].keys()
    assert "busy_poll" in capsys.readouterr().out
