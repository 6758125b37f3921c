"""Schemathesis against the app's own OpenAPI document, on a real uvicorn (issue 14, case 10).

Every check is on: no 5xx, only the status codes and content types the document declares, every
JSON body conforming to its declared model, invalid input refused and valid input accepted.
A bounded budget: `EXAMPLES` schema-valid and `NEGATIVE` schema-invalid cases per operation
(over 500 in all), answers capped at a few
tokens so that a case costs milliseconds. Schemathesis calls are blocking, so they run in a
thread while the server keeps serving on the test's event loop (and the session's engine).
"""

from __future__ import annotations

import asyncio

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from app.main import create_app
from app.retrieval import Retrieval
from app.settings import Settings
from retrievers.ingest import ingest
from retrievers.store import MEMORY, QdrantStore
from tests.app_fixtures import start_server, stop_server

EXAMPLES = 50
NEGATIVE = 25


def _schema_app(engine, embedder, store):
    # Text small enough that no schema-valid prompt outgrows the context (tokenization cannot be
    # declared in a schema); more text is a 413, which the checks accept as a capacity limit.
    settings = Settings(model="tiny", session_ttl_s=30, max_tokens_default=4, max_tokens_limit=8, max_sessions=64,
                        max_chars=400)
    return create_app(settings, engine=engine, retrieval=Retrieval(store, embedder))


# Every check on. A 413 (too much text for this server's limits, which depend on tokenization
# and so cannot be declared) counts as a capacity limit, as schemathesis counts a 429.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]
"""


def _run_all(url: str) -> dict[str, int]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=SchemathesisConfig.from_str(CONFIG))
    cases: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        _check(operation, GenerationMode.POSITIVE, EXAMPLES, cases)
        raw = operation.definition.raw
        if raw.get("requestBody") or raw.get("parameters"):  # else there is nothing to get wrong
            _check(operation, GenerationMode.NEGATIVE, NEGATIVE, cases)
    return cases


def _check(operation, mode: GenerationMode, examples: int, cases: dict[str, int]) -> None:
    label = f"{operation.method.upper()} {operation.path} {mode.value}"

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case) -> None:
        cases[label] = cases.get(label, 0) + 1
        case.call_and_validate()

    check()


async def test_every_operation_conforms_to_the_document(engine, embedder, small_docs):
    # A store of its own: the cases delete collections and documents.
    store = await QdrantStore.open(MEMORY)
    await ingest([small_docs], collection="python-docs", store=store, embedder=embedder, progress=False)
    server, task, url = await start_server(_schema_app(engine, embedder, store))
    try:
        cases = await asyncio.to_thread(_run_all, url)
    finally:
        await stop_server(server, task)  # ends the sessions the cases opened and never deleted
        await store.close()
    assert sum(cases.values()) >= 500, cases
    assert {"POST /v1/chat/completions positive", "POST /v1/chat/completions negative",
            "POST /v1/sessions positive", "GET /health positive"} <= set(cases)
    assert await engine.wait_for_blocks(0, timeout_s=30) == 0
