"""Safety entrypoints: evidence upload and view links, the access log, the insured list; the
``insurance`` queue (accepted/cancelled services → records) and the photo retention sweep."""
from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate, Response

from functions import bootstrap
from functions.core.errors import Forbidden, InvalidState, LimitExceeded
from functions.core.events import parse_event
from functions.core.messaging import QueueSpec, register_queue
from functions.core.validation import Day, Int, Schema, Str
from functions.core.web import Auth, RequestContext, page_body, route
from functions.activities.model import SIGNED_UP_EVENT, SIGNUP_CANCELLED_EVENT
from functions.requests.model import ACCEPTED_EVENT, CANCELLED_EVENT, RELEASED_EVENT
from functions.safety.model import CONTENT_TYPES, MAX_UPLOAD_BYTES, export_range
from functions.safety.views import access_entry_view, insurance_record_view, insured_list_csv

INSURANCE = register_queue(QueueSpec("insurance",
                                     purpose="accepted (and cancelled) services and activity sign-ups → one "
                                             "insurance record each",
                                     events=(ACCEPTED_EVENT, CANCELLED_EVENT, RELEASED_EVENT, SIGNED_UP_EVENT,
                                             SIGNUP_CANCELLED_EVENT)))

safety_bp = Blueprint(__name__)

UPLOAD = Schema({"content_type": Str(choices=tuple(CONTENT_TYPES), required=False, label="图片格式"),
                 "size": Int(min=1, max=MAX_UPLOAD_BYTES, required=False, label="图片大小")}, name="EvidenceUploadRequest")
INSURED_QUERY = Schema({"from": Day(label="开始日期"), "to": Day(label="结束日期"),
                        "format": Str(choices=("json", "csv"), required=False, label="格式")})


@route(safety_bp, "/v1/requests/{request_id}/evidence", methods=["POST"], auth=Auth.VERIFIED, body=UPLOAD,
       errors=(Forbidden, InvalidState), response="EvidenceUpload")
def issue_evidence_upload(ctx: RequestContext, request_id: str) -> dict:
    """A pre-signed upload of one check-in/out photo (PUT, and a POST form for wx.uploadFile)."""
    return bootstrap.evidence().issue_upload(ctx.caller, request_id, ctx.data.get("content_type", "image/jpeg"),
                                             ctx.data.get("size"))


@route(safety_bp, "/v1/requests/{request_id}/evidence", auth=Auth.LOGIN, errors=(Forbidden,),
       response="EvidenceLinks", admin_action="evidence.view", personal_data=True)
def list_evidence(ctx: RequestContext, request_id: str) -> dict:
    """Short-lived links to the request's photos, for its parties and admins (every view logged)."""
    # LOGIN, not VERIFIED: admins need not be residents; the service admits the verified
    # parties and admins and refuses everyone else with 403.
    return {"items": bootstrap.evidence().links(ctx.caller, request_id)}


@route(safety_bp, "/v1/admin/requests/{request_id}/evidence/access-log", auth=Auth.ADMIN, paged=True,
       response="EvidenceAccessEntry", admin_action="evidence.access_log")
def evidence_access_log(ctx: RequestContext, request_id: str) -> dict:
    """Who viewed the request's photos, newest first."""
    entries, last_key = bootstrap.evidence().access_history(ctx.caller, request_id, ctx.limit, ctx.cursor)
    return page_body([access_entry_view(e) for e in entries], last_key)


@route(safety_bp, "/v1/admin/insurance-records", auth=Auth.ADMIN, query=INSURED_QUERY, paged=True,
       errors=(LimitExceeded,), response="InsuranceRecord", responses={200: "InsuranceRecord"},
       admin_action="insurance.export")
def export_insurance_records(ctx: RequestContext):
    """The insured list for a range of service dates (format=csv: the file for Excel)."""
    days = export_range(ctx.params["from"], ctx.params["to"])
    register = bootstrap.insurance()
    if ctx.params.get("format") == "csv":
        body = insured_list_csv(register.export_all(days))
        filename = f"insured-{days.first_day.isoformat()}_{days.last_day.isoformat()}.csv"
        return Response(body=body, status_code=200, headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{filename}"',
        })
    records, last_key = register.export_page(days, ctx.limit, ctx.cursor)
    return page_body([insurance_record_view(r) for r in records], last_key)


@safety_bp.on_sqs_message(queue=INSURANCE.name, batch_size=INSURANCE.batch_size, name="insurance-records")
def insurance_records(event: Any) -> dict[str, Any]:
    """Accepted services → one insurance record each; cancelled ones → record cancelled.

    A record that cannot be processed — malformed, unknown request, a storage error — is
    reported in ``batchItemFailures`` while the rest of the batch succeeds; after 5 receives it
    moves to the dead-letter queue (and its alarm) instead of being retried forever.
    """
    from functions.core.queue_consumer import process_queue_batch

    register = bootstrap.insurance()
    return process_queue_batch(event.to_dict(), event.context, INSURANCE.logical_name,
                               lambda message: register.handle(parse_event(message)))


@safety_bp.schedule(Rate(1, unit=Rate.DAYS), name="evidence-retention")
def evidence_retention(event: Any) -> dict[str, Any]:
    """Deletes check-in/out photos older than the community's retention period (default 180 days)."""
    return {"deleted": bootstrap.evidence().purge_expired()}


@safety_bp.schedule(Rate(15, unit=Rate.MINUTES), name="evidence-uploads")
def evidence_uploads(event: Any) -> dict[str, Any]:
    """Deletes photos uploaded but never named by a check-in or completion within 30 minutes."""
    return bootstrap.evidence().sweep_unreferenced()
