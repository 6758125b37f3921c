"""Health, models and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from app.deps import require_api_key
from app.response_models import HealthOut, ModelList, errors

public = APIRouter()
router = APIRouter(dependencies=[Depends(require_api_key)])
AUTH = errors(401)


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
