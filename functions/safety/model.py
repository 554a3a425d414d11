"""Safety as plain rules: insurance records (every accepted service insured for its window,
the insured list per date range) and the keys, sizes and viewers of evidence photos.

The ``request.accepted`` event reaches the ``insurance`` queue; its consumer
(``InsuranceRegister.handle``) reads the request and writes ONE record per request (a
conditional put: a duplicate delivery has one effect); ``request.cancelled`` of an accepted
request marks the record cancelled. Check-in of a category that ``requires_insurance`` waits for that record
(``has_record``).

The record holds ids only (volunteer id, request id), never names or phones: the insurer gets
the named list from the community office through its own channel under the policy's data
agreement, not through this API.

Check-in/out photos (影像留存): private storage, short-lived links, access log, retention.

Upload: the accepting volunteer asks for an upload of one photo and gets a pre-signed **PUT**
(API.md): ``upload_url`` with the ``headers`` to send (``Content-Type``, and ``Content-Length``
when the body declared ``size``). The signature covers the key, the type and, when declared, the
exact size, so S3 refuses any other. A PUT cannot carry a size *range*, so when no size was
declared (contract clients send no body) the limit is enforced when the key is used: check-in
and completion call ``verify_upload`` (one HeadObject), which refuses a missing photo, and
refuses and deletes one that is too large or of another type (PIPL: what we refuse we do not
keep). The same response carries, under ``form``, an S3 POST policy (key, type, 1 byte..5 MB)
for ``wx.uploadFile``, which sends a multipart POST; there S3 itself enforces the range.

An upload that nothing ever names would otherwise stay, whatever its size, for the whole
retention period. Every issued key is therefore registered (``PendingUpload``, one small item
written with the link); a check-in or completion may name a key only within
``USE_WINDOW`` of its issue, and the ``evidence-uploads`` schedule deletes, once
``REFERENCE_WINDOW`` has passed, every registered photo its request does not name. The gap
between the two windows is what keeps the sweep from deleting a photo a check-in is naming at
that moment. So an unbounded size-less PUT lives at most ``REFERENCE_WINDOW`` plus one sweep
period, and is refused and deleted at once if a check-in names it.

Keys are ``evidence/<request_id>/<YYYYMMDDTHHMMSS>-<random>.<ext>``: the request prefix lets the
request lifecycle accept only this request's keys and lets viewers list exactly its photos;
the issue time (community time zone) in the key is what retention measures age by, so the
rule does not depend on S3's LastModified (which can only be later, by at most the upload
URL's 5 minutes).

Viewing: the two parties (requester's household, the volunteer) and admins get pre-signed GET
links of the photos that exist (a photo deleted by retention simply is not listed); every view
is written to the access log (viewer, request, time, how many photos) — PIPL "who viewed what".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from functions.core import clock
from functions.core.caller import Caller
from functions.core.errors import BusinessRuleViolation
from functions.core.observability import actor_ref
from functions.core.validation import field_error
from functions.requests import model as lc
from functions.requests.model import ServiceRequest

# --- insurance ---------------------------------------------------------------------------------

ACTIVE, CANCELLED = "active", "cancelled"
MAX_EXPORT_DAYS = 92          # one quarter: the insurer's reporting period
MAX_EXPORT_ROWS = 20_000      # keeps a CSV under API Gateway's response size; narrow the range beyond


class InsuranceNotConfigured(RuntimeError):
    """Deployed without an insurer/policy: records cannot be written (the message goes to the DLQ)."""


class NotInsurable(RuntimeError):
    """A message names a request that cannot be insured (never accepted): a poison message."""


@dataclass(frozen=True)
class InsurancePolicy:
    insurer: str
    policy_number: str
    buffer: timedelta = timedelta(minutes=30)

    def require_configured(self) -> None:
        if not self.insurer or not self.policy_number:
            raise InsuranceNotConfigured("TIMEBANK_INSURER / TIMEBANK_INSURANCE_POLICY_NUMBER not set")


@dataclass(frozen=True)
class InsuranceRecord:
    request_id: str
    volunteer_id: str
    category: str
    category_name: str
    service_start: datetime
    duration_minutes: int
    covered_from: datetime
    covered_to: datetime
    insurer: str
    policy_number: str
    status: str
    created_at: datetime
    cancelled_at: datetime | None = None
    activity_id: str | None = None    # a participant of a community activity (request_id: the sign-up)

    @property
    def service_date(self) -> date:
        """The day of the service in the community's time zone: what the export filters on."""
        return self.service_start.astimezone(clock.CHINA_TZ).date()



def covered_window(start: datetime, duration_minutes: int, buffer: timedelta) -> tuple[datetime, datetime]:
    """The insured period: the service plus a buffer on both sides (travel, running late)."""
    return start - buffer, start + timedelta(minutes=duration_minutes) + buffer


def record_for(request: ServiceRequest, category_name: str, policy: InsurancePolicy,
               now: datetime) -> InsuranceRecord:
    if request.volunteer_id is None:
        raise NotInsurable(f"request {request.id} has no volunteer (status {request.status})")
    covered_from, covered_to = covered_window(request.start_at, request.duration_minutes, policy.buffer)
    cancelled = request.status == lc.CANCELLED
    return InsuranceRecord(
        request_id=request.id, volunteer_id=request.volunteer_id, category=request.category,
        category_name=category_name, service_start=request.start_at,
        duration_minutes=request.duration_minutes, covered_from=covered_from, covered_to=covered_to,
        insurer=policy.insurer, policy_number=policy.policy_number,
        status=CANCELLED if cancelled else ACTIVE, created_at=now, cancelled_at=now if cancelled else None,
    )


