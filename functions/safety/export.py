"""The insured list as CSV for Excel: UTF-8 with a BOM (Excel otherwise guesses GBK and garbles
Chinese), a header row, CRLF line ends, and cells that Excel would run as formulas defused."""
from __future__ import annotations

import csv
import io
from typing import Iterable

from functions.safety.insurance import InsuranceRecord

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
        row = record.to_dict()
        writer.writerow([_cell(row[name]) for name, _ in COLUMNS])
    return "\ufeff" + buffer.getvalue()
