"""Check-in/out photos (影像留存): private storage, short-lived links, access log, retention.

Upload: the accepting volunteer asks for an upload of one photo and gets a pre-signed **PUT**
(API.md): ``upload_url`` with the ``headers`` to send (``Content-Type``, and ``Content-Length``
when the body declared ``size``). The signature covers the key, the type and, when declared, the
exact size, so S3 refuses any other. A PUT cannot carry a size *range*, so when no size was
declared (contract clients send no body) the limit is enforced when the key is used: check-in
and completion call ``verify_upload`` (one HeadObject), which refuses a missing photo, and
refuses and deletes one that is too large or of another type (PIPL: what we refuse we do not
keep). The same response carries, under ``form``, an S3 POST policy (key, type, 1 byte..5 MB)
for ``wx.uploadFile``, which sends a multipart POST; there S3 itself enforces the range.

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

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator, Protocol

from functions.core import clock
from functions.core.errors import BusinessRuleViolation, Forbidden, InvalidState, ValidationError
from functions.core.observability import logger
from functions.identity.caller import Caller
from functions.requests import lifecycle as lc
from functions.safety.insurance import RequestReader

CONTENT_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/heic": "heic"}
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
UPLOAD_EXPIRES_SECONDS = 300
VIEW_EXPIRES_SECONDS = 120
DEFAULT_RETENTION_DAYS = 180
UPLOAD_STATES = (lc.ACCEPTED, lc.IN_SERVICE)
ROOT_PREFIX = "evidence/"
_KEY = re.compile(r"^evidence/(?P<request>[A-Za-z0-9_\-]+)/(?P<issued>\d{8}T\d{6})-[0-9a-f]{16}\.(jpg|png|heic)$")


class EvidenceNotUploaded(BusinessRuleViolation):
    code = "EVIDENCE_NOT_UPLOADED"
    default_message = "服务影像尚未上传成功，请重新上传后再试"


class EvidenceTooLarge(BusinessRuleViolation):
    code = "EVIDENCE_TOO_LARGE"
    default_message = "服务影像超过 5MB，已删除，请压缩后重新上传"


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
    match = _KEY.match(key)
    if not match:
        return None
    return datetime.strptime(match.group("issued"), "%Y%m%dT%H%M%S").replace(tzinfo=clock.CHINA_TZ)


# --- ports ---------------------------------------------------------------------------------------

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


class ObjectStorage(Protocol):
    def presign_put(self, key: str, content_type: str, size: int | None, expires_in: int) -> str:
        """A PUT URL for exactly ``key`` and ``content_type`` and, when given, exactly ``size`` bytes."""

    def presign_post(self, key: str, content_type: str, max_bytes: int, expires_in: int) -> dict[str, Any]:
        """A POST policy for exactly ``key`` and ``content_type``, 1..``max_bytes`` bytes:
        ``{"url", "fields"}``."""

    def head(self, key: str) -> ObjectHead | None:
        """Size and type of the object, None when there is none."""

    def presign_download(self, key: str, expires_in: int) -> str: ...

    def list(self, prefix: str) -> Iterator[StoredObject]: ...

    def delete(self, keys: list[str]) -> int:
        """Delete the keys (absent ones are fine); returns how many were requested."""


@dataclass(frozen=True)
class AccessLogEntry:
    request_id: str
    viewer_id: str        # resident id, or the admin's openid for admins without a resident record
    viewer_role: str      # requester / volunteer / admin
    photo_count: int
    viewed_at: datetime


class AccessLog(Protocol):
    def record(self, entry: AccessLogEntry) -> None: ...

    def for_request(self, request_id: str, limit: int,
                    cursor: dict[str, Any] | None) -> tuple[list[AccessLogEntry], dict[str, Any] | None]: ...


# --- the service -------------------------------------------------------------------------------

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


def _viewer(caller: Caller) -> tuple[str, str]:
    """(id for the access log, reference for log lines). Logs carry ids only: an admin with no
    resident record is named in log lines by a digest of the openid, in the access log by the
    openid itself (that table is read by admins only)."""
    if caller.resident_id:
        return caller.resident_id, caller.resident_id
    return caller.openid, "openid#" + hashlib.sha256(caller.openid.encode()).hexdigest()[:12]


class EvidenceService:
    def __init__(self, requests: RequestReader, storage: ObjectStorage, access_log: AccessLog,
                 retention_days: int = DEFAULT_RETENTION_DAYS, now: Callable[[], datetime] = clock.now,
                 token: Callable[[], str] = lambda: secrets.token_hex(8)):
        if retention_days < 1:
            raise ValueError("evidence retention must be at least one day")
        self.requests, self.storage, self.access_log = requests, storage, access_log
        self.retention = timedelta(days=retention_days)
        self.now, self.token = now, token

    def issue_upload(self, caller: Caller, request_id: str, content_type: str = "image/jpeg",
                     size: int | None = None) -> dict[str, Any]:
        extension = CONTENT_TYPES.get(content_type)
        if extension is None:
            raise ValidationError(details={"fields": {"content_type": f"must be one of {', '.join(CONTENT_TYPES)}"}})
        if size is not None and not 1 <= size <= MAX_UPLOAD_BYTES:
            raise ValidationError(details={"fields": {"size": f"must be 1..{MAX_UPLOAD_BYTES} bytes"}})
        request = self.requests.get(request_id)
        if not request.is_volunteer(caller):
            raise Forbidden("只有接单的志愿者可以上传服务影像")
        if request.status not in UPLOAD_STATES:
            raise InvalidState(f"需求当前状态为 {request.status}，不能上传影像",
                               {"status": request.status, "allowed": list(UPLOAD_STATES)})
        key = evidence_key(request.id, self.now(), self.token(), extension)
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
        match = _KEY.match(key)
        if not key.startswith(request_prefix(request_id)) or match is None:
            raise ValidationError(details={"fields": {"evidence_key": "was not issued for this request"}})
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
        viewer_id, log_ref = _viewer(caller)
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


# --- in-memory adapters for domain tests ---------------------------------------------------------

class InMemoryObjectStorage:
    """Objects by key; pre-signed URLs are opaque strings naming what they would allow."""

    def __init__(self, now: Callable[[], datetime] = clock.now):
        self.objects: dict[str, StoredObject] = {}
        self.content_types: dict[str, str] = {}
        self.signed: list[dict[str, Any]] = []
        self.heads = 0
        self.now = now

    def put(self, key: str, size: int, last_modified: datetime | None = None,
            content_type: str | None = None) -> None:
        """Store an object; its type defaults to the one its key's extension was issued for."""
        if content_type is None:
            extension = key.rsplit(".", 1)[-1]
            content_type = next((t for t, e in CONTENT_TYPES.items() if e == extension), "application/octet-stream")
        self.objects[key] = StoredObject(key, size, last_modified or self.now())
        self.content_types[key] = content_type

    def presign_put(self, key: str, content_type: str, size: int | None, expires_in: int) -> str:
        self.signed.append({"method": "PUT", "key": key, "content_type": content_type, "size": size,
                            "expires_in": expires_in})
        return f"memory://evidence/{key}?method=PUT&content_type={content_type}&size={size}"

    def presign_post(self, key: str, content_type: str, max_bytes: int, expires_in: int) -> dict[str, Any]:
        self.signed.append({"method": "POST", "key": key, "content_type": content_type, "max_bytes": max_bytes,
                            "expires_in": expires_in})
        return {"url": "memory://evidence/", "fields": {"key": key, "Content-Type": content_type}}

    def head(self, key: str) -> ObjectHead | None:
        self.heads += 1
        stored = self.objects.get(key)
        return None if stored is None else ObjectHead(key, stored.size, self.content_types[key])

    def presign_download(self, key: str, expires_in: int) -> str:
        self.signed.append({"method": "GET", "key": key, "expires_in": expires_in})
        return f"memory://evidence/{key}?method=GET&expires_in={expires_in}"

    def list(self, prefix: str) -> Iterator[StoredObject]:
        return iter([o for k, o in sorted(self.objects.items()) if k.startswith(prefix)])

    def delete(self, keys: list[str]) -> int:
        for key in keys:
            self.objects.pop(key, None)
            self.content_types.pop(key, None)
        return len(keys)


class InMemoryAccessLog:
    def __init__(self) -> None:
        self.entries: list[AccessLogEntry] = []

    def record(self, entry: AccessLogEntry) -> None:
        self.entries.append(entry)

    def for_request(self, request_id: str, limit: int, cursor: dict[str, Any] | None):
        matching = sorted((e for e in self.entries if e.request_id == request_id),
                          key=lambda e: e.viewed_at, reverse=True)
        offset = int((cursor or {}).get("offset", 0))
        more = offset + limit < len(matching)
        return matching[offset:offset + limit], ({"offset": offset + limit} if more else None)
