"""Requests HTTP entrypoints: categories (the lifecycle routes come with the requests issue)."""
from __future__ import annotations

from chalice import Blueprint

from functions.core.errors import ValidationError
from functions.core.web import Auth, RequestContext, route
from functions.requests.catalog import get_catalog

requests_bp = Blueprint(__name__)


@route(requests_bp, "/v1/categories", auth=Auth.LOGIN)
def list_categories(ctx: RequestContext) -> dict:
    return {"items": [c.to_dict() for c in get_catalog().all()]}


@route(requests_bp, "/v1/admin/categories/{category_id}", methods=["PUT"], auth=Auth.ADMIN)
def update_category(ctx: RequestContext, category_id: str) -> dict:
    changes = ctx.json()
    if not isinstance(changes, dict):
        raise ValidationError(details={"fields": {"body": "must be a JSON object"}})
    return get_catalog().update(category_id, changes, actor=ctx.caller.openid).to_dict()
