"""Administration entrypoints (API.md "Administration and data"): the audit log for admins and
for the residents it is about, and the volunteer-record export.

Every route here is audited by ``core.web.route`` like any admin route — reading the audit log
and exporting personal data are themselves entries."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from chalice import Blueprint, Response

from functions import bootstrap
from functions.admin.views import audit_entry_view, volunteer_record_view, volunteer_records_csv
from functions.core.errors import LimitExceeded
from functions.core.validation import Day, Field, FieldError, Schema, Str, Timestamp, check_text, field_error
from functions.core.web import Auth, RequestContext, page_body, route

admin_bp = Blueprint(__name__)

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class DayOrMoment(Field):
    """``YYYY-MM-DD`` (a whole community day) or a moment with its offset."""
    required: bool = False
    label: str | None = None
    description: str | None = None

    def clean(self, value: Any) -> date | datetime:
        if isinstance(value, str) and _DAY.fullmatch(value):
            return Day(label=self.label).clean(value)
        try:
            return Timestamp(label=self.label).clean(value)
        except FieldError:
            raise self.reason("须为日期（如 2026-12-01）或带时区的时间") from None

    def openapi(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": 40,
                "description": "a day YYYY-MM-DD (to: inclusive) or an ISO-8601 time with offset"}


AUDIT_QUERY = Schema({
    "actor": Str(max_len=128, required=False, label="操作人"),
    "action": Str(max_len=80, pattern=r"[A-Za-z0-9_.:/{} -]+", required=False, label="操作"),
    "from": DayOrMoment(label="开始时间"),
    "to": DayOrMoment(label="结束时间"),
})
EXPORT_QUERY = Schema({"from": Day(label="开始日期"), "to": Day(label="结束日期"),
                       "format": Str(choices=("json", "csv"), required=False, label="格式")})


def _before(ctx: RequestContext) -> str | None:
    cursor = ctx.cursor
    if cursor is None:
        return None
    before = cursor.get("before")
    if set(cursor) != {"before"} or not isinstance(before, str) or not 0 < len(before) <= 200:
        raise field_error("cursor", "不是本接口返回的翻页标记")
    try:
        check_text(before)
    except FieldError:
        raise field_error("cursor", "不是本接口返回的翻页标记") from None
    return before


def _audit_page(page: Any) -> dict[str, Any]:
    return page_body([audit_entry_view(e) for e in page.items],
                     {"before": page.next_before} if page.next_before else None)


@route(admin_bp, "/v1/admin/audit", auth=Auth.ADMIN, query=AUDIT_QUERY, paged=True, response="AuditEntry",
       admin_action="audit.list")
def admin_audit(ctx: RequestContext) -> dict[str, Any]:
    """The audit log, newest first: by actor, by action, within a time range."""
    params = ctx.params
    page = bootstrap.audit_queries().for_admin(actor=params.get("actor"), action=params.get("action"),
                                               start=params.get("from"), end=params.get("to"),
                                               limit=ctx.limit, before=_before(ctx))
    return _audit_page(page)


@route(admin_bp, "/v1/residents/me/audit", auth=Auth.REGISTERED, paged=True, response="AuditEntry")
def my_audit(ctx: RequestContext) -> dict[str, Any]:
    """Who viewed or acted on the caller's (or their household's) data, newest first."""
    caller = ctx.caller
    page = bootstrap.audit_queries().for_resident(caller.resident_id, caller.household_id, limit=ctx.limit,
                                                  before=_before(ctx))
    return _audit_page(page)


@route(admin_bp, "/v1/admin/exports/volunteer-records", auth=Auth.ADMIN, query=EXPORT_QUERY,
       response={"type": "object", "required": ["items"],
                 "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/VolunteerRecord"}}}},
       errors=(LimitExceeded,), admin_action="export.volunteer_records")
def export_volunteer_records(ctx: RequestContext) -> Any:
    """The national volunteer-record export (format=csv: UTF-8 with BOM for Excel, Chinese headers)."""
    first, last = ctx.params["from"], ctx.params["to"]
    rows = bootstrap.volunteer_records().between(first, last)
    if ctx.params.get("format") == "csv":
        filename = f"volunteer-records-{first.isoformat()}_{last.isoformat()}.csv"
        return Response(body=volunteer_records_csv(rows), status_code=200, headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{filename}"',
        })
    return {"items": [volunteer_record_view(row) for row in rows]}
