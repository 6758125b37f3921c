"""Health, models, metrics and collections."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from app.deps import require_api_key
from app.errors import APIError
from app.schemas import DocumentsIn
from retrievers import Document

public = APIRouter()
router = APIRouter(dependencies=[Depends(require_api_key)])


@public.get("/health")
async def health(request: Request):
    """200 while the engine can serve; 503 with the reason while it is dead or restarting."""
    supervisor = request.app.state.supervisor
    state = supervisor.health()
    engine = supervisor.engine
    body = {"status": "ok" if state.ok else "unavailable", "reason": state.reason,
            "model": request.app.state.settings.model_name, "restarts": supervisor.restarts,
            "sessions": engine.live_sessions, "kv_blocks_in_use": engine.kv_blocks_in_use() if state.ok else None}
    return JSONResponse(body, status_code=200 if state.ok else 503)


@router.get("/v1/models")
async def models(request: Request):
    s = request.app.state.settings
    return {"object": "list", "data": [{"id": s.model_name, "object": "model", "owned_by": "streamrag",
                                        "max_model_len": request.app.state.supervisor.engine.max_model_len}]}


@router.get("/metrics")
async def metrics(request: Request):
    state = request.app.state
    engine = state.supervisor.engine
    healthy = state.supervisor.health().ok
    preemption = getattr(engine, "preemption_stats", None) if healthy else None
    body = state.metrics.render(engine.live_sessions, engine.kv_blocks_in_use() if healthy else 0,
                                preemption() if preemption else None)
    return Response(body, media_type="text/plain; version=0.0.4")


def _retrieval(request: Request):
    if request.app.state.retrieval is None:
        raise APIError(400, "this server runs without retrieval (retrieval=false)", param="collection")
    return request.app.state.retrieval


@router.get("/v1/collections")
async def list_collections(request: Request):
    store = _retrieval(request).store
    names = await store.collection_names()
    return {"object": "list", "data": [{"name": n, "points": await store.count(n)} for n in names]}


@router.post("/v1/collections/{name}/documents")
async def add_documents(name: str, body: DocumentsIn, request: Request):
    retrieval = _retrieval(request)
    documents = []
    for doc in body.documents:
        # Without an id, the content names the document: posting it again changes nothing.
        doc_id = doc.id or hashlib.sha256(doc.text.encode()).hexdigest()[:16]
        documents.append(Document(id=doc_id, path=Path(doc_id), text=doc.text,
                                  title=doc.metadata.get("title", doc_id)))
    try:
        return await retrieval.add_documents(name, documents)
    except ValueError as error:
        raise APIError(400, str(error), param="name") from error
