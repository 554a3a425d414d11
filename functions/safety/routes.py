"""Safety HTTP entrypoints: evidence upload/view links, the access log, the insured list."""
from __future__ import annotations

from chalice import Blueprint, Response

from functions.core import clock
from functions.core.validation import Int, Str
from functions.core.web import Auth, RequestContext, page_body, route
from functions.safety.evidence import CONTENT_TYPES, MAX_UPLOAD_BYTES
from functions.safety.export import insured_list_csv
from functions.safety.insurance import export_range
from functions.safety.wiring import evidence_service, insurance_register

safety_bp = Blueprint(__name__)

PAGE_QUERY = {"limit": Str(max_len=3, required=False), "cursor": Str(max_len=2000, required=False)}


@route(safety_bp, "/v1/requests/{request_id}/evidence", methods=["POST"], auth=Auth.VERIFIED)
def issue_evidence_upload(ctx: RequestContext, request_id: str) -> dict:
    body = ctx.body({"content_type": Str(choices=tuple(CONTENT_TYPES), required=False),
                     "size": Int(min=1, max=MAX_UPLOAD_BYTES, required=False)})
    return evidence_service().issue_upload(ctx.caller, request_id, body.get("content_type", "image/jpeg"),
                                           body.get("size"))


@route(safety_bp, "/v1/requests/{request_id}/evidence", auth=Auth.LOGIN)
def list_evidence(ctx: RequestContext, request_id: str) -> dict:
    # LOGIN, not VERIFIED: admins need not be residents; the service admits the verified
    # parties and admins and refuses everyone else with 403.
    return {"items": evidence_service().links(ctx.caller, request_id)}


@route(safety_bp, "/v1/admin/requests/{request_id}/evidence/access-log", auth=Auth.ADMIN)
def evidence_access_log(ctx: RequestContext, request_id: str) -> dict:
    ctx.query(PAGE_QUERY)
    limit, cursor = ctx.page()
    entries, last_key = evidence_service().access_history(ctx.caller, request_id, limit, cursor)
    return page_body([{"request_id": e.request_id, "viewer_id": e.viewer_id, "viewer_role": e.viewer_role,
                       "photo_count": e.photo_count, "viewed_at": clock.isoformat(e.viewed_at)}
                      for e in entries], last_key)


@route(safety_bp, "/v1/admin/insurance-records", auth=Auth.ADMIN)
def export_insurance_records(ctx: RequestContext):
    query = ctx.query({"from": Str(max_len=10, required=False), "to": Str(max_len=10, required=False),
                       "format": Str(choices=("json", "csv"), required=False), **PAGE_QUERY})
    days = export_range(query.get("from"), query.get("to"))
    register = insurance_register()
    if query.get("format") == "csv":
        body = insured_list_csv(register.export_all(days))
        filename = f"insured-{days.first_day.isoformat()}_{days.last_day.isoformat()}.csv"
        return Response(body=body, status_code=200, headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{filename}"',
        })
    limit, cursor = ctx.page()
    records, last_key = register.export_page(days, limit, cursor)
    return page_body([r.to_dict() for r in records], last_key)
