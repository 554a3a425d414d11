"""Roster import: the spreadsheet staff keep (xlsx or csv) → checked rows, in plain Python.

Reading and the row rules only; no I/O beyond the bytes handed in. ``service.import_residents``
checks what needs the store (phones of existing residents, households at an address) and writes.

Row numbers are the ones the spreadsheet shows: the header is row 1, the first resident row 2;
blank rows are skipped but keep their numbers, so staff find the row they must fix.
openpyxl is imported inside ``_xlsx_rows`` only: the Lambda's cold start never pays for it.
"""
from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable

from functions.core.ids import content_hash, derived_id
from functions.identity.model import (  # noqa: F401 - the content types and refusals are the import's
    CONTENT_TYPES, CSV, MIN_BIRTH_YEAR, PHONE_PATTERN, XLSX, Address, ImportEmpty, ImportInvalid, ImportTooLarge,
    address_key,
)


FIELDS = ("name", "phone", "building", "unit", "room", "birth_year")
LABELS = {"name": "姓名", "phone": "手机", "building": "楼栋", "unit": "单元", "room": "房号", "birth_year": "出生年份"}
# Accepted headers (compared after NFKC, case-folding and removing spaces): the Chinese label,
# the English field name, and the variants staff actually type.
_HEADER_NAMES = {
    "name": ("姓名", "name", "居民姓名"),
    "phone": ("手机", "手机号", "手机号码", "phone", "mobile"),
    "building": ("楼栋", "楼号", "building"),
    "unit": ("单元", "单元号", "unit"),
    "room": ("房号", "房间号", "门牌号", "room"),
    "birth_year": ("出生年份", "出生年", "birth_year", "birthyear", "birth year"),
}
MAX_LENGTHS = {"name": 40, "building": 20, "unit": 20, "room": 20}
MAX_ROWS = 20_000   # the command line's ceiling; the endpoint's is lower (``service.MAX_ENDPOINT_ROWS``)


def _header_key(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text).casefold())


HEADERS = {_header_key(alias): field for field, aliases in _HEADER_NAMES.items() for alias in aliases}


@dataclass(frozen=True)
class RosterRow:
    row: int          # as the spreadsheet shows it
    name: str
    phone: str
    building: str
    unit: str
    room: str
    birth_year: int

    @property
    def address(self) -> Address:
        return Address(self.building, self.unit, self.room)


@dataclass(frozen=True)
class RowErrors:
    row: int
    errors: dict[str, str]

    def view(self) -> dict[str, Any]:
        return {"row": self.row, "errors": self.errors}


def invalid(rows: Iterable[RowErrors], message: str | None = None, **extra: Any) -> ImportInvalid:
    ordered = sorted(rows, key=lambda r: r.row)
    return ImportInvalid(message, {"rows": [r.view() for r in ordered], **extra})


# --- reading the file ------------------------------------------------------------------------


def kind_of(content_type: str | None) -> str | None:
    """CSV or XLSX from a Content-Type header (parameters such as charset ignored)."""
    media = (content_type or "").split(";")[0].strip().lower()
    return media if media in CONTENT_TYPES else None


def read_table(data: bytes, kind: str) -> list[list[Any]]:
    """The sheet's cells, row by row (the first sheet of a workbook)."""
    if not data.strip():
        raise ImportEmpty()
    if kind == XLSX or data[:4] == b"PK\x03\x04":
        return _xlsx_rows(data)
    return _csv_rows(_decode(data))


def _decode(data: bytes) -> str:
    # Excel saves "CSV UTF-8" with a BOM and plain "CSV" in the system code page (GBK on a
    # Chinese Windows); GB18030 reads every GBK file.
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise invalid([], "文件编码无法识别，请另存为“CSV UTF-8”或 xlsx 后重新上传",
                  file="编码无法识别（支持 UTF-8、GBK）")  # pragma: no cover - gb18030 decodes any bytes


