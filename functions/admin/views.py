"""What leaves the administration domain over HTTP: audit entries (ids, never personal data)
and volunteer-record rows (the export's English field names; the CSV's Chinese headers)."""
from __future__ import annotations

import csv
import io
from typing import Any, Iterable

from functions.admin.model import VolunteerRecord
from functions.core import clock
from functions.core.audit import AuditEntry


def audit_entry_view(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": clock.isoformat(entry.at), "actor_id": entry.actor_id, "action": entry.action,
            "target": dict(entry.target), "reason": entry.reason or None, "details": dict(entry.details)}


def volunteer_record_view(record: VolunteerRecord) -> dict[str, Any]:
    return {"name": record.name, "id_number": record.id_number, "volunteer_number": record.volunteer_number,
            "hours": record.hours, "content": record.content, "organiser": record.organiser,
            "service_date": record.service_date, "certificate_number": record.certificate_number}


CSV_HEADERS = ("姓名", "证件号码", "志愿者编号", "服务时长", "服务内容", "服务组织", "服务日期", "证明编号")


def volunteer_records_csv(records: Iterable[VolunteerRecord]) -> str:
    """UTF-8 with a BOM (what Excel needs to read Chinese), CRLF rows, the national headers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADERS)
    for r in records:
        writer.writerow([_cell(v) for v in (r.name, r.id_number, r.volunteer_number, r.hours, r.content,
                                             r.organiser, r.service_date, r.certificate_number)])
    return "\ufeff" + out.getvalue()


def _cell(value: str) -> str:
    # A cell starting with = + - @ is a formula to Excel (CSV injection): quote it as text.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
