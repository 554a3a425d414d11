"""Notifications HTTP entrypoints: subscribe-message consents and the local outbox."""
from __future__ import annotations

from typing import Any

from chalice import Blueprint

from functions.core import clock
from functions.core.validation import Bool, Str
from functions.core.web import Auth, RequestContext, page_body, route
from functions.notifications.dynamo import outbox_page
from functions.notifications.service import Consent
from functions.notifications.templates import TEMPLATES
from functions.notifications.wiring import get_notification_service, get_templates

notifications_bp = Blueprint(__name__)


def consent_view(consent: Consent) -> dict[str, Any]:
    config = get_templates().get(consent.template)
    return {"template": consent.template, "template_id": config.template_id if config else None,
            "available": consent.available, "accepted_total": consent.accepted_total,
            "refused_total": consent.refused_total,
            "updated_at": clock.isoformat(consent.updated_at) if consent.updated_at else None}


@route(notifications_bp, "/v1/notifications/consents", methods=["POST"], auth=Auth.LOGIN)
def record_consent(ctx: RequestContext) -> dict:
    """What ``wx.requestSubscribeMessage`` answered for one template: accept adds one message."""
    body = ctx.body({"template": Str(max_len=32, choices=TEMPLATES), "accepted": Bool()})
    consent = get_notification_service().record_consent(ctx.caller.openid, body["template"], body["accepted"])
    return consent_view(consent)


@route(notifications_bp, "/v1/notifications/consents", auth=Auth.LOGIN)
def list_consents(ctx: RequestContext) -> dict:
    """Every template with its WeChat template id (to ask consent for) and the messages left."""
    return {"items": [consent_view(c) for c in get_notification_service().consents_of(ctx.caller.openid)]}


@route(notifications_bp, "/v1/admin/outbox", auth=Auth.ADMIN)
def outbox(ctx: RequestContext) -> dict:
    """Messages the local stages "sent", newest first (deployed stages send to WeChat instead)."""
    query = ctx.query({"openid": Str(max_len=128, required=False), "limit": Str(max_len=3, required=False),
                       "cursor": Str(max_len=2000, required=False)})
    limit, cursor = ctx.page()
    items, last_key = outbox_page(limit, cursor, query.get("openid"))
    return page_body(items, last_key)
