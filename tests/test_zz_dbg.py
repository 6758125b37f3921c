import pytest, time
from tests.integrations_fixtures import QUESTION, LedgerProbe
from tests.test_integrations_llamaindex import fusion, MAX_TOKENS, llm  # noqa
from integrations.llamaindex import StreamingQueryEngine

class Probe(LedgerProbe):
    def __call__(self, r):
        super().__call__(r)
        from integrations import active_feed
        s = active_feed().session.session
        print("PROBE", r.stagger.delay, time.monotonic(), self.computed_at[r.stagger.delay], s._computed, s._inflight, len(s._vllm_tokens), len(s._tokens))

@pytest.mark.parametrize("i", range(4))
async def test_dbg(engine, llm, node_retrievers, i):
    probe = Probe(engine)
    qe = StreamingQueryEngine.from_args(fusion(node_retrievers(probe), llm), llm=llm, system=f"dbg {i} {time.time()}")
    r = await qe.aquery(QUESTION)
    print("EVENTS", [(e["t"], e["prompt_tokens"]) for e in r.metadata["streamrag_context"]], probe.computed_at)
