"""Request schemas: one declaration validates a request and documents it.

A route declares its body, query and path parameters with these fields (``core.web.route``);
the same objects clean the incoming values and produce the OpenAPI schema of the operation
(``core.openapi``), so the document cannot drift from what the code accepts.

Every refusal is 400 ``VALIDATION_ERROR`` with ``details.fields``: field name → a reason in
Chinese that the mini-program can show as it is ("标题最多 60 个字"). Bodies with fields the
schema does not know are refused, naming the field: a client that sends ``{"to": {"community":
…}}`` to a server that does not know communities must hear so, not have it silently ignored.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable, Mapping

from functions.core import clock
from functions.core.errors import ValidationError

MAX_AMOUNT_MINUTES = 1_000_000  # ~2 years of one person's time: anything larger is a typo or an attack
MAX_ID_LENGTH = 128             # ids we issue are ~30 characters; DynamoDB refuses keys over 2 KB (a 500)
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class FieldError(ValueError):
    """One field's problem, as the reason shown to the resident."""


def _named(label: str | None, reason: str) -> str:
    return f"{label}{reason}" if label else reason


class Field:
    required: bool = True
    label: str | None = None          # the field's Chinese name in reasons: "标题" → "标题不能为空"
    description: str | None = None

    def clean(self, value: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def from_query(self, raw: str) -> Any:
        """Query parameters arrive as strings; fields that are not strings convert them here."""
        return self.clean(raw)

    def openapi(self) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        out = self.openapi()
        if not self.required:
            out["nullable"] = True  # an optional field may be sent as null: the same as absent
        if self.description:
            out["description"] = self.description
        return out

    def reason(self, text: str) -> FieldError:
        return FieldError(_named(self.label, text))


def check_text(value: str, field: Field | None = None) -> None:
    """Text that cannot be stored or shown: lone UTF-16 surrogates (not encodable as UTF-8)
    and control characters. Every text field of every body goes through here."""
    label = field.label if field else None
    if _SURROGATE.search(value):
        raise FieldError(_named(label, "含有无法识别的字符"))
    if _CONTROL.search(value):
        raise FieldError(_named(label, "不能包含控制字符"))


@dataclass
class Str(Field):
    max_len: int = 200
    min_len: int = 1
    required: bool = True
    pattern: str | None = None
    choices: tuple[str, ...] | None = None
    strip: bool = True
    label: str | None = None
    description: str | None = None

    def clean(self, value: Any) -> str:
        if not isinstance(value, str):
            raise self.reason("须为文本")
        check_text(value, self)
        if self.strip:
            value = value.strip()
        if len(value) < self.min_len:
            raise self.reason("不能为空" if self.min_len == 1 else f"至少 {self.min_len} 个字")
        if len(value) > self.max_len:
            raise self.reason(f"最多 {self.max_len} 个字")
        if self.choices is not None and value not in self.choices:
            raise self.reason(f"须为以下之一：{'、'.join(self.choices)}")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise self.reason("格式不正确")
        return value

    def openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "maxLength": self.max_len}
        if self.min_len:
            out["minLength"] = self.min_len
        if self.choices is not None:
            out["enum"] = list(self.choices)
        if self.pattern:
            out["pattern"] = f"^(?:{self.pattern})$"
        return out


@dataclass
class Id(Str):
    """An id in a path or body: anything longer than an id we issue cannot exist."""
    max_len: int = MAX_ID_LENGTH
    pattern: str | None = r"[A-Za-z0-9_.:\-]+"


@dataclass
class Int(Field):
    min: int | None = None
    max: int | None = None
    required: bool = True
    label: str | None = None
    description: str | None = None

    def clean(self, value: Any) -> int:
        # bool is an int in Python; JSON true is not a number.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.reason("须为整数")
        if self.min is not None and value < self.min:
            raise self.reason(f"不能小于 {self.min}")
        if self.max is not None and value > self.max:
            raise self.reason(f"不能大于 {self.max}")
        return value

    def from_query(self, raw: str) -> int:
        if not re.fullmatch(r"-?\d{1,12}", raw or ""):
            raise self.reason("须为整数")
        return self.clean(int(raw))

    def openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.min is not None:
            out["minimum"] = self.min
        if self.max is not None:
            out["maximum"] = self.max
        return out


