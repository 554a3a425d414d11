"""Notifications entrypoints: subscribe-message consents, the local outbox, and the reminders
schedule."""
from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate

from functions import bootstrap
from functions.core.validation import Bool, Schema, Str
from functions.core.web import Auth, RequestContext, page_body, route
from functions.notifications.model import TEMPLATES
from functions.notifications.views import consent_view

notifications_bp = Blueprint(__name__)

CONSENT = Schema({"template": Str(max_len=32, choices=TEMPLATES, label="消息模板"),
                  "accepted": Bool(label="是否同意")}, name="ConsentAnswer")
OUTBOX_QUERY = Schema({"openid": Str(max_len=128, required=False, label="openid")})


@route(notifications_bp, "/v1/notifications/consents", methods=["POST"], auth=Auth.LOGIN, body=CONSENT,
       response="Consent")
def record_consent(ctx: RequestContext) -> dict:
    """What ``wx.requestSubscribeMessage`` answered for one template: accept adds one message."""
    consent = bootstrap.notifications().record_consent(ctx.caller.openid, ctx.data["template"], ctx.data["accepted"])
    return consent_view(consent, bootstrap.templates())


@route(notifications_bp, "/v1/notifications/consents", auth=Auth.LOGIN, response="ConsentList")
def list_consents(ctx: RequestContext) -> dict:
    """Every template with its WeChat template id (to ask consent for) and the messages left."""
    templates = bootstrap.templates()
    return {"items": [consent_view(c, templates) for c in bootstrap.notifications().consents_of(ctx.caller.openid)]}


@route(notifications_bp, "/v1/admin/outbox", auth=Auth.ADMIN, query=OUTBOX_QUERY, paged=True,
       response="OutboxMessage", admin_action="outbox.list")
def outbox(ctx: RequestContext) -> dict:
    """Messages the local stages "sent", newest first (deployed stages send to WeChat instead)."""
    items, last_key = bootstrap.outbox_reader().page(ctx.limit, ctx.cursor, ctx.params.get("openid"))
    return page_body(items, last_key)


@notifications_bp.schedule(Rate(5, unit=Rate.MINUTES), name="send-reminders")
def send_reminders(event: Any) -> dict:
    """One reminder per participant of each accepted service starting within the lead time."""
    return bootstrap.reminders().run()
