"""The session API: clients that retrieve on their side push context as it comes."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from fastapi import APIRouter, Depends, Query, Request

from app.deps import check_model, current_engine, now, require_api_key, sampling_args
from app.errors import from_engine_error
from app.responses import respond
from app.runs import session_run
from app.schemas import ContextPush, GenerateRequest, SessionCreate

router = APIRouter(prefix="/v1/sessions", dependencies=[Depends(require_api_key)])


@router.post("")
async def create_session(body: SessionCreate, request: Request):
    check_model(request, body.model)
    engine = current_engine(request)
    registry = request.app.state.sessions
    registry.check_room()
    try:
        session = await engine.open_session(
            question=body.question, system=body.system,
            gate=body.gate.to_gate() if body.gate else None, update_mode=body.update_mode,
        )
    except Exception as error:
        raise from_engine_error(error, "question") from error
    registry.add(session)
    return {"id": session.id, "object": "session", "prompt_tokens": len(session.prompt_token_ids)}


@router.post("/{session_id}/context")
async def push_context(session_id: str, body: ContextPush, request: Request):
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


@router.post("/{session_id}/generate")
async def generate(session_id: str, body: GenerateRequest, request: Request):
    t_request = now()
    registry = request.app.state.sessions
    session = registry.claim(session_id)  # 409 if it cannot generate; never touches a running one

    async def events():
        with registry.in_use(session_id):
            async for event in session_run(session, sampling_args(request, body), t_request):
                yield event

    return await respond(request, events(), "chat", body.stream, body.include_usage, param="session_id")


@router.get("/{session_id}")
async def get_session(session_id: str, request: Request,
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


@router.delete("/{session_id}")
async def delete_session(session_id: str, request: Request):
    await request.app.state.sessions.remove(session_id)
    return {"id": session_id, "object": "session", "deleted": True}
