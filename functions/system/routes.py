"""Platform entrypoints: health, the OpenAPI document, the staff dashboard's page and files,
and the event relay's sweep."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from chalice import Blueprint, Rate, Response

from functions import bootstrap
from functions.core.openapi import build_document
from functions.core.settings import get_settings
from functions.system import dashboard
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


@route(system_bp, "/admin", auth=Auth.PUBLIC, produces="text/html", response={"type": "string"},
       tags=("dashboard",))
def dashboard_page(ctx: RequestContext) -> Response:
    """The community staff dashboard (HTML, Chinese), at ``/admin/``.

    A browser page, not JSON: it asks for an admin token (kept in the tab's sessionStorage) and
    then calls the admin API (``/v1/admin/stats``, ``/v1/admin/residents``, ``/v1/admin/requests``,
    ``/v1/admin/risk/flags``) with it. API Gateway serves ``/admin`` and ``/admin/`` by this one route.
    """
    settings = get_settings()
    demo = settings.admin_openids[0] if settings.is_local and settings.admin_openids else None
    body = dashboard.page((ctx.request.context or {}).get("path"), settings.stage, demo)
    return Response(body=body, status_code=200, headers={"Content-Type": dashboard.HTML,
                                                         "Cache-Control": dashboard.NO_CACHE,
                                                         **dashboard.SECURITY_HEADERS})


def _asset(name: str) -> Response:
    served = dashboard.asset(name)
    return Response(body=served.body, status_code=200, headers=served.headers(dashboard.LONG_CACHE))


@route(system_bp, "/admin/dashboard.js", auth=Auth.PUBLIC, produces="text/javascript", response={"type": "string"},
       tags=("dashboard",))
def dashboard_script(ctx: RequestContext) -> Response:
    """The dashboard's script (named with its content hash by the page: cached for a year)."""
    return _asset("dashboard.js")


@route(system_bp, "/admin/dashboard.css", auth=Auth.PUBLIC, produces="text/css", response={"type": "string"},
       tags=("dashboard",))
def dashboard_styles(ctx: RequestContext) -> Response:
    """The dashboard's styles (laptop and phone-sized screens)."""
    return _asset("dashboard.css")


@route(system_bp, "/admin/echarts.min.js", auth=Auth.PUBLIC, produces="text/javascript",
       response={"type": "string"}, tags=("dashboard",))
def dashboard_echarts(ctx: RequestContext) -> Response:
    """ECharts 5.6.0 from the npm registry, vendored (``functions/system/dashboard/echarts.json``)."""
    return _asset("echarts.min.js")


@system_bp.schedule(Rate(1, unit=Rate.MINUTES), name="relay-events")
def relay_events(event: Any) -> dict:
    """Sends the domain events the eager dispatch after their commit did not (a crash, SQS down)."""
    return bootstrap.relay().sweep()
