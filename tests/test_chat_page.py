"""The chat page at `/`, driven in headless Chromium (Debian's package) against a live server.

The page is served by the app and loads nothing from elsewhere; the test asks a question the way
a person does and checks what is drawn: the context events in order, their sources, the gate,
the answer (the same text the API gives for the same request), the timeline; then a follow-up
question in the same conversation.
"""

from __future__ import annotations

import os
import shutil

import httpx
import pytest

from tests.sse import read_events

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# `make test` sets this: there the page's test must run, never skip.
REQUIRED = os.environ.get("STREAMRAG_BROWSER_REQUIRED") == "1"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUESTION = "What does the finally clause of a try statement do?"

if not os.path.exists(CHROMIUM) and not REQUIRED:
    pytest.skip("Chromium is not installed (`make test` installs Debian's chromium)", allow_module_level=True)


@pytest.fixture
async def page():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # a fresh profile each launch
        try:
            page = await browser.new_page()
            elsewhere: list[str] = []  # self-contained: nothing but the server itself is asked
            page.on("request", lambda r: None if r.url.startswith("http://127.0.0.1") else elsewhere.append(r.url))
            yield page
            assert elsewhere == [], f"the page asked for something it should not have: {elsewhere}"
        finally:
            await browser.close()


async def _ask(page, question: str) -> None:
    await page.fill("#question", question)
    await page.click("#send")
    await page.wait_for_selector("#status[data-done]", timeout=120_000)
    assert await page.get_attribute("#status", "data-done") == "1", await page.text_content("#status")


async def test_the_page_shows_context_streaming_then_the_answer(app_server, page):
    await page.goto(app_server + "/")
    await page.wait_for_selector("#collection option[value='python-docs']", state="attached")
    await page.select_option("#collection", "python-docs")
    await page.fill("#top_k", "3")
    await page.fill("#temperature", "0")
    await _ask(page, QUESTION)

    # Context events, then the gate, in the order they streamed.
    kinds = await page.eval_on_selector_all("#events .event", "nodes => nodes.map(n => n.classList[1])")
    assert kinds[-1] == "gate" and kinds.count("context") >= 2 and "gate" not in kinds[:-1]
    stages = await page.eval_on_selector_all("#events .event.context", "nodes => nodes.map(n => n.dataset.stage)")
    assert stages == ["dense", "hybrid"]
    last = page.locator("#events .event.context").last.locator(".chunk .src")
    titles = await last.evaluate_all("n => n.map(x => x.textContent)")
    sources = await last.evaluate_all("n => n.map(x => x.title)")
    assert len(titles) == 3 and all(titles) and any(s.endswith("try.md") for s in sources)
    answer = await page.text_content("#conversation .turn:nth-child(2) .answer")
    timeline = await page.text_content("#timeline")
    assert "gate: done" in timeline and "TTFT" in timeline

    # The answer drawn is the answer the API gives for the same request (greedy, same engine).
    body = {"messages": [{"role": "user", "content": QUESTION}], "stream": True, "temperature": 0,
            "retrieval": {"collection": "python-docs", "top_k": 3, "events": True}}
    async with httpx.AsyncClient(base_url=app_server, timeout=60) as http:
        events = await read_events(http, "/v1/chat/completions", body)
    expected = "".join(c["delta"].get("content") or "" for n, d in events if n == "message" and d != "[DONE]"
                       for c in d["choices"])
    assert answer == expected and answer.strip()

    # A follow-up in the same conversation: both turns drawn, the second answered too.
    await _ask(page, "And when does it run?")
    turns = await page.eval_on_selector_all("#conversation .turn .who", "n => n.map(x => x.textContent)")
    assert turns == ["you", "assistant", "you", "assistant"]
    assert (await page.text_content("#conversation .turn:nth-child(4) .answer")).strip()


async def test_a_refused_request_is_shown_not_swallowed(app_server, page):
    await page.goto(app_server + "/")
    await page.wait_for_selector("#collection option[value='python-docs']", state="attached")
    await page.fill("#max_wait", "99999")  # the API takes deadlines up to an hour
    await page.fill("#question", QUESTION)
    await page.click("#send")
    await page.wait_for_selector("#status[data-done='error']", timeout=60_000)
    assert "retrieval.gate.max_wait_s" in await page.text_content("#status")
