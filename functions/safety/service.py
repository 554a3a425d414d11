"""Safety use cases: the insurance register (one record per accepted service, the insured
list) and evidence photos (upload links, checks, viewing links with an access log, retention)."""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator

from functions.core import clock
from functions.core.caller import Caller
from functions.core.errors import BusinessRuleViolation, Forbidden, InvalidState, LimitExceeded, NotFound
from functions.core.validation import field_error
from functions.core.events import DomainEvent
from functions.core.messaging import PoisonMessage
from functions.core.observability import logger
from functions.activities.model import SIGNED_UP_EVENT, SIGNUP_CANCELLED_EVENT
from functions.requests import model as lc
from functions.requests.model import ServiceRequest
from functions.safety.model import (
    CONTENT_TYPES, DEFAULT_RETENTION_DAYS, EVIDENCE_KEY, MAX_EXPORT_ROWS, MAX_UPLOAD_BYTES, ROOT_PREFIX,
    REFERENCE_WINDOW, UPLOAD_EXPIRES_SECONDS, UPLOAD_STATES, USE_WINDOW, VIEW_EXPIRES_SECONDS, AccessLogEntry,
    EvidenceExpired, EvidenceNotUploaded, EvidenceTooLarge, EvidenceWrongType, ExportRange, InsuranceNotConfigured,
    InsurancePolicy, InsuranceRecord, PendingUpload, StoredObject, evidence_key, issued_at_of, record_for,
    record_for_signup, request_prefix, viewer_ids, viewer_role,
)
from functions.safety.ports import (
    AccessLog, ActivitySignups, InsuranceRecordStore, ObjectStorage, RequestReader, UploadRegister,
)


class InsuranceRegister:
    def __init__(self, store: InsuranceRecordStore, requests: RequestReader,
                 category_name: Callable[[str], str], policy: InsurancePolicy,
                 now: Callable[[], datetime] = clock.now, signups: ActivitySignups | None = None):
        self.store, self.requests, self.category_name = store, requests, category_name
        self.policy, self.now, self.signups = policy, now, signups

    def has_record(self, request_id: str) -> bool:
        return self.store.exists(request_id)

    def handle(self, event: DomainEvent) -> InsuranceRecord | None:
        """One event of the ``insurance`` queue; a duplicate has no further effect."""
        if event.type == lc.ACCEPTED_EVENT:
            if event.data.get("insured") is True:
                return None  # its record committed with the acceptance: nothing to repair
            return self.record_accepted(event.subject)
        if event.type == lc.CANCELLED_EVENT:
            if not event.data.get("was_accepted") or event.data.get("status") != lc.CANCELLED:
                return None  # never accepted (or expired unaccepted): never insured
            return self.record_cancelled(event.subject)
        if event.type == lc.RELEASED_EVENT:
            # The volunteer never came: their window is not used. A later acceptance by someone
            # else writes its own record in its accept's transaction.
            self.store.mark_cancelled(event.subject, self.now(), volunteer_id=event.data.get("volunteer_id"))
            return self.store.get(event.subject)
        if event.type in (SIGNED_UP_EVENT, SIGNUP_CANCELLED_EVENT):
            if not event.data.get("requires_insurance"):
                return None
            return self.record_signup(event) if event.type == SIGNED_UP_EVENT else self.record_signup_cancelled(event)
        raise PoisonMessage(f"insurance does not handle {event.type}")

    def record_write(self, accepted: ServiceRequest) -> Any:
        """The record of a service being accepted, for the accept's own transaction. Unconditional:
        the accept is conditional on the request being open, so each acceptance writes once; a
        request accepted again after its volunteer did not come is insured for the new one."""
        try:
            self.policy.require_configured()
        except InsuranceNotConfigured:
            logger.error("no insurance policy configured: the accept is not insured")
            return None
        record = record_for(accepted, self.category_name(accepted.category), self.policy, self.now())
        return self.store.record_write(record)

    def record_signup(self, event: DomainEvent) -> InsuranceRecord:
        """A participant of an activity that requires insurance: one record per sign-up. A
        sign-up cancelled before this message came is written cancelled (as a service's is)."""
        self.policy.require_configured()
        data = event.data
        try:
            subject, resident, seq = str(data["subject"]), str(data["resident_id"]), int(data["seq"])
            start, end = clock.parse_iso(data["start_at"]), clock.parse_iso(data["end_at"])
        except (KeyError, TypeError, ValueError):
            raise PoisonMessage("not an activity sign-up") from None
        active = self.signups.is_active(event.subject, resident, seq) if self.signups is not None else True
        record = record_for_signup(subject, event.subject, resident, str(data.get("title") or ""), start, end,
                                   self.policy, self.now(), active)
        if self.store.add(record):
            return record
        existing = self.store.get(subject)
        assert existing is not None, "conditional put refused but no record found"
        return existing

    def record_signup_cancelled(self, event: DomainEvent) -> InsuranceRecord | None:
        subject = event.data.get("subject")
        if not isinstance(subject, str) or not subject:
            raise PoisonMessage("not an activity sign-up")
        self.store.mark_cancelled(subject, self.now())
        return self.store.get(subject)
    def record_accepted(self, request_id: str) -> InsuranceRecord:
        """The queue's repair of an accept that left no record (none configured then, or accepted
        before records joined the accept's transaction). Idempotent: an existing record is kept."""
        self.policy.require_configured()
        request = self.requests.get(request_id)
        record = record_for(request, self.category_name(request.category), self.policy, self.now())
        if self.store.add(record):
            return record
        existing = self.store.get(request_id)
        assert existing is not None, "conditional put refused but no record found"
        return existing

    def record_cancelled(self, request_id: str) -> InsuranceRecord | None:
        """A cancelled service is no longer insured. No record yet: nothing to do (the accept
        message, when it comes, reads the cancelled request and writes a cancelled record)."""
        request = self.requests.get(request_id)
        if request.status != lc.CANCELLED:
            raise InvalidState(f"request {request_id} is {request.status}, not cancelled")
        self.store.mark_cancelled(request_id, self.now())
        return self.store.get(request_id)

    def export_page(self, days: ExportRange, limit: int,
                    cursor: dict[str, Any] | None) -> tuple[list[InsuranceRecord], dict[str, Any] | None]:
        return self.store.between(days, limit, cursor)

    def export_all(self, days: ExportRange) -> list[InsuranceRecord]:
        records: list[InsuranceRecord] = []
        cursor: dict[str, Any] | None = None
        while True:
            page, cursor = self.store.between(days, 1000, cursor)
            records.extend(page)
            if len(records) > MAX_EXPORT_ROWS:
                raise LimitExceeded(f"记录超过 {MAX_EXPORT_ROWS} 条，请缩小日期范围",
                                    {"max_rows": MAX_EXPORT_ROWS})
            if cursor is None:
                return records


