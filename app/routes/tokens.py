"""`POST /tokenize`, `POST /detokenize` and `GET /version`, as vLLM's OpenAI server has them."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request

from app import __version__
from app.deps import check_model, check_size, current_engine, require_api_key
from app.errors import APIError
from app.response_models import DetokenizeOut, TokenizeOut, VersionOut, errors
from app.schemas import DetokenizeRequest, TokenizeRequest

router = APIRouter(dependencies=[Depends(require_api_key)])
public = APIRouter()


@router.post("/tokenize", response_model=TokenizeOut, responses=errors(400, 401, 404, 413, 503))
async def tokenize(body: TokenizeRequest, request: Request):
    check_model(request, body.model)
    engine = current_engine(request)
    if body.messages is not None:
        check_size(request, [m.text for m in body.messages], "messages", items=len(body.messages))
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text} for m in body.messages]
        ids = await asyncio.to_thread(engine.template.chat_ids, messages, body.add_generation_prompt)
    else:
        check_size(request, [body.prompt], "prompt")
        tokenizer = engine.template.tokenizer
        ids = await asyncio.to_thread(tokenizer.encode, body.prompt, add_special_tokens=body.add_special_tokens)
    return {"count": len(ids), "max_model_len": engine.max_model_len, "tokens": list(ids), "token_strs": None}


@router.post("/detokenize", response_model=DetokenizeOut, responses=errors(400, 401, 404, 503))
async def detokenize(body: DetokenizeRequest, request: Request):
    check_model(request, body.model)
    engine = current_engine(request)
    tokenizer = engine.template.tokenizer
    vocab = len(tokenizer)
    if (bad := next((t for t in body.tokens if t >= vocab), None)) is not None:
        raise APIError(400, f"tokens: token id {bad} is not in [0, {vocab})", param="tokens", code="invalid_value")
    return {"prompt": await asyncio.to_thread(tokenizer.decode, body.tokens)}


@public.get("/version", response_model=VersionOut)
async def version():
    return {"version": __version__}
