"""Platform entrypoints: health, the OpenAPI document, and the event relay's sweep."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from chalice import Blueprint, Rate

from functions import bootstrap
from functions.core.openapi import build_document
from functions.core.web import ROUTES, Auth, RequestContext, route

system_bp = Blueprint(__name__)

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent
BASE_DOCUMENT = FUNCTIONS_DIR / "openapi.json"


def fragment_paths() -> list[Path]:
    """Each domain keeps its response schemas beside its code: ``functions/<domain>/openapi.json``."""
    return sorted(FUNCTIONS_DIR.glob("*/openapi.json"))


# The district hub's routes belong to the hub's own app (functions/hub_app.py), not this one:
# a process that imported both (tests) still documents only what this app serves.
OTHER_STACKS = ("functions.hub.",)


def app_routes() -> list[Any]:
    """The route declarations of this app (``functions/app.py``)."""
    return [spec for spec in ROUTES if not spec.blueprint.startswith(OTHER_STACKS)]


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    base = json.loads(BASE_DOCUMENT.read_text(encoding="utf-8"))
    fragments = {path.parent.name: json.loads(path.read_text(encoding="utf-8")) for path in fragment_paths()}
    return build_document(base, app_routes(), fragments)


@route(system_bp, "/v1/health", auth=Auth.PUBLIC, response="Health")
def health(ctx: RequestContext) -> dict:
    """Liveness."""
    return {"status": "ok"}


@route(system_bp, "/openapi.json", auth=Auth.PUBLIC, response={"type": "object"})
def openapi(ctx: RequestContext) -> dict:
    """This document."""
    return openapi_document()


@system_bp.schedule(Rate(1, unit=Rate.MINUTES), name="relay-events")
def relay_events(event: Any) -> dict:
    """Sends the domain events the eager dispatch after their commit did not (a crash, SQS down)."""
    return bootstrap.relay().sweep()
