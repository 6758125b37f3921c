"""Collections: list them, add documents, look a chunk up by the id a context event gave, delete."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi import Path as FastAPIPath

from app.deps import require_api_key
from app.errors import APIError, not_found
from app.response_models import CollectionList, DeletedCollection, DeletedDocument, IngestOut, StoredChunk, errors
from app.schemas import DocumentsIn
from retrievers import Document, RetrievalError

router = APIRouter(prefix="/v1/collections", dependencies=[Depends(require_api_key)])
ANSWERS = errors(400, 401)
COLLECTION_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Name = FastAPIPath(pattern=COLLECTION_NAME, description="the collection")


def _retrieval(request: Request):
    if request.app.state.retrieval is None:
        raise APIError(400, "this server runs without retrieval (retrieval=false)", param="collection")
    return request.app.state.retrieval


@router.get("", response_model=CollectionList, responses=ANSWERS)
async def list_collections(request: Request):
    store = _retrieval(request).store
    names = await store.collection_names()
    return {"object": "list", "data": [{"name": n, "points": await store.count(n)} for n in names]}


@router.post("/{name}/documents", response_model=IngestOut, responses=ANSWERS)
async def add_documents(body: DocumentsIn, request: Request, name: str = Name):
    retrieval = _retrieval(request)
    documents: dict[str, Document] = {}
    for doc in body.documents:
        # Without an id, the content names the document: posting it again changes nothing.
        # An id given twice in one request: the later document replaces the earlier, as a
        # second request would.
        doc_id = doc.id or hashlib.sha256(doc.text.encode()).hexdigest()[:16]
        documents[doc_id] = Document(id=doc_id, path=Path(doc_id), text=doc.text,
                                     title=doc.metadata.get("title", doc_id))
    try:
        return await retrieval.add_documents(name, list(documents.values()))
    except RetrievalError as error:
        raise APIError(400, str(error), param="name") from error


@router.get("/{name}/chunks/{chunk_id}", response_model=StoredChunk, responses=errors(400, 401, 404))
async def get_chunk(request: Request, chunk_id: str = FastAPIPath(max_length=64), name: str = Name):
    """The chunk a context event named: its text, source and where in its document it sits."""
    chunk = await _retrieval(request).store.get(name, chunk_id)
    if chunk is None:
        raise not_found("chunk", f"{name}/{chunk_id}", "chunk_id")
    meta = chunk.metadata
    return {"id": chunk.id, "object": "chunk", "collection": name, "text": chunk.text, "source": chunk.source,
            "title": meta.get("title"), "section": meta.get("section"), "document_id": meta.get("doc_id"),
            "chunk_index": meta.get("chunk_index")}


@router.delete("/{name}", response_model=DeletedCollection, responses=errors(400, 401, 404))
async def delete_collection(request: Request, name: str = Name):
    if not await _retrieval(request).store.drop_collection(name):
        raise not_found("collection", name, "name")
    return {"id": name, "object": "collection", "deleted": True}


@router.delete("/{name}/documents/{document_id:path}", response_model=DeletedDocument, responses=errors(400, 401, 404))
async def delete_document(request: Request, name: str = Name,
                          document_id: str = FastAPIPath(min_length=1, max_length=255)):
    """Every chunk of one document (the id ingest gave it: its path, or the id posted with it)."""
    retrieval = _retrieval(request)
    await retrieval.check_collection(name, "name")
    deleted = await retrieval.store.delete_document(name, document_id)
    if not deleted:
        raise not_found("document", document_id, "document_id")
    return {"id": document_id, "object": "document", "collection": name, "deleted": True, "chunks": deleted}
