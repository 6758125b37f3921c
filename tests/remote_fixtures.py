"""Two real vLLM servers (CPU build, tiny model, prefix caching) on 127.0.0.1 for the remote tests.

They start together, once per test session and only when a remote test asks for them (each
takes ~20-40 s on 2 cores; started concurrently they overlap). Every test gets its own
`VLLMServersEngine` on them. The failover test kills one; `replicas` starts it again for any test
that comes after, so test order does not matter (and a run that ends with the failover test
pays nothing for it).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable

import pytest

from engine.models import build_tiny_model
from engine.remote import VLLMServersEngine
from eval.server_process import VllmServerProcess

REMOTE_BLOCK_SIZE = 32  # small blocks make block-granular reuse visible
START_TIMEOUT_S = 300.0  # generous: a loaded 2-core machine has taken 80 s for one server


class CuttingProxy:
    """A TCP relay on 127.0.0.1 in front of one server, transparent until armed.

    Once armed, the first reply from the server that carries a generated token is forwarded,
    then every connection is cut (reset) and no new one is accepted, and `on_cut` runs (the
    test SIGKILLs the server there). To the client the server died mid-answer, at a point the
    test chooses: a bare SIGKILL after the first token races the server, which can finish a
    short answer before the kill lands on a loaded machine.
    """

    _TOKEN = re.compile(rb'"token_ids":\[\d')

    def __init__(self, target_port: int, on_cut: Callable[[], None]) -> None:
        self.target_port = target_port
        self.on_cut = on_cut
        self.armed = self.cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    def arm(self) -> None:
        self.armed = True

    async def close(self) -> None:
        self._cut_all()
        await self._server.wait_closed()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.cut:
            client_w.transport.abort()
            return
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {client_w, server_w}
        await asyncio.gather(self._pipe(client_r, server_w, False), self._pipe(server_r, client_w, True),
                             return_exceptions=True)
        for writer in (client_w, server_w):
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, from_server: bool) -> None:
        pending = False  # a token event started; cut at its end
        while data := await src.read(65536):
            end = -1
            if from_server and self.armed and not self.cut:
                if not pending and (token := self._TOKEN.search(data)):
                    pending, data_from = True, token.end()
                else:
                    data_from = 0
                if pending:
                    end = data.find(b"\n\n", data_from)
            # One read may hold the whole answer (the server outran this relay): forward only
            # up to the end of the first token's event, so the answer is cut mid-way every time.
            dst.write(data if end == -1 else data[: end + 2])
            await dst.drain()
            if end != -1:
                self._cut_all()
                self.on_cut()
                return

    def _cut_all(self) -> None:
        self.cut = True
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()


class ReplicaPool:
    def __init__(self, servers: list[VllmServerProcess]) -> None:
        self.servers = servers

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    async def ensure_running(self) -> None:
        dead = [s for s in self.servers if not s.running]
        for server in dead:
            server.start()
        await asyncio.gather(*(s.wait_ready(START_TIMEOUT_S) for s in dead))


@pytest.fixture(scope="session")
async def replica_pool(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ReplicaPool]:
    model = build_tiny_model()
    logs = tmp_path_factory.mktemp("vllm-servers")
    cpus = os.cpu_count() or 1
    servers = [
        VllmServerProcess(model, logs / f"replica{i}.log", block_size=REMOTE_BLOCK_SIZE,
                          served_model_name="tiny", cpu_bind=str(i % cpus))
        for i in range(2)
    ]
    try:
        for server in servers:
            server.start()
        await asyncio.gather(*(s.wait_ready(START_TIMEOUT_S) for s in servers))
        yield ReplicaPool(servers)
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def replicas(replica_pool: ReplicaPool) -> ReplicaPool:
    await replica_pool.ensure_running()
    return replica_pool


@pytest.fixture
async def remote_engine(replicas: ReplicaPool) -> AsyncIterator[VLLMServersEngine]:
    async with VLLMServersEngine(replicas.urls, model="tiny", block_size=REMOTE_BLOCK_SIZE,
                            probe_interval_s=0.5) as engine:
        yield engine