def _csv_rows(text: str) -> list[list[Any]]:
    try:
        return [row for row in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as error:
        raise invalid([], "CSV 文件格式有误", file=f"CSV 格式有误：{error}") from None


def _xlsx_rows(data: bytes) -> list[list[Any]]:
    from zipfile import BadZipFile

    import openpyxl  # lazily: only an import pays for it

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (BadZipFile, KeyError, ValueError, OSError) as error:
        raise invalid([], "无法读取该 xlsx 文件，请用 Excel 另存为 xlsx 后重新上传",
                      file=f"不是有效的 xlsx 文件（{type(error).__name__}）") from None
    try:
        sheet = workbook.worksheets[0]
        return [list(row) for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()


# --- the rules ------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a number cell: 502 not "502.0"
    return unicodedata.normalize("NFKC", str(value)).strip()


def _phone(value: Any) -> str:
    # Staff write 138 1234 5678 or 138-1234-5678; Excel may keep it as a number.
    return re.sub(r"[\s\-]", "", _text(value))


def columns(header: list[Any]) -> tuple[dict[str, int], RowErrors | None]:
    """Which column holds each field; the header's problems as row 1's errors."""
    found: dict[str, int] = {}
    errors: dict[str, str] = {}
    for index, cell in enumerate(header):
        title = _text(cell)
        if not title:
            continue
        field = HEADERS.get(_header_key(title))
        if field is None:
            errors[title] = "未知列（可用列：" + "、".join(f"{LABELS[f]}/{f}" for f in FIELDS) + "）"
        elif field in found:
            errors[title] = f"重复的列：{LABELS[field]}"
        else:
            found[field] = index
    for field in FIELDS:
        if field not in found:
            errors[field] = f"缺少“{LABELS[field]}”列"
    return found, (RowErrors(1, errors) if errors else None)


def check_row(number: int, cells: dict[str, Any], current_year: int) -> tuple[RosterRow | None, dict[str, str]]:
    errors: dict[str, str] = {}
    values = {field: _text(cells.get(field)) for field in ("name", "building", "unit", "room")}
    for field, value in values.items():
        if not value:
            errors[field] = f"{LABELS[field]}必填"
        elif len(value) > MAX_LENGTHS[field]:
            errors[field] = f"不能超过 {MAX_LENGTHS[field]} 个字"
    phone = _phone(cells.get("phone"))
    if not phone:
        errors["phone"] = "手机必填"
    elif not re.fullmatch(PHONE_PATTERN, phone):
        errors["phone"] = "手机号格式不正确（11 位大陆手机号）"
    year_text = _text(cells.get("birth_year"))
    birth_year = 0
    if not year_text:
        errors["birth_year"] = "出生年份必填"
    elif not year_text.isdigit():
        errors["birth_year"] = "出生年份须为四位数字年份"
    else:
        birth_year = int(year_text)
        if not MIN_BIRTH_YEAR <= birth_year <= current_year:
            errors["birth_year"] = f"须在 {MIN_BIRTH_YEAR} 到 {current_year} 之间"
    if errors:
        return None, errors
    return RosterRow(number, values["name"], phone, values["building"], values["unit"], values["room"],
                     birth_year), {}


def parse_roster(data: bytes, kind: str, current_year: int, max_rows: int = MAX_ROWS) -> list[RosterRow]:
    """Every row checked on its own and against the others of the file (duplicate phones);
    ``ImportInvalid`` with every problem found, ``ImportEmpty``, or the rows."""
    table = read_table(data, kind)
    header_at = 1  # the header's own spreadsheet row: after any blank rows above it
    while table and not any(_text(cell) for cell in table[0]):
        table, header_at = table[1:], header_at + 1
    if not table:
        raise ImportEmpty()
    found, header_problem = columns(table[0])
    if header_problem is not None:
        raise invalid([header_problem], "表头有误：请使用 姓名/name、手机/phone、楼栋/building、单元/unit、"
                                        "房号/room、出生年份/birth_year 这些列")
    body = [(header_at + i, cells) for i, cells in enumerate(table[1:], start=1)
            if any(_text(cell) for cell in cells)]
    if not body:
        raise ImportEmpty()
    if len(body) > max_rows:
        raise ImportTooLarge(details={"rows": len(body), "max_rows": max_rows})
    rows: list[RosterRow] = []
    problems: list[RowErrors] = []
    first_with_phone: dict[str, int] = {}
    for number, cells in body:
        by_field = {field: cells[index] if index < len(cells) else None for field, index in found.items()}
        row, errors = check_row(number, by_field, current_year)
        phone = _phone(by_field.get("phone"))
        if phone and "phone" not in errors:
            if phone in first_with_phone:
                errors["phone"] = f"与第 {first_with_phone[phone]} 行的手机号重复"
            else:
                first_with_phone[phone] = number
        if errors:
            problems.append(RowErrors(number, errors))
        elif row is not None:
            rows.append(row)
    if problems:
        raise invalid(problems)
    return rows


def household_keys(community_id: str, rows: Iterable[RosterRow]) -> dict[str, list[RosterRow]]:
    """Rows by the household they join (the same normalised address = the same household),
    in the order their first row appears."""
    out: dict[str, list[RosterRow]] = {}
    for row in rows:
        out.setdefault(address_key(community_id, row.address), []).append(row)
    return out


# --- the import's plan: ids and batches ---------------------------------------------------------

# One transaction per batch of whole households. Items per household: its residents, the
# household and its address entry, and the starting-credits transfer (its record and the
# household's balance; the issuance side is one balance item per shard, shared by the batch).
BATCH_HOUSEHOLDS = 10
BATCH_ITEMS = 80           # of DynamoDB's 100, room for the ledger's issuance shards
TRANSFER_ITEMS = 3


def roster_import_id(community_id: str, rows: Iterable[RosterRow]) -> str:
    """The same rows give the same import (whatever the file format): a rerun is the same import."""
    digest = content_hash(*(f"{r.row}|{r.name}|{r.phone}|{r.building}|{r.unit}|{r.room}|{r.birth_year}"
                            for r in rows))
    return derived_id("imp", community_id, digest)


def imported_resident_id(import_id: str, row: int) -> str:
    return derived_id("res", import_id, str(row))


def imported_household_id(import_id: str, key: str) -> str:
    return derived_id("hh", import_id, key)


@dataclass(frozen=True)
class HouseholdPlan:
    address_key: str
    household_id: str
    new: bool                 # created by this import (else: joins a household registered there)
    owed: bool                # its starting credits come with this import
    rows: tuple[RosterRow, ...]
    # A new household already at its address: its batch committed in an earlier run. Not
    # part of the batching (the batches stay those of the first run).
    written: bool = False

    @property
    def items(self) -> int:
        return len(self.rows) + (2 if self.new else 1) + (TRANSFER_ITEMS if self.owed else 0)


@dataclass(frozen=True)
class ImportResult:
    import_id: str
    imported: int
    households: int
    new_households: int
    dry_run: bool
    batches: int

    def view(self) -> dict[str, Any]:
        return {"imported": self.imported, "households": self.households, "new_households": self.new_households,
                "dry_run": self.dry_run, "import_id": self.import_id, "batches": self.batches}


def import_batches(plans: list[HouseholdPlan]) -> list[list[HouseholdPlan]]:
    """Whole households, in the file's order, ≤ ``BATCH_HOUSEHOLDS`` and ≤ ``BATCH_ITEMS`` each:
    the same rows always give the same batches (what makes a rerun find what was written)."""
    batches: list[list[HouseholdPlan]] = []
    current: list[HouseholdPlan] = []
    items = 0
    for plan in plans:
        if current and (len(current) == BATCH_HOUSEHOLDS or items + plan.items > BATCH_ITEMS):
            batches.append(current)
            current, items = [], 0
        current.append(plan)
        items += plan.items
    if current:
        batches.append(current)
    return batches
