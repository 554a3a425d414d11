"""Statistics entrypoints: the admins' figures and suggestions, the public's open data, the
``stats`` queue (the request lifecycle's events → aggregates) and the weekly suggestions run."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from chalice import Blueprint, Cron

from functions import bootstrap
from functions.core import clock
from functions.core.errors import InvalidState, NotFound
from functions.core.events import parse_event
from functions.core.messaging import QueueSpec, register_queue
from functions.core.validation import Day, Month, Schema
from functions.core.web import Auth, RequestContext, route
from functions.stats.model import EVENT_TYPES
from functions.stats.views import suggestion_view

STATS_QUEUE = register_queue(QueueSpec("stats", purpose="the request lifecycle's events → statistics",
                                       events=EVENT_TYPES))

stats_bp = Blueprint(__name__)

RANGE_QUERY = Schema({"from": Day(required=False, label="开始日期", description="default: 29 days before to"),
                      "to": Day(required=False, label="结束日期", description="default: today")})
MONTH_QUERY = Schema({"month": Month(label="月份")})


@route(stats_bp, "/v1/admin/stats", auth=Auth.ADMIN, query=RANGE_QUERY, response="Stats", admin_action="stats.read")
def admin_stats(ctx: RequestContext) -> dict:
    """Statistics of a range of days (Asia/Shanghai; at most 92 days)."""
    end = ctx.params.get("to") or clock.now().astimezone(clock.CHINA_TZ).date()
    start = ctx.params.get("from") or end - timedelta(days=29)
    return bootstrap.stats().range_stats(start, end)


@route(stats_bp, "/v1/open-data/stats", auth=Auth.PUBLIC, query=MONTH_QUERY, response="OpenDataStats")
def open_data_stats(ctx: RequestContext) -> dict:
    """A month's aggregates with no personal data; groups of fewer than 5 residents merged."""
    year, month = ctx.params["month"]
    return bootstrap.stats().month_stats(year, month)


@route(stats_bp, "/v1/admin/suggestions", auth=Auth.ADMIN, response="SuggestionList", admin_action="suggestions.list")
def list_suggestions(ctx: RequestContext) -> dict:
    """Needs that are not credit items but became frequent (open first, most frequent first)."""
    return {"items": [suggestion_view(s) for s in bootstrap.stats().suggestions()]}


@route(stats_bp, "/v1/admin/suggestions/{suggestion_id}/accept", methods=["POST"], auth=Auth.ADMIN,
       response="Suggestion", errors=(NotFound, InvalidState), admin_action="suggestion.accept")
def accept_suggestion(ctx: RequestContext, suggestion_id: str) -> dict:
    """Make the need a credit-eligible category; again → 409 ALREADY_ACCEPTED."""
    return suggestion_view(bootstrap.stats().accept(suggestion_id, ctx.caller.actor))


@stats_bp.on_sqs_message(queue=STATS_QUEUE.name, batch_size=STATS_QUEUE.batch_size, name="stats-aggregates")
def stats_aggregates(event: Any) -> dict[str, Any]:
    """The lifecycle's events → the aggregates, each event once; failures per message (DLQ after 5)."""
    from functions.core.queue_consumer import process_queue_batch

    service = bootstrap.stats()
    return process_queue_batch(event.to_dict(), event.context, STATS_QUEUE.logical_name,
                               lambda message: service.record(parse_event(message)))


@stats_bp.schedule(Cron(0, 19, "?", "*", "SUN", "*"), name="stats-suggestions")
def stats_suggestions(event: Any) -> dict:
    """Weekly (Monday 03:00 Asia/Shanghai): high-frequency needs of the last 28 days → suggestions."""
    return {"suggestions": len(bootstrap.stats().find_suggestions())}
