"""Real roster files for the import tests: xlsx built with openpyxl, csv in UTF-8 (with and
without BOM) and GBK, as staff's Excel saves them."""
from __future__ import annotations

import csv
import io
from typing import Any, Iterable

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CHINESE = ["姓名", "手机", "楼栋", "单元", "房号", "出生年份"]
ENGLISH = ["name", "phone", "building", "unit", "room", "birth_year"]


def roster(n_households: int, per_household: int = 1, phone_base: int = 13600000000,
           building: str = "8") -> list[list[Any]]:
    """``n_households`` flats of ``per_household`` residents each, distinct phones."""
    rows = []
    for h in range(n_households):
        for m in range(per_household):
            i = h * per_household + m
            rows.append([f"居民{i}", str(phone_base + i), building, str(1 + h // 500), str(101 + h % 500),
                         1950 + i % 60])
    return rows


def xlsx(rows: Iterable[Iterable[Any]], header: list[str] = CHINESE) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(header)
    for row in rows:
        sheet.append(list(row))
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def csv_bytes(rows: Iterable[Iterable[Any]], header: list[str] = CHINESE, encoding: str = "utf-8") -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    for row in rows:
        writer.writerow(list(row))
    return text.getvalue().encode(encoding)
