"""Health and the OpenAPI document."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from chalice import Blueprint

from functions.core.web import Auth, RequestContext, route

system_bp = Blueprint(__name__)

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent
BASE_DOCUMENT = FUNCTIONS_DIR / "openapi.json"


def fragment_paths() -> list[Path]:
    """Each domain documents its own routes beside them: ``functions/<domain>/openapi.json``."""
    return sorted(FUNCTIONS_DIR.glob("*/openapi.json"))


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    document = json.loads(BASE_DOCUMENT.read_text(encoding="utf-8"))
    document["paths"] = {
        "/v1/health": {"get": {"summary": "Liveness", "tags": ["system"], "responses": {"200": {
            "description": "ok", "content": {"application/json": {"schema": {
                "type": "object", "required": ["status"],
                "properties": {"status": {"type": "string", "enum": ["ok"]}}}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "tags": ["system"], "responses": {
            "200": {"description": "OpenAPI 3 document",
                    "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }
    for path in fragment_paths():
        merge_fragment(document, json.loads(path.read_text(encoding="utf-8")), path.parent.name)
    return document


def merge_fragment(document: dict[str, Any], fragment: dict[str, Any], source: str) -> None:
    for route_path, operations in fragment.get("paths", {}).items():
        target = document["paths"].setdefault(route_path, {})
        for method, operation in operations.items():
            if method in target:
                raise ValueError(f"{source}: {method.upper()} {route_path} is documented twice")
            target[method] = operation
    for section, entries in fragment.get("components", {}).items():
        target = document.setdefault("components", {}).setdefault(section, {})
        for name, schema in entries.items():
            if name in target and target[name] != schema:
                raise ValueError(f"{source}: components.{section}.{name} differs from another domain's")
            target[name] = schema


@route(system_bp, "/v1/health", auth=Auth.PUBLIC)
def health(ctx: RequestContext) -> dict:
    return {"status": "ok"}


@route(system_bp, "/openapi.json", auth=Auth.PUBLIC)
def openapi(ctx: RequestContext) -> dict:
    return openapi_document()
