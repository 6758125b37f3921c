"""The OpenAPI document, made to tell the truth about what the app answers.

FastAPI documents a 422 for every route with a body; this app answers 400 (OpenAI's shape),
so the 422s and their schemas are dropped. Every route declares its own answers (status codes
and models) where it is defined.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi


def openapi_document(app: FastAPI) -> dict:
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                      description="OpenAI-compatible chat over streaming retrieval, and the session API.")
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    app.openapi_schema = doc
    return doc
