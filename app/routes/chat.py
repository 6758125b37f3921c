"""`POST /v1/chat/completions` and `POST /v1/completions`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from app.deps import check_model, current_engine, now, require_api_key, sampling_args
from app.errors import APIError, from_engine_error
from app.responses import respond
from app.runs import completion_run, session_run
from app.schemas import ChatCompletionRequest, CompletionRequest

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    t_request = now()
    check_model(request, body.model)
    state = request.app.state
    engine = current_engine(request)
    sampling = sampling_args(request, body)
    if body.retrieval is None:
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text}
                    for m in body.messages]
        ids = engine.template.chat_ids(messages)
        _check_length(engine, ids, "messages")
        events = completion_run(engine, ids, sampling, t_request)
    else:
        if state.retrieval is None:
            raise APIError(400, "this server runs without retrieval (retrieval=false)", param="retrieval")
        users = [m for m in body.messages if m.role == "user"]
        if not users or not users[-1].text.strip():
            raise APIError(400, "retrieval needs a user message to retrieve for", param="messages")
        systems = [m.text for m in body.messages if m.role in ("system", "developer")]
        spec = body.retrieval
        context = await state.retrieval.stream(spec, users[-1].text)
        try:
            session = await engine.open_session(
                question=users[-1].text, system="\n".join(systems) if systems else None,
                gate=spec.gate.to_gate() if spec.gate else None,
            )
        except Exception as error:
            await context.aclose()
            raise from_engine_error(error, "messages") from error
        events = session_run(session, sampling, t_request, context=context, op=spec.mode)
    return await respond(request, events, "chat", body.stream, body.include_usage)


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    t_request = now()
    check_model(request, body.model)
    engine = current_engine(request)
    ids = list(body.prompt) if isinstance(body.prompt, list) else engine.template.encode(body.prompt)
    vocab = len(engine.tokenizer)
    if any(not 0 <= t < vocab for t in ids):
        raise APIError(400, f"prompt: token ids must be in [0, {vocab})", param="prompt")
    _check_length(engine, ids, "prompt")
    events = completion_run(engine, ids, sampling_args(request, body), t_request)
    return await respond(request, events, "text", body.stream, body.include_usage, param="prompt")


def _check_length(engine, ids: list[int], param: str) -> None:
    if len(ids) + 1 > engine.max_model_len:
        raise APIError(400, f"{param}: {len(ids)} prompt tokens leave no room in max_model_len "
                       f"{engine.max_model_len}; shorten the prompt", param=param, code="context_length_exceeded")
