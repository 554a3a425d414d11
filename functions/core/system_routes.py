"""Health and the OpenAPI document."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from chalice import Blueprint

from functions.core.web import Auth, RequestContext, route

system_bp = Blueprint(__name__)

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.json"


@lru_cache(maxsize=1)
def openapi_document() -> dict:
    return json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))


@route(system_bp, "/v1/health", auth=Auth.PUBLIC)
def health(ctx: RequestContext) -> dict:
    return {"status": "ok"}


@route(system_bp, "/openapi.json", auth=Auth.PUBLIC)
def openapi(ctx: RequestContext) -> dict:
    return openapi_document()