@dataclass
class Dec(Field):
    """An exact decimal (a tariff multiplier): never a float inside the product."""
    min: Decimal = Decimal("0")
    max: Decimal = Decimal("10")
    places: int = 2
    required: bool = True
    label: str | None = None
    description: str | None = None

    def clean(self, value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
            raise self.reason("须为数字")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise self.reason("须为数字") from None
        if not number.is_finite() or not self.min <= number <= self.max:
            raise self.reason(f"须在 {self.min} 到 {self.max} 之间")
        if number != number.quantize(Decimal(1).scaleb(-self.places)):
            raise self.reason(f"最多 {self.places} 位小数")
        return number.normalize() if number else Decimal("0")

    def openapi(self) -> dict[str, Any]:
        return {"type": "number", "minimum": float(self.min), "maximum": float(self.max)}


def amount_field(required: bool = True, label: str | None = "数量") -> Int:
    return Int(min=1, max=MAX_AMOUNT_MINUTES, required=required, label=label)


@dataclass
class Bool(Field):
    required: bool = True
    label: str | None = None
    description: str | None = None

    def clean(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.reason("须为 true 或 false")
        return value

    def from_query(self, raw: str) -> bool:
        if raw not in ("true", "false"):
            raise self.reason("须为 true 或 false")
        return raw == "true"

    def openapi(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass
class Timestamp(Field):
    required: bool = True
    label: str | None = None
    description: str | None = None

    def clean(self, value: Any) -> datetime:
        if not isinstance(value, str) or len(value) > 40:
            raise self.reason("须为带时区的时间（如 2026-12-01T08:30:00+08:00）")
        check_text(value, self)
        try:
            parsed = clock.parse_iso(value)
        except ValueError:
            raise self.reason("须为带时区的时间（如 2026-12-01T08:30:00+08:00）") from None
        if not 2000 <= parsed.year <= 2200:
            raise self.reason("时间超出可接受的范围")
        return parsed

    def openapi(self) -> dict[str, Any]:
        return {"type": "string", "format": "date-time", "maxLength": 40}


@dataclass
class Day(Field):
    """A calendar day ``YYYY-MM-DD`` (in the community's time zone)."""
    required: bool = True
    label: str | None = None
    description: str | None = None

    def clean(self, value: Any) -> date:
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise self.reason("须为日期（如 2026-12-01）")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise self.reason("不是有效的日期") from None

    def openapi(self) -> dict[str, Any]:
        return {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}


@dataclass
class Month(Field):
    """A calendar month ``YYYY-MM``."""
    required: bool = True
    label: str | None = None
    description: str | None = None

    def clean(self, value: Any) -> tuple[int, int]:
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
            raise self.reason("须为月份（如 2026-12）")
        return int(value[:4]), int(value[5:])

    def openapi(self) -> dict[str, Any]:
        return {"type": "string", "pattern": r"^\d{4}-(0[1-9]|1[0-2])$"}


@dataclass
class ListOf(Field):
    item: Field = field(default_factory=Str)
    max_items: int = 20
    min_items: int = 0
    required: bool = True
    unique: bool = False
    label: str | None = None
    description: str | None = None

    def clean(self, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise self.reason("须为列表")
        if len(value) > self.max_items:
            raise self.reason(f"最多 {self.max_items} 项")
        if len(value) < self.min_items:
            raise self.reason(f"至少 {self.min_items} 项")
        out: list[Any] = []
        problems: dict[str, str] = {}
        for index, entry in enumerate(value):
            try:
                out.append(self.item.clean(entry))
            except ValidationError as nested:
                for sub, reason in nested.details.get("fields", {}).items():
                    problems[f"[{index}]" if sub == "body" else f"[{index}].{sub}"] = reason
            except FieldError as error:
                problems[f"[{index}]"] = _named(self.label, f"第 {index + 1} 项{error}")
        if problems:
            raise invalid(problems)  # the parent names them "<field>[<index>]…"
        if self.unique and len({repr(v) for v in out}) != len(out):
            raise self.reason("不能有重复项")
        return out

    def openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.item.schema(), "maxItems": self.max_items}
        if self.min_items:
            out["minItems"] = self.min_items
        if self.unique:
            out["uniqueItems"] = True
        return out


class Schema(Field):
    """An object: named fields, unknown ones refused. Used for bodies, queries and nested objects."""

    def __init__(self, fields: Mapping[str, Field] | None = None, *, required: bool = True,
                 label: str | None = None, description: str | None = None, name: str | None = None,
                 check: Callable[[dict[str, Any]], None] | None = None, example: Any = None):
        self.fields: dict[str, Field] = dict(fields or {})
        self.required = required
        self.label = label
        self.description = description
        self.name = name        # a components.schemas name for the document (request bodies)
        self.check = check      # cross-field rules; raise FieldError / ValidationError
        self.example = example

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def extend(self, more: Mapping[str, Field], **options: Any) -> "Schema":
        return Schema({**self.fields, **more}, required=options.get("required", self.required),
                      label=self.label, description=options.get("description", self.description),
                      name=options.get("name"), check=options.get("check", self.check))

    def validate(self, data: Any, *, allow_unknown: bool = False) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ValidationError("请求体须为 JSON 对象", {"fields": {"body": "须为 JSON 对象"}})
        cleaned: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for name, rule in self.fields.items():
            if name not in data or data[name] is None:
                if rule.required:
                    problems[name] = _named(rule.label, "必填")
                continue
            try:
                cleaned[name] = rule.clean(data[name])
            except ValidationError as nested:
                for sub, reason in nested.details.get("fields", {}).items():
                    # A nested object's own cross-field rule is about the object itself.
                    if sub == "body":
                        problems[name] = reason
                    else:
                        problems[f"{name}{sub}" if sub.startswith("[") else f"{name}.{sub}"] = reason
            except FieldError as error:
                problems[name] = str(error)
        if not allow_unknown:
            for name in data:
                if name not in self.fields:
                    problems[_printable(name)] = "不支持该字段"
        if not problems and self.check is not None:
            try:
                self.check(cleaned)
            except FieldError as error:
                problems["body"] = str(error)
            except ValidationError as error:  # a cross-field rule that names its field
                problems.update(error.details.get("fields", {}))
        if problems:
            raise invalid(problems)
        return cleaned

    def clean(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.reason("须为对象")
        return self.validate(value)

    def schema(self) -> dict[str, Any]:
        """A named schema is documented once, as a component, and referenced where it is used."""
        if not self.name:
            return super().schema()
        ref = {"$ref": f"#/components/schemas/{self.name}"}
        return ref if self.required else {"allOf": [ref], "nullable": True}

    def definition(self) -> dict[str, Any]:
        out = self.openapi()
        if self.description:
            out["description"] = self.description
        return out

    def named(self) -> Iterable["Schema"]:
        """This schema and every named schema inside it (the components they need)."""
        if self.name:
            yield self
        for rule in self.fields.values():
            inner = rule.item if isinstance(rule, ListOf) else rule
            if isinstance(inner, Schema):
                yield from inner.named()

    def openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "properties": {name: rule.schema() for name, rule in self.fields.items()},
            "additionalProperties": False,
        }
        required = [name for name, rule in self.fields.items() if rule.required]
        if required:
            out["required"] = required
        return out

    def query(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Query parameters (strings) through the same fields; unknown parameters are ignored
        here: lists share ``limit``/``cursor`` and a client may add its own cache-busters."""
        cleaned: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for name, rule in self.fields.items():
            raw = params.get(name)
            if raw is None:
                if rule.required:
                    problems[name] = _named(rule.label, "必填")
                continue
            try:
                cleaned[name] = rule.from_query(raw)
            except FieldError as error:
                problems[name] = str(error)
        if problems:
            raise invalid(problems)
        return cleaned


def _printable(name: Any) -> str:
    """A field name echoed back in an error body must be encodable (it may hold a lone surrogate)."""
    text = str(name)[:64]
    return _SURROGATE.sub("\ufffd", text)


def invalid(problems: Mapping[str, str]) -> ValidationError:
    """One ``VALIDATION_ERROR`` naming every field; the message is the first reason, in Chinese."""
    problems = dict(problems)
    first = next(iter(problems.values()))
    message = first if len(problems) == 1 else f"{first}（另有 {len(problems) - 1} 处需修改）"
    return ValidationError(message, {"fields": problems})


def field_error(name: str, reason: str) -> ValidationError:
    return invalid({name: reason})


def validate(data: Any, spec: Mapping[str, Field] | Schema, allow_unknown: bool = False) -> dict[str, Any]:
    schema = spec if isinstance(spec, Schema) else Schema(spec)
    return schema.validate(data, allow_unknown=allow_unknown)


def one_of(choices: Iterable[str]) -> tuple[str, ...]:
    return tuple(choices)
