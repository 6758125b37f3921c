"""A replica killed mid-run (SIGKILL of its whole process group) loses no session.

Sessions on both replicas are warmed; one session of the doomed replica is streaming its answer
when the replica dies. Afterwards every session must finish: those still taking context move to
the survivor and re-send their whole prompt there, the streaming one resumes there with what it
had already produced. Each answer must equal the survivor's one-shot completion of its prompt.

The doomed server is reached through `CuttingProxy`, which cuts the streaming answer right after
its first token and kills the server at that moment, so the crash lands mid-answer every time.
"""

from __future__ import annotations

import asyncio
import random
from contextlib import aclosing

from engine import Sampling
from engine.remote import VLLMServersEngine, VLLMServersSession
from engine.remote.replicas import NoReplicaError
from eval.server_process import free_port
from retrievers import Chunk
from tests.remote_fixtures import REMOTE_BLOCK_SIZE, CuttingProxy
from tests.text import random_text

STREAMED = 48


def chunks(tag: str, n: int) -> list[Chunk]:
    return [Chunk(text=random_text(random.Random(f"{tag}-{i}"), 40, 40), id=f"{tag}-{i}") for i in range(n)]


async def open_on(engine: VLLMServersEngine, url: str, count: int) -> list[VLLMServersSession]:
    out: list[VLLMServersSession] = []
    for i in range(64):
        if len(out) == count:
            return out
        s = await engine.open_session(question=f"Failover question {i}?")
        if s.replica == url:
            out.append(s)
        else:
            await s.abort()
    raise AssertionError(f"64 random session ids gave fewer than {count} sessions on {url}")


async def collect(session: VLLMServersSession, max_tokens: int) -> tuple[int, ...]:
    ids: list[int] = []
    async with aclosing(session.generate(Sampling(max_tokens=max_tokens, ignore_eos=True))) as deltas:
        async for delta in deltas:
            ids.extend(delta.token_ids)
    return tuple(ids)


async def test_killing_a_replica_mid_run_loses_no_session(replicas):
    doomed_server, survivor_server = replicas.servers
    proxy = await CuttingProxy(doomed_server.port, on_cut=doomed_server.kill).start()
    doomed, survivor = proxy.url, survivor_server.url
    async with VLLMServersEngine([doomed, survivor], model="tiny", block_size=REMOTE_BLOCK_SIZE,
                            probe_interval_s=0.5) as engine:
        streaming, *taking_context = await open_on(engine, doomed, 3)
        bystander = (await open_on(engine, survivor, 1))[0]
        everyone = [streaming, *taking_context, bystander]
        for s in everyone:
            await s.append(chunks(s.id, 2))
            await s.wait_prefilled()

        await streaming.finish_context()
        proxy.arm()  # the first token of the streaming answer gets through, then the server dies
        answers = {streaming.id: await asyncio.wait_for(collect(streaming, STREAMED), 120)}
        assert proxy.cut and not doomed_server.running
        for s in [*taking_context, bystander]:
            await s.append(chunks(f"{s.id}-after", 2))
            await s.finish_context()
            answers[s.id] = await collect(s, 12)

        assert engine.replicas.live == (survivor,)
        for s in everyone:
            assert s.state == "finished" and s.replica == survivor
            n = STREAMED if s is streaming else 12
            expected = await engine.complete(prompt_token_ids=s.prompt_token_ids, replica=survivor, sampling=Sampling(max_tokens=n, ignore_eos=True))
            assert answers[s.id] == expected.token_ids, s.id
        assert bystander.failovers == 0
        assert all(s.failovers == 1 for s in [streaming, *taking_context])
        # The streaming session resumed: its last request carried the prompt plus tokens already sent.
        resumed = streaming.server_requests[-1]
        assert resumed.replica == survivor and resumed.kind == "final"
        assert len(streaming.prompt_token_ids) < resumed.prompt_tokens < len(streaming.prompt_token_ids) + STREAMED
        assert streaming.stats.generated_tokens == STREAMED
        for s in taking_context:  # re-sent whole: the survivor had nothing of them
            assert [r.replica for r in s.server_requests[-2:]] == [survivor, survivor]
            assert s.stats.invalidated_tokens > 0

        # A new session now lands on the survivor; none is lost to the dead replica.
        late = await engine.open_session(question="After the crash?")
        assert late.replica == survivor
        await late.abort()
    await proxy.close()


async def test_no_live_server_is_a_typed_error_naming_the_urls(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    engine = VLLMServersEngine([url], model="tiny")
    try:
        await engine.start()
    except NoReplicaError as error:
        assert url in str(error)
    else:
        raise AssertionError("start() succeeded without a server")
    finally:
        await engine.close()
