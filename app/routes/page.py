"""`GET /`: the chat page, one self-contained HTML file (app/static/chat.html, no CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()
PAGE = Path(__file__).resolve().parents[1] / "static" / "chat.html"


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def chat_page() -> HTMLResponse:
    """Open to everyone like /health: the page itself holds nothing; its calls send the API key."""
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))  # 12 KB: read per request, no cache to keep
