"""Declarative validation of JSON bodies and query strings.

One place decides what "a bad field" means, so every endpoint answers bad input with the
same 400 ``VALIDATION_ERROR`` and ``details.fields`` naming each offending field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from functions.core import clock
from functions.core.errors import ValidationError

MAX_AMOUNT_MINUTES = 1_000_000  # ~2 years of one person's time: anything larger is a typo or an attack


class Field:
    required: bool = True

    def clean(self, value: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Str(Field):
    max_len: int = 200
    min_len: int = 1
    required: bool = True
    pattern: str | None = None
    choices: tuple[str, ...] | None = None
    strip: bool = True

    def clean(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if self.strip:
            value = value.strip()
        if "\x00" in value:
            raise ValueError("must not contain NUL")
        if len(value) < self.min_len:
            raise ValueError("must not be empty" if self.min_len == 1 else f"at least {self.min_len} characters")
        if len(value) > self.max_len:
            raise ValueError(f"at most {self.max_len} characters")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise ValueError("has an invalid format")
        return value


@dataclass
class Int(Field):
    min: int | None = None
    max: int | None = None
    required: bool = True

    def clean(self, value: Any) -> int:
        # bool is an int in Python; JSON true is not a number.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if self.min is not None and value < self.min:
            raise ValueError(f"must be at least {self.min}")
        if self.max is not None and value > self.max:
            raise ValueError(f"must be at most {self.max}")
        return value


@dataclass
class Bool(Field):
    required: bool = True

    def clean(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value


@dataclass
class Timestamp(Field):
    required: bool = True

    def clean(self, value: Any) -> datetime:
        if not isinstance(value, str) or len(value) > 40:
            raise ValueError("must be an ISO-8601 timestamp with offset")
        try:
            return clock.parse_iso(value)
        except ValueError:
            raise ValueError("must be an ISO-8601 timestamp with offset") from None


@dataclass
class Obj(Field):
    spec: Mapping[str, Field] = field(default_factory=dict)
    required: bool = True

    def clean(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError("must be an object")
        return validate(value, self.spec, _prefix="")


def validate(data: Any, spec: Mapping[str, Field], _prefix: str = "") -> dict[str, Any]:
    """Return the cleaned fields of ``spec``; unknown fields are ignored (the contract may grow)."""
    if not isinstance(data, dict):
        raise ValidationError("请求体必须是 JSON 对象", {"fields": {"body": "must be a JSON object"}})
    cleaned: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, rule in spec.items():
        if name not in data or data[name] is None:
            if rule.required:
                problems[name] = "is required"
            continue
        try:
            cleaned[name] = rule.clean(data[name])
        except ValidationError as nested:
            for sub, reason in nested.details.get("fields", {}).items():
                problems[f"{name}.{sub}"] = reason
        except ValueError as exc:
            problems[name] = str(exc)
    if problems:
        raise ValidationError(details={"fields": problems})
    return cleaned


def amount_field(required: bool = True) -> Int:
    return Int(min=1, max=MAX_AMOUNT_MINUTES, required=required)
