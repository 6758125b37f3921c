"""Health, models, metrics and collections."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi import Path as FastAPIPath
from fastapi.responses import JSONResponse, Response

from app.deps import require_api_key
from app.errors import APIError
from app.response_models import CollectionList, HealthOut, IngestOut, ModelList, errors
from app.schemas import DocumentsIn
from retrievers import Document, RetrievalError

public = APIRouter()
router = APIRouter(dependencies=[Depends(require_api_key)])
AUTH = errors(401)
COLLECTION_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


@public.get("/health", response_model=HealthOut,
            responses={503: {"model": HealthOut, "description": "the engine is dead or restarting"}})
async def health(request: Request):
    """200 while the engine can serve; 503 with the reason while it is dead or restarting."""
    supervisor = request.app.state.supervisor
    state = supervisor.health()
    engine = supervisor.engine
    body = {"status": "ok" if state.ok else "unavailable", "reason": state.reason,
            "model": request.app.state.settings.model_name, "restarts": supervisor.restarts,
            "sessions": engine.live_sessions, "kv_blocks_in_use": engine.kv_blocks_in_use() if state.ok else None}
    return JSONResponse(body, status_code=200 if state.ok else 503)


@router.get("/v1/models", response_model=ModelList, responses=AUTH)
async def models(request: Request):
    s = request.app.state.settings
    return {"object": "list", "data": [{"id": s.model_name, "object": "model", "owned_by": "streamrag",
                                        "max_model_len": request.app.state.supervisor.engine.max_model_len}]}


def _metrics_auth(request: Request) -> None:
    if request.app.state.settings.metrics_auth:
        require_api_key(request)


@public.get("/metrics", dependencies=[Depends(_metrics_auth)], response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text format"}, **AUTH})
async def metrics(request: Request):
    """Prometheus metrics; open unless the server runs with `--metrics-auth`."""
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _retrieval(request: Request):
    if request.app.state.retrieval is None:
        raise APIError(400, "this server runs without retrieval (retrieval=false)", param="collection")
    return request.app.state.retrieval


@router.get("/v1/collections", response_model=CollectionList, responses={**AUTH, **errors(400)})
async def list_collections(request: Request):
    store = _retrieval(request).store
    names = await store.collection_names()
    return {"object": "list", "data": [{"name": n, "points": await store.count(n)} for n in names]}


@router.post("/v1/collections/{name}/documents", response_model=IngestOut, responses={**AUTH, **errors(400)})
async def add_documents(body: DocumentsIn, request: Request,
                        name: str = FastAPIPath(pattern=COLLECTION_NAME, description="the collection")):
    retrieval = _retrieval(request)
    documents: dict[str, Document] = {}
    for doc in body.documents:
        # Without an id, the content names the document: posting it again changes nothing.
        # An id given twice in one request: the later document replaces the earlier, as a
        # second request would.
        doc_id = doc.id or hashlib.sha256(doc.text.encode()).hexdigest()[:16]
        documents[doc_id] = Document(id=doc_id, path=Path(doc_id), text=doc.text,
                                     title=doc.metadata.get("title", doc_id))
    try:
        return await retrieval.add_documents(name, list(documents.values()))
    except RetrievalError as error:
        raise APIError(400, str(error), param="name") from error
