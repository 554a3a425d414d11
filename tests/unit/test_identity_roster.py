"""Roster rules without I/O: headers, each field, duplicates in the file, row numbers."""
from __future__ import annotations

import pytest

from functions.identity.roster import (CSV, XLSX, ImportEmpty, ImportInvalid, ImportTooLarge, columns, kind_of,
                                       parse_roster)
from tests.roster_files import ENGLISH, csv_bytes, xlsx

YEAR = 2026


def report(error):
    return {r["row"]: r["errors"] for r in error.value.details["rows"]}


def test_chinese_and_english_headers_and_their_variants_name_the_same_fields():
    found, problem = columns(["姓名", "手机号码", "楼号", "单元", "房间号", "出生年"])
    assert problem is None and list(found) == ["name", "phone", "building", "unit", "room", "birth_year"]
    found, problem = columns([" Name ", "PHONE", "Building", "unit", "room", "Birth_Year"])
    assert problem is None and len(found) == 6


def test_header_problems_are_row_1s_errors():
    _, problem = columns(["姓名", "姓名", "手机", "楼栋", "房号", "年龄"])
    assert problem.row == 1
    assert set(problem.errors) == {"姓名", "年龄", "unit", "birth_year"}


def test_values_excel_writes_as_numbers_are_read_as_text():
    rows = parse_roster(xlsx([["王", 13812345678, 3, 1.0, 502, 1956.0]]), XLSX, YEAR)
    assert (rows[0].phone, rows[0].building, rows[0].unit, rows[0].room, rows[0].birth_year) == \
        ("13812345678", "3", "1", "502", 1956)


@pytest.mark.parametrize("field,value,reason", [
    ("name", "", "姓名必填"), ("name", "长" * 41, "不能超过 40 个字"),
    ("phone", "", "手机必填"), ("phone", "12812345678", "手机号格式不正确（11 位大陆手机号）"),
    ("phone", "1381234567x", "手机号格式不正确（11 位大陆手机号）"),
    ("room", "", "房号必填"), ("birth_year", "", "出生年份必填"), ("birth_year", "1956年", "出生年份须为四位数字年份"),
    ("birth_year", "1899", f"须在 1900 到 {YEAR} 之间"), ("birth_year", str(YEAR + 1), f"须在 1900 到 {YEAR} 之间"),
])
def test_each_field_rule(field, value, reason):
    row = {"name": "王", "phone": "13812345678", "building": "3", "unit": "1", "room": "502", "birth_year": "1956"}
    row[field] = value
    with pytest.raises(ImportInvalid) as error:
        parse_roster(csv_bytes([[row[f] for f in ENGLISH]], ENGLISH), CSV, YEAR)
    assert report(error) == {2: {field: reason}}


def test_duplicate_phones_name_the_first_row_and_blank_rows_keep_their_numbers():
    rows = [["甲", "13812345678", "3", "1", "501", "1950"], ["", "", "", "", "", ""],
            ["乙", "138-1234-5678", "3", "1", "502", "1950"]]
    with pytest.raises(ImportInvalid) as error:
        parse_roster(csv_bytes(rows), CSV, YEAR)
    assert report(error) == {4: {"phone": "与第 2 行的手机号重复"}}


def test_every_bad_row_is_reported_at_once():
    rows = [["", "1", "", "1", "1", "1"]] * 3
    with pytest.raises(ImportInvalid) as error:
        parse_roster(csv_bytes(rows), CSV, YEAR)
    assert sorted(report(error)) == [2, 3, 4]
    assert set(report(error)[2]) == {"name", "phone", "building", "birth_year"}


def test_a_header_only_file_is_empty_and_too_many_rows_is_too_large():
    with pytest.raises(ImportEmpty):
        parse_roster(csv_bytes([]), CSV, YEAR)
    with pytest.raises(ImportEmpty):
        parse_roster(b"\r\n  \r\n", CSV, YEAR)
    rows = [[f"r{i}", str(13800000000 + i), "1", "1", str(i), "1950"] for i in range(5)]
    with pytest.raises(ImportTooLarge):
        parse_roster(csv_bytes(rows), CSV, YEAR, max_rows=4)


def test_gbk_and_bom_are_read():
    rows = [["王阿姨", "13812345678", "3幢", "1", "502", "1956"]]
    for encoding in ("utf-8", "utf-8-sig", "gbk"):
        assert parse_roster(csv_bytes(rows, encoding=encoding), CSV, YEAR)[0].name == "王阿姨"


def test_content_types():
    assert kind_of("text/csv; charset=utf-8") == CSV and kind_of(XLSX) == XLSX and kind_of("text/plain") is None


def test_the_app_imports_neither_openpyxl_nor_the_roster_rules_at_cold_start():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, functions.app; print(sorted(m for m in ('openpyxl', 'tqdm', 'functions.identity.roster') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2], env={"PYTHONPATH": ".", "TIMEBANK_STAGE": "test",
                                                                       "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
