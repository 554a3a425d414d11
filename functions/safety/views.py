"""What leaves safety over HTTP: insurance records as JSON, and the insured list as CSV for
Excel: UTF-8 with a BOM (Excel otherwise guesses GBK and garbles Chinese), a header row, CRLF
line ends, and cells that Excel would run as formulas defused."""
from __future__ import annotations

import csv
import io
from dataclasses import asdict
from typing import Any, Iterable

from functions.core import clock
from functions.safety.model import AccessLogEntry, InsuranceRecord

COLUMNS = (
    ("request_id", "需求编号"),
    ("volunteer_id", "志愿者编号"),
    ("category", "服务类别代码"),
    ("category_name", "服务类别"),
    ("service_date", "服务日期"),
    ("service_start", "服务开始"),
    ("duration_minutes", "服务时长(分钟)"),
    ("covered_from", "保障开始"),
    ("covered_to", "保障结束"),
    ("insurer", "保险公司"),
    ("policy_number", "保单号"),
    ("status", "状态"),
    ("created_at", "登记时间"),
    ("cancelled_at", "取消时间"),
    ("activity_id", "活动编号"),
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # An admin-edited category name like "=HYPERLINK(...)" must stay text in Excel.
    return "'" + text if text.startswith(_FORMULA_START) else text


def insured_list_csv(records: Iterable[InsuranceRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([label for _, label in COLUMNS])
    for record in records:
        row = insurance_record_view(record)
        writer.writerow([_cell(row[name]) for name, _ in COLUMNS])
    return "\ufeff" + buffer.getvalue()


def insurance_record_view(record: InsuranceRecord) -> dict[str, Any]:
    out = asdict(record)
    for name in ("service_start", "covered_from", "covered_to", "created_at", "cancelled_at"):
        if out[name] is not None:
            out[name] = clock.isoformat(out[name])
    out["service_date"] = record.service_date.isoformat()
    return out


def access_entry_view(entry: AccessLogEntry) -> dict[str, Any]:
    return {"request_id": entry.request_id, "viewer_id": entry.viewer_id, "viewer_role": entry.viewer_role,
            "photo_count": entry.photo_count, "viewed_at": clock.isoformat(entry.viewed_at)}
