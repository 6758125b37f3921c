"""`POST /v1/chat/completions` and `POST /v1/completions`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request

from app.deps import check_model, check_size, current_engine, now, require_api_key, sampling_args
from app.errors import APIError, from_engine_error
from app.response_models import SSE, ChatCompletion, TextCompletion, errors
from app.responses import respond
from app.runs import completion_run, session_run
from app.schemas import ChatCompletionRequest, CompletionRequest

router = APIRouter(dependencies=[Depends(require_api_key)])
ANSWERS = errors(400, 401, 404, 413, 503)


@router.post("/v1/chat/completions", response_model=ChatCompletion,
             responses={200: {"content": SSE}, **ANSWERS})
async def chat_completions(body: ChatCompletionRequest, request: Request):
    t_request = now()
    check_model(request, body.model)
    check_size(request, [m.text for m in body.messages] + (body.retrieval.queries if body.retrieval else []),
               "messages", items=len(body.messages))
    state = request.app.state
    engine = current_engine(request)
    if body.retrieval is None:
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text}
                    for m in body.messages]
        ids = await asyncio.to_thread(engine.template.chat_ids, messages)  # CPU work off the event loop
        _check_length(engine, ids, "messages")
        sampling = sampling_args(request, body, engine, len(ids))
        return await respond(request, completion_run(engine, ids, sampling, t_request), "chat", body.stream,
                             body.include_usage, tokens_by_id=body.return_tokens_as_token_ids)
    if state.retrieval is None:
        raise APIError(400, "retrieval: this server runs without retrieval (--no-retrieval)", param="retrieval")
    question = body.question
    if not question:
        raise APIError(400, "messages: retrieval needs a user message to retrieve for", param="messages")
    history = _history(body)
    systems = [m.text for m in body.messages if m.role in ("system", "developer")]
    spec = body.retrieval
    sampling = sampling_args(request, body, engine)
    context = await state.retrieval.stream(spec, question)
    try:
        session = await engine.open_session(question=question, system="\n".join(systems) if systems else None,
                                            gate=spec.gate.to_gate() if spec.gate else None, history=history)
    except Exception as error:
        await context.aclose()
        raise from_engine_error(error, "messages") from error
    events = session_run(session, sampling, t_request, context=context, op=spec.mode)
    return await respond(request, events, "chat", body.stream, body.include_usage, extension_events=spec.events,
                         tokens_by_id=body.return_tokens_as_token_ids)


@router.post("/v1/completions", response_model=TextCompletion,
             responses={200: {"content": SSE}, **ANSWERS})
async def completions(body: CompletionRequest, request: Request):
    t_request = now()
    check_model(request, body.model)
    check_size(request, [body.prompt] if isinstance(body.prompt, str) else [], "prompt")
    engine = current_engine(request)
    if isinstance(body.prompt, str):
        ids = await asyncio.to_thread(engine.template.encode, body.prompt)
    else:
        ids = list(body.prompt)
        vocab = len(engine.template.tokenizer)
        if (bad := next((t for t in ids if not 0 <= t < vocab), None)) is not None:
            raise APIError(400, f"prompt: token id {bad} is not in [0, {vocab})", param="prompt", code="invalid_value")
    _check_length(engine, ids, "prompt")
    sampling = sampling_args(request, body, engine, len(ids))
    return await respond(request, completion_run(engine, ids, sampling, t_request), "text", body.stream,
                         body.include_usage, param="prompt", tokens_by_id=body.return_tokens_as_token_ids)


def _history(body: ChatCompletionRequest) -> list[tuple[str, str]]:
    """Every turn but the question (the last user message that says something), in order. The
    question always comes last in the prompt, with the context after it; system messages go to
    the system prompt. Messages that follow the question (rare) are kept, as turns before it."""
    last = max(i for i, m in enumerate(body.messages) if m.role == "user" and m.text.strip())
    return [(m.role, m.text) for i, m in enumerate(body.messages)
            if i != last and m.role not in ("system", "developer") and m.text.strip()]


def _check_length(engine, ids: list[int], param: str) -> None:
    if len(ids) + 1 > engine.max_model_len:
        raise APIError(400, f"{param}: {len(ids)} prompt tokens leave no room in max_model_len "
                       f"{engine.max_model_len}; shorten the prompt", param=param, code="context_length_exceeded")