class EvidenceService:
    def __init__(self, requests: RequestReader, storage: ObjectStorage, access_log: AccessLog,
                 uploads: UploadRegister, retention_days: int = DEFAULT_RETENTION_DAYS,
                 now: Callable[[], datetime] = clock.now, token: Callable[[], str] = lambda: secrets.token_hex(8)):
        if retention_days < 1:
            raise ValueError("evidence retention must be at least one day")
        self.requests, self.storage, self.access_log, self.uploads = requests, storage, access_log, uploads
        self.retention = timedelta(days=retention_days)
        self.now, self.token = now, token

    def issue_upload(self, caller: Caller, request_id: str, content_type: str = "image/jpeg",
                     size: int | None = None) -> dict[str, Any]:
        extension = CONTENT_TYPES.get(content_type)
        if extension is None:
            raise field_error("content_type", f"图片格式须为以下之一：{'、'.join(CONTENT_TYPES)}")
        if size is not None and not 1 <= size <= MAX_UPLOAD_BYTES:
            raise field_error("size", f"图片大小须在 1 到 {MAX_UPLOAD_BYTES} 字节之间")
        request = self.requests.get(request_id)
        if not request.is_volunteer(caller):
            raise Forbidden("只有接单的志愿者可以上传服务影像")
        if request.status not in UPLOAD_STATES:
            raise InvalidState(f"需求当前状态为 {request.status}，不能上传影像",
                               {"status": request.status, "allowed": list(UPLOAD_STATES)})
        issued_at = self.now()
        key = evidence_key(request.id, issued_at, self.token(), extension)
        # Registered before the link exists: a photo is never in the bucket unregistered.
        self.uploads.add(PendingUpload(key, request.id, issued_at))
        headers = {"Content-Type": content_type}
        if size is not None:
            headers["Content-Length"] = str(size)
        form = self.storage.presign_post(key, content_type, MAX_UPLOAD_BYTES, UPLOAD_EXPIRES_SECONDS)
        return {"upload_url": self.storage.presign_put(key, content_type, size, UPLOAD_EXPIRES_SECONDS),
                "method": "PUT", "headers": headers, "key": key, "content_type": content_type,
                "max_bytes": MAX_UPLOAD_BYTES, "expires_in": UPLOAD_EXPIRES_SECONDS,
                "form": {"url": form["url"], "fields": form["fields"], "max_bytes": MAX_UPLOAD_BYTES}}

    def verify_upload(self, request_id: str, key: str) -> None:
        """Before a check-in or completion names ``key``: the photo must be there, 1 byte..5 MB,
        of the type its key was issued for. A refused photo is deleted, not kept."""
        match = EVIDENCE_KEY.match(key)
        if not key.startswith(request_prefix(request_id)) or match is None:
            raise field_error("evidence_key", "该影像不是为此需求签发的")
        issued_at = issued_at_of(key)
        if issued_at is not None and self.now() - issued_at > USE_WINDOW:
            # Past this the unreferenced-upload sweep may delete the photo at any moment.
            raise EvidenceExpired(details={"evidence_key": key,
                                           "use_within_minutes": int(USE_WINDOW.total_seconds() // 60)})
        head = self.storage.head(key)
        if head is None:
            raise EvidenceNotUploaded(details={"evidence_key": key})
        refusal: BusinessRuleViolation | None = None
        if head.size > MAX_UPLOAD_BYTES:
            refusal = EvidenceTooLarge(details={"evidence_key": key, "size": head.size,
                                                "max_bytes": MAX_UPLOAD_BYTES})
        elif head.size < 1:
            refusal = EvidenceNotUploaded(details={"evidence_key": key, "size": 0})
        elif CONTENT_TYPES.get(head.content_type) != key.rsplit(".", 1)[1]:
            refusal = EvidenceWrongType(details={"evidence_key": key, "allowed": list(CONTENT_TYPES)})
        if refusal is not None:
            self.storage.delete([key])
            logger.info("evidence refused and deleted", extra={"request_id": request_id, "code": refusal.code,
                                                               "size": head.size})
            raise refusal

    def links(self, caller: Caller, request_id: str) -> list[dict[str, Any]]:
        request = self.requests.get(request_id)
        role = viewer_role(request, caller)
        if role is None:
            raise Forbidden("只有服务双方和管理员可以查看服务影像")
        attached = set(request.evidence_keys)
        objects = sorted(self.storage.list(request_prefix(request.id)), key=lambda o: o.key)
        viewer_id, log_ref = viewer_ids(caller)
        self.access_log.record(AccessLogEntry(request.id, viewer_id, role, len(objects), self.now()))
        logger.info("evidence viewed", extra={"request_id": request.id, "viewer": log_ref,
                                              "viewer_role": role, "photo_count": len(objects)})
        items = []
        for stored in objects:
            items.append({
                "key": stored.key,
                "url": self.storage.presign_download(stored.key, VIEW_EXPIRES_SECONDS),
                "expires_in": VIEW_EXPIRES_SECONDS,
                "size": stored.size,
                "uploaded_at": clock.isoformat(stored.last_modified),
                "attached": stored.key in attached,
            })
        return items

    def access_history(self, caller: Caller, request_id: str, limit: int, cursor: dict[str, Any] | None):
        if not caller.is_admin:
            raise Forbidden()
        self.requests.get(request_id)
        return self.access_log.for_request(request_id, limit, cursor)

    def expired(self, objects: Iterable[StoredObject]) -> Iterator[StoredObject]:
        cutoff = self.now() - self.retention
        for stored in objects:
            # Keys we issued carry their issue time; anything else under evidence/ (a manual
            # upload, an older key format) is aged by S3's LastModified.
            born = issued_at_of(stored.key) or stored.last_modified
            if born < cutoff:
                yield stored

    def sweep_unreferenced(self, batch: int = 100) -> dict[str, int]:
        """Delete every registered upload older than ``REFERENCE_WINDOW`` that its request does
        not name, and forget the ones it does. Deleting comes before forgetting, so a sweep that
        dies midway is simply repeated."""
        deleted = kept = 0
        cutoff = self.now() - REFERENCE_WINDOW
        while True:
            due = self.uploads.due(cutoff, batch)
            if not due:
                break
            named: dict[str, set[str]] = {}
            for request_id in {u.request_id for u in due}:
                try:
                    named[request_id] = set(self.requests.get(request_id).evidence_keys)
                except NotFound:
                    named[request_id] = set()
            orphans = [u.key for u in due if u.key not in named[u.request_id]]
            if orphans:
                self.storage.delete(orphans)
            deleted += len(orphans)
            kept += len(due) - len(orphans)
            self.uploads.remove(due)
            if len(due) < batch:
                break
        logger.info("unreferenced evidence sweep", extra={"deleted": deleted, "kept": kept})
        return {"deleted": deleted, "kept": kept}

    def purge_expired(self, batch: int = 1000) -> int:
        """Delete every photo older than the retention period; returns how many were deleted."""
        deleted = 0
        pending: list[str] = []
        for stored in self.expired(self.storage.list(ROOT_PREFIX)):
            pending.append(stored.key)
            if len(pending) == batch:
                deleted += self.storage.delete(pending)
                pending = []
        if pending:
            deleted += self.storage.delete(pending)
        logger.info("evidence retention sweep", extra={"deleted": deleted,
                                                       "retention_days": self.retention.days})
        return deleted
