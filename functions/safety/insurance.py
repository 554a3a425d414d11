"""Insurance records: every accepted service is insured for its window, and admins export the
insured list (参保名单) per date range.

Accepting a request publishes ``{"type": "request.accepted", "request_id"}`` to the
``insurance`` queue; the consumer (``insurance_consumer``) calls ``InsuranceRegister.record_accepted``
which reads the request and writes ONE record per request (a conditional put: a duplicate
delivery has one effect). Check-in of a category that ``requires_insurance`` waits for that record
(``has_record``).

The record holds ids only (volunteer id, request id), never names or phones: the insurer gets
the named list from the community office through its own channel under the policy's data
agreement, not through this API.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Callable, Protocol

from functions.core import clock
from functions.core.queue_consumer import PoisonMessage
from functions.core.errors import InvalidState, LimitExceeded, ValidationError
from functions.core.messaging import QueueSpec, register_queue
from functions.requests import lifecycle as lc
from functions.requests.lifecycle import ServiceRequest

INSURANCE_QUEUE = register_queue(QueueSpec(
    "insurance",
    purpose="accepted (and cancelled) services → one insurance record per request",
    consumer_timeout_seconds=30,
    max_receive_count=5,
    batch_size=10,
))

ACTIVE, CANCELLED = "active", "cancelled"
ACCEPTED_EVENT, CANCELLED_EVENT = "request.accepted", "request.cancelled"
MAX_EXPORT_DAYS = 92          # one quarter: the insurer's reporting period
MAX_EXPORT_ROWS = 20_000      # keeps a CSV under API Gateway's response size; narrow the range beyond
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


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

    @property
    def service_date(self) -> date:
        """The day of the service in the community's time zone: what the export filters on."""
        return self.service_start.astimezone(clock.CHINA_TZ).date()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("service_start", "covered_from", "covered_to", "created_at", "cancelled_at"):
            if out[name] is not None:
                out[name] = clock.isoformat(out[name])
        out["service_date"] = self.service_date.isoformat()
        return out


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


@dataclass(frozen=True)
class ExportRange:
    first_day: date
    last_day: date


def export_range(raw_from: str | None, raw_to: str | None) -> ExportRange:
    """``from``/``to`` are inclusive service dates (YYYY-MM-DD, community time)."""
    problems: dict[str, str] = {}
    days: dict[str, date] = {}
    for name, raw in (("from", raw_from), ("to", raw_to)):
        if raw is None or raw == "":
            problems[name] = "is required (YYYY-MM-DD)"
            continue
        try:
            if not _DATE.fullmatch(raw):
                raise ValueError
            days[name] = date.fromisoformat(raw)
        except ValueError:
            problems[name] = "must be a date YYYY-MM-DD"
    if not problems:
        if days["to"] < days["from"]:
            problems["to"] = "must not be before from"
        elif (days["to"] - days["from"]).days + 1 > MAX_EXPORT_DAYS:
            problems["to"] = f"the range may span at most {MAX_EXPORT_DAYS} days"
    if problems:
        raise ValidationError("日期范围有误", {"fields": problems})
    return ExportRange(days["from"], days["to"])


# --- ports -------------------------------------------------------------------------------------

class InsuranceRecordStore(Protocol):
    def add(self, record: InsuranceRecord) -> bool:
        """Write unless a record for the request exists; True if this call wrote it."""

    def get(self, request_id: str) -> InsuranceRecord | None: ...

    def exists(self, request_id: str) -> bool: ...

    def mark_cancelled(self, request_id: str, at: datetime) -> bool:
        """active → cancelled; False if there is no active record."""

    def between(self, days: ExportRange, limit: int,
                cursor: dict[str, Any] | None) -> tuple[list[InsuranceRecord], dict[str, Any] | None]:
        """Records whose service date is in ``days``, by service start; ``cursor`` continues."""


class RequestReader(Protocol):
    def get(self, request_id: str) -> ServiceRequest:
        """Raises NotFound for an unknown id."""


# --- the register --------------------------------------------------------------------------------

class InsuranceRegister:
    def __init__(self, store: InsuranceRecordStore, requests: RequestReader,
                 category_name: Callable[[str], str], policy: InsurancePolicy,
                 now: Callable[[], datetime] = clock.now):
        self.store, self.requests, self.category_name = store, requests, category_name
        self.policy, self.now = policy, now

    def has_record(self, request_id: str) -> bool:
        return self.store.exists(request_id)

    def handle(self, message: dict[str, Any]) -> InsuranceRecord | None:
        """One queue message (already parsed and checked by ``parse_message``)."""
        if message["type"] == ACCEPTED_EVENT:
            return self.record_accepted(message["request_id"])
        return self.record_cancelled(message["request_id"])

    def record_accepted(self, request_id: str) -> InsuranceRecord:
        """Idempotent: the first delivery writes, every later one finds and returns that record."""
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


_REQUEST_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")


def parse_message(message: dict[str, Any]) -> dict[str, Any]:
    """Checks a decoded queue message (``core.queue_consumer`` decodes the JSON)."""
    if message.get("type") not in (ACCEPTED_EVENT, CANCELLED_EVENT):
        raise PoisonMessage("unknown message type")
    request_id = message.get("request_id")
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise PoisonMessage("request_id missing or malformed")
    return {"type": message["type"], "request_id": request_id}


# --- an in-memory store for domain tests and the local demo ------------------------------------

class InMemoryInsuranceRecordStore:
    def __init__(self) -> None:
        self.records: dict[str, InsuranceRecord] = {}
        self.writes = 0

    def add(self, record: InsuranceRecord) -> bool:
        if record.request_id in self.records:
            return False
        self.records[record.request_id] = record
        self.writes += 1
        return True

    def get(self, request_id: str) -> InsuranceRecord | None:
        return self.records.get(request_id)

    def exists(self, request_id: str) -> bool:
        return request_id in self.records

    def mark_cancelled(self, request_id: str, at: datetime) -> bool:
        record = self.records.get(request_id)
        if record is None or record.status != ACTIVE:
            return False
        self.records[request_id] = replace(record, status=CANCELLED, cancelled_at=at)
        self.writes += 1
        return True

    def between(self, days: ExportRange, limit: int,
                cursor: dict[str, Any] | None) -> tuple[list[InsuranceRecord], dict[str, Any] | None]:
        matching = sorted((r for r in self.records.values() if days.first_day <= r.service_date <= days.last_day),
                          key=lambda r: (r.service_start, r.request_id))
        offset = int((cursor or {}).get("offset", 0))
        page = matching[offset:offset + limit]
        more = offset + limit < len(matching)
        return page, ({"offset": offset + limit} if more else None)


def get_insurance_register() -> InsuranceRegister:
    """The register built from the real adapters (what ``requests.wiring`` asks for)."""
    from functions.safety.wiring import insurance_register

    return insurance_register()
