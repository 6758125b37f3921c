"""The session API: clients that retrieve on their side push context as it comes."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Request

from app.deps import check_model, now, require_api_key, sampling_args
from app.errors import from_engine_error
from app.responses import respond
from app.runs import session_run
from app.schemas import ContextPush, GenerateRequest, SessionCreate
from engine import Chunk

router = APIRouter(prefix="/v1/sessions", dependencies=[Depends(require_api_key)])


@router.post("")
async def create_session(body: SessionCreate, request: Request):
    check_model(request, body.model)
    state = request.app.state
    try:
        session = state.engine.open_session(
            question=body.question, system=body.system,
            gate=body.gate.to_gate() if body.gate else None, update_mode=body.update_mode,
        )
    except Exception as error:
        raise from_engine_error(error, "question") from error
    state.sessions.add(session)
    return {"id": session.id, "object": "session", "prompt_tokens": len(session.prompt_token_ids)}


@router.post("/{session_id}/context")
async def push_context(session_id: str, body: ContextPush, request: Request):
    session = request.app.state.sessions.get(session_id)
    try:
        if body.op == "done":
            await session.finish_context()
            return {"accepted": 0, "dropped": 0, "prompt_tokens": len(session.prompt_token_ids),
                    "gate_open": session.gate_is_open}
        chunks = [Chunk(text=c.text, id=c.id, score=c.score) for c in body.chunks]
        receipt = await (session.append(chunks) if body.op == "append" else session.update(chunks))
    except Exception as error:
        raise from_engine_error(error, "chunks") from error
    return {**asdict(receipt), "gate_open": session.gate_is_open}


@router.post("/{session_id}/generate")
async def generate(session_id: str, body: GenerateRequest, request: Request):
    t_request = now()
    registry = request.app.state.sessions
    session = registry.get(session_id)
    if session.state != "open":
        raise from_engine_error(ValueError(f"session {session_id} is {session.state}"), "session_id")

    async def events():
        with registry.in_use(session_id):
            async for event in session_run(session, sampling_args(request, body), t_request):
                yield event

    return await respond(request, events(), "chat", body.stream, body.include_usage, param="session_id")


@router.get("/{session_id}")
async def get_session(session_id: str, request: Request):
    session = request.app.state.sessions.get(session_id)
    return {"id": session.id, "object": "session", "state": session.state,
            "gate_open": session.gate_is_open, "stats": asdict(session.stats),
            "prompt_token_ids": session.prompt_token_ids,
            "chunks": [asdict(c) for c in session.chunks]}


@router.delete("/{session_id}")
async def delete_session(session_id: str, request: Request):
    await request.app.state.sessions.remove(session_id)
    return {"id": session_id, "object": "session", "deleted": True}
