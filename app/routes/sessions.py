"""The session API: clients that retrieve on their side push context as it comes."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from app.deps import check_model, check_size, current_engine, now, require_api_key, sampling_args
from app.errors import from_engine_error
from app.response_models import SSE, ChatCompletion, ContextReceiptOut, Deleted, SessionCreated, SessionOut, errors
from app.responses import respond
from app.runs import session_run
from app.schemas import ContextPush, GenerateRequest, SessionCreate

router = APIRouter(prefix="/v1/sessions", dependencies=[Depends(require_api_key)])
SessionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the id `POST /v1/sessions` gave")]


@router.post("", response_model=SessionCreated, responses=errors(400, 401, 404, 413, 429, 503))
async def create_session(body: SessionCreate, request: Request):
    check_model(request, body.model)
    check_size(request, [body.question, body.system or ""] + [t.content for t in body.history], "question",
               items=len(body.history))
    engine = current_engine(request)
    registry = request.app.state.sessions
    registry.check_room()
    try:
        session = await engine.open_session(
            question=body.question, system=body.system,
            gate=body.gate.to_gate() if body.gate else None, update_mode=body.update_mode,
            history=[(t.role, t.content) for t in body.history],
        )
    except Exception as error:
        raise from_engine_error(error, "question") from error
    registry.add(session)
    return {"id": session.id, "object": "session", "prompt_tokens": len(session.prompt_token_ids)}


@router.post("/{session_id}/context", response_model=ContextReceiptOut,
             responses=errors(400, 401, 404, 409, 413, 503))
async def push_context(session_id: SessionId, body: ContextPush, request: Request):
    check_size(request, [c.text for c in body.chunks], "chunks")
    registry = request.app.state.sessions
    session = registry.get(session_id, touch=True)
    try:
        if body.op == "done":
            await session.finish_context()
            return {"accepted": 0, "dropped": 0, "prompt_tokens": len(session.prompt_token_ids),
                    "gate_open": session.gate_is_open}
        chunks = [c.to_chunk() for c in body.chunks]
        push = session.append if body.op == "append" else session.update
        receipt = await push(chunks, last=body.last)
    except Exception as error:
        raise from_engine_error(error, "chunks") from error
    return {**asdict(receipt), "gate_open": session.gate_is_open}


@router.post("/{session_id}/generate", response_model=ChatCompletion,
             responses={200: {"content": SSE}, **errors(400, 401, 404, 409, 503)})
async def generate(session_id: SessionId, body: GenerateRequest, request: Request):
    t_request = now()
    registry = request.app.state.sessions
    sampling = sampling_args(request, body, current_engine(request))
    session = registry.claim(session_id)  # 409 if it cannot generate; never touches a running one

    async def events():
        with registry.in_use(session_id):
            async for event in session_run(session, sampling, t_request):
                yield event

    return await respond(request, events(), "chat", body.stream, body.include_usage, param="session_id",
                         tokens_by_id=body.return_tokens_as_token_ids)


@router.get("/{session_id}", response_model=SessionOut, responses=errors(400, 401, 404))
async def get_session(session_id: SessionId, request: Request,
                      wait_gate_s: float | None = Query(None, ge=0, le=60,
                                                        description="wait up to this long for the gate to open")):
    registry = request.app.state.sessions
    if wait_gate_s:
        live = registry.live(session_id)
        if live is not None and not live.gate_is_open:
            try:
                await asyncio.wait_for(live.wait_gate(), timeout=wait_gate_s)
            except TimeoutError:
                pass
    return registry.describe(session_id)


@router.delete("/{session_id}", response_model=Deleted, responses=errors(400, 401, 404))
async def delete_session(session_id: SessionId, request: Request):
    await request.app.state.sessions.remove(session_id)
    return {"id": session_id, "object": "session", "deleted": True}
