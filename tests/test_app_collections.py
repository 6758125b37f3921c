"""Collections over HTTP: staged retrieval seen as context events, ids resolved, deletion."""

from __future__ import annotations

import httpx

from tests.sse import read_events

MODEL = "tiny"


async def test_staged_rankings_arrive_before_the_gate_and_ids_resolve(app_server):
    body = {"model": MODEL, "stream": True, "temperature": 0, "max_tokens": 4,
            "messages": [{"role": "user", "content": "What does the finally clause of a try statement do?"}],
            "retrieval": {"collection": "python-docs", "top_k": 3, "events": True},
            "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient(base_url=app_server, timeout=60) as http:
        events = await read_events(http, "/v1/chat/completions", body)
        names = [name for name, _ in events]
        gate = names.index("gate")
        contexts = [events[i][1]["streamrag"]["context"] for i, n in enumerate(names[:gate]) if n == "context"]
        # The default retrieval streams its stages: dense, then hybrid, each a whole ranking.
        assert [c["stage"] for c in contexts] == ["dense", "hybrid"]
        assert all(c["op"] == "update" and len(c["chunks"]) == 3 for c in contexts)
        for context in contexts:
            texts = [c["text"] for c in context["chunks"]]
            assert len(set(texts)) == len(texts)
            assert all(c["title"] and c["source"].endswith(".md") for c in context["chunks"])
        hybrid = contexts[-1]["chunks"]
        assert [c["score"] for c in hybrid] == sorted((c["score"] for c in hybrid), reverse=True)
        # Every id a context event names resolves to the chunk that was shown.
        for shown in hybrid:
            found = await http.get(f"/v1/collections/python-docs/chunks/{shown['id']}")
            assert found.status_code == 200, found.text
            chunk = found.json()
            assert (chunk["id"], chunk["text"], chunk["source"]) == (shown["id"], shown["text"], shown["source"])
            assert chunk["document_id"] == shown["source"] and chunk["chunk_index"] >= 0
        missing = await http.get("/v1/collections/python-docs/chunks/not-an-id")
        assert missing.status_code == 404 and missing.json()["error"]["param"] == "chunk_id"
        other = await http.get(f"/v1/collections/no-such/chunks/{hybrid[0]['id']}")
        assert other.status_code == 404


async def test_documents_and_collections_can_be_deleted(app_server):
    async with httpx.AsyncClient(base_url=app_server, timeout=60) as http:
        added = await http.post("/v1/collections/scratch/documents", json={"documents": [
            {"id": "notes/a.md", "text": "Alpha notes about the gate."},
            {"id": "notes/b.md", "text": "Beta notes about the engine."}]})
        assert added.status_code == 200 and added.json()["chunks"] == 2
        gone = await http.delete("/v1/collections/scratch/documents/notes/a.md")
        assert gone.status_code == 200 and gone.json() == {
            "id": "notes/a.md", "object": "document", "collection": "scratch", "deleted": True, "chunks": 1}
        again = await http.delete("/v1/collections/scratch/documents/notes/a.md")
        assert again.status_code == 404 and again.json()["error"]["param"] == "document_id"
        points = {c["name"]: c["points"] for c in (await http.get("/v1/collections")).json()["data"]}
        assert points["scratch"] == 1
        dropped = await http.delete("/v1/collections/scratch")
        assert dropped.json() == {"id": "scratch", "object": "collection", "deleted": True}
        assert "scratch" not in [c["name"] for c in (await http.get("/v1/collections")).json()["data"]]
        assert (await http.delete("/v1/collections/scratch")).status_code == 404
        bad = await http.delete("/v1/collections/..%2Fetc")
        assert bad.status_code in (400, 404, 422) and bad.status_code != 500