ACTIVITY_CATEGORY = "activity"


def record_for_signup(subject: str, activity_id: str, resident_id: str, title: str, start: datetime, end: datetime,
                      policy: InsurancePolicy, now: datetime, active: bool) -> InsuranceRecord:
    """A participant of an activity that requires insurance, insured for the activity's window
    (keyed by the sign-up: ``<activity>.<resident>.<n>``)."""
    duration = max(0, int((end - start).total_seconds() // 60))
    covered_from, covered_to = covered_window(start, duration, policy.buffer)
    return InsuranceRecord(
        request_id=subject, volunteer_id=resident_id, category=ACTIVITY_CATEGORY,
        category_name=f"社群活动：{title}"[:60], service_start=start, duration_minutes=duration,
        covered_from=covered_from, covered_to=covered_to, insurer=policy.insurer, policy_number=policy.policy_number,
        status=ACTIVE if active else CANCELLED, created_at=now, cancelled_at=None if active else now,
        activity_id=activity_id)


@dataclass(frozen=True)
class ExportRange:
    first_day: date
    last_day: date


def export_range(first: date, last: date) -> ExportRange:
    """``from``/``to`` are inclusive service dates (community time), at most a quarter apart."""
    if last < first:
        raise field_error("to", "结束日期不能早于开始日期")
    if (last - first).days + 1 > MAX_EXPORT_DAYS:
        raise field_error("to", f"日期范围最多 {MAX_EXPORT_DAYS} 天")
    return ExportRange(first, last)


# --- evidence photos ---------------------------------------------------------------------------

CONTENT_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/heic": "heic"}
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
UPLOAD_EXPIRES_SECONDS = 300
VIEW_EXPIRES_SECONDS = 120
DEFAULT_RETENTION_DAYS = 180
UPLOAD_STATES = (lc.ACCEPTED, lc.IN_SERVICE)
USE_WINDOW = timedelta(minutes=20)        # a check-in/completion names a photo within this of its issue
REFERENCE_WINDOW = timedelta(minutes=30)  # after this, a photo its request does not name is deleted
ROOT_PREFIX = "evidence/"
EVIDENCE_KEY = re.compile(r"^evidence/(?P<request>[A-Za-z0-9_\-]+)/(?P<issued>\d{8}T\d{6})-[0-9a-f]{16}\.(jpg|png|heic)$")


class EvidenceNotUploaded(BusinessRuleViolation):
    code = "EVIDENCE_NOT_UPLOADED"
    default_message = "服务影像尚未上传成功，请重新上传后再试"


class EvidenceTooLarge(BusinessRuleViolation):
    code = "EVIDENCE_TOO_LARGE"
    default_message = "服务影像超过 5MB，已删除，请压缩后重新上传"


class EvidenceExpired(BusinessRuleViolation):
    code = "EVIDENCE_EXPIRED"
    default_message = "服务影像上传已超过 20 分钟，请重新拍摄上传"


class EvidenceWrongType(BusinessRuleViolation):
    code = "EVIDENCE_WRONG_TYPE"
    default_message = "服务影像格式不符，已删除，请上传 JPEG、PNG 或 HEIC 图片"


def request_prefix(request_id: str) -> str:
    return f"{ROOT_PREFIX}{request_id}/"


def evidence_key(request_id: str, issued_at: datetime, token: str, extension: str) -> str:
    stamp = issued_at.astimezone(clock.CHINA_TZ).strftime("%Y%m%dT%H%M%S")
    return f"{request_prefix(request_id)}{stamp}-{token}.{extension}"


def issued_at_of(key: str) -> datetime | None:
    """The issue time written into a key by ``evidence_key``; None for any other key."""
    match = EVIDENCE_KEY.match(key)
    if not match:
        return None
    return datetime.strptime(match.group("issued"), "%Y%m%dT%H%M%S").replace(tzinfo=clock.CHINA_TZ)


@dataclass(frozen=True)
class PendingUpload:
    """An issued upload key not yet known to be named by its request."""
    key: str
    request_id: str
    issued_at: datetime


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class ObjectHead:
    key: str
    size: int
    content_type: str


@dataclass(frozen=True)
class AccessLogEntry:
    request_id: str
    viewer_id: str        # resident id, or the admin's openid for admins without a resident record
    viewer_role: str      # requester / volunteer / admin
    photo_count: int
    viewed_at: datetime


def viewer_role(request: lc.ServiceRequest, caller: Caller) -> str | None:
    """Who may see the photos of ``request``: the parties while verified, and admins."""
    if caller.is_admin:
        return "admin"
    if not caller.is_verified:
        return None
    if request.is_volunteer(caller):
        return "volunteer"
    if request.is_requester_side(caller):
        return "requester"
    return None


def viewer_ids(caller: Caller) -> tuple[str, str]:
    """(id for the access log, reference for log lines). Logs carry ids only: an admin with no
    resident record is named in log lines by a digest of the openid, in the access log by the
    openid itself (that table is read by admins only)."""
    return caller.resident_id or caller.openid, actor_ref(caller.resident_id, caller.openid)
