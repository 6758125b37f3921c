"""`streamrag chat` driven through a pseudo-terminal against a real server: two turns, each
showing its sources, the gate and the answer, then `/exit`."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Terminal:
    """A child process on a pseudo-terminal: what it printed so far, and typing into it."""

    def __init__(self, *argv: str) -> None:
        self._master, slave = pty.openpty()
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, close_fds=True)
        os.close(slave)
        self.output = ""

    def _read_until(self, text: str, start: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while (found := self.output.find(text, start)) < 0:
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output[-3000:]}"
            assert self.process.poll() is None, f"exited {self.process.returncode}:\n{self.output[-3000:]}"
            try:
                self.output += os.read(self._master, 4096).decode(errors="replace")
            except OSError:
                break
        return found + len(text)

    async def expect(self, text: str, start: int = 0, timeout_s: float = 120) -> int:
        return await asyncio.to_thread(self._read_until, text, start, timeout_s)

    def type(self, line: str) -> None:
        os.write(self._master, (line + "\n").encode())

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        os.close(self._master)


async def test_two_turns_then_exit(app_server, engine):
    term = Terminal(sys.executable, "-m", "app.cli", "chat", "--url", app_server, "--max-tokens", "6", "--top-k", "2")
    try:
        at = await term.expect("> ")
        term.type("What does the else clause of a for loop do?")
        at = await term.expect("ranking:", at)
        at = await term.expect("[1] ", at)  # a source, with where it comes from and a snippet
        at = await term.expect("gate open: done", at)
        at = await term.expect("first token after", at)
        at = await term.expect("prompt tokens prefilled before the gate", at)
        at = await term.expect("> ", at)
        term.type("And of a while loop?")  # a second turn: the first is sent along
        at = await term.expect("first token after", at)
        at = await term.expect("> ", at)
        term.type("/exit")
        assert await asyncio.to_thread(term.process.wait, 30) == 0
    finally:
        term.close()
    assert engine.live_sessions == 0
