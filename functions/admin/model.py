"""The administration domain's rules: which slice of the audit log a query asks for, and the
national volunteer-record row of the exports (issue 12)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from functions.core import clock
from functions.core.errors import LimitExceeded
from functions.core.ids import content_hash
from functions.core.validation import field_error

DEFAULT_AUDIT_DAYS = 365   # a query without ``from`` looks back a year (the retention asked of us)
MAX_EXPORT_DAYS = 366
MAX_EXPORT_ROWS = 20_000   # one response stays under API Gateway's 6 MB (~120 bytes a row); narrow the range


@dataclass(frozen=True)
class AuditRange:
    """``low <= sk < high`` over the ``<at>#<id>`` sort key of the audit indexes."""
    low: str
    high: str

    def months(self) -> list[str]:
        """The community months the range covers, newest first (the ``by-month`` partitions)."""
        first, last = self.low[:7], self.high[:7]
        out, year, month = [], int(last[:4]), int(last[5:7])
        while f"{year:04d}-{month:02d}" >= first:
            out.append(f"{year:04d}-{month:02d}")
            year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        return out


def _moment(value: date | datetime, end: bool) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(clock.CHINA_TZ)
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time(0), clock.CHINA_TZ)


def audit_range(start: date | datetime | None, end: date | datetime | None, now: datetime,
                before: str | None = None) -> AuditRange:
    """From/to as days (``to`` inclusive) or moments; ``before``: a page's last sort key."""
    high_at = _moment(end, True) if end is not None else now + timedelta(seconds=1)
    low_at = _moment(start, False) if start is not None else high_at - timedelta(days=DEFAULT_AUDIT_DAYS)
    high = clock.isoformat(high_at)
    if before is not None and before < high:
        high = before
    return AuditRange(low=clock.isoformat(low_at), high=high)


def hours(minutes: int) -> str:
    """服务时长: hours with one decimal, rounded half up (90 min → "1.5")."""
    tenths = (minutes * 10 + 30) // 60
    return f"{tenths // 10}.{tenths % 10}"


@dataclass(frozen=True)
class Engagement:
    """A volunteer's completed service or activity participation, as the sources report it."""
    volunteer_id: str
    ref: str                 # the request id, or the activity id
    content: str
    service_date: str        # YYYY-MM-DD, community time
    minutes: int


def export_days(first: date, last: date) -> tuple[date, date]:
    if last < first:
        raise field_error("to", "结束日期不能早于开始日期")
    if (last - first).days + 1 > MAX_EXPORT_DAYS:
        raise field_error("to", f"日期范围最多 {MAX_EXPORT_DAYS} 天")
    return first, last


def too_many_rows() -> LimitExceeded:
    return LimitExceeded(f"记录超过 {MAX_EXPORT_ROWS} 条，请缩小日期范围", {"limit": "export_rows",
                                                                  "max_rows": MAX_EXPORT_ROWS})


def volunteer_number(community_id: str, resident_id: str) -> str:
    """志愿者编号: stable per volunteer and community, derived from the resident id (not an ID
    number, which the product never collects), short enough to type: ``DEMO-4F2A9C1B7E``."""
    return f"{community_id.upper()}-{content_hash('volunteer', community_id, resident_id)[:10].upper()}"


def certificate_number(community_id: str, ref: str, resident_id: str) -> str:
    """证明编号: one per (volunteer, service or activity), the same in every export."""
    return f"ZM-{community_id.upper()}-{content_hash('certificate', community_id, ref, resident_id)[:12].upper()}"


def volunteer_record(engagement: Engagement, name: str, community_id: str, organiser: str) -> "VolunteerRecord":
    return VolunteerRecord(name=name, id_number="", volunteer_number=volunteer_number(community_id,
                                                                                    engagement.volunteer_id),
                           minutes=engagement.minutes, content=engagement.content, organiser=organiser,
                           service_date=engagement.service_date,
                           certificate_number=certificate_number(community_id, engagement.ref,
                                                                 engagement.volunteer_id))


@dataclass(frozen=True)
class VolunteerRecord:
    """One row of the national volunteer-record export."""
    name: str
    id_number: str          # 证件号码, masked: the product does not collect ID numbers, so empty
    volunteer_number: str   # 志愿者编号: derived from the resident id, never the ID number
    minutes: int
    content: str            # 服务内容
    organiser: str          # 服务组织
    service_date: str       # 服务日期 YYYY-MM-DD (community time)
    certificate_number: str  # 证明编号: stable per (volunteer, service)

    @property
    def hours(self) -> str:
        return hours(self.minutes)
