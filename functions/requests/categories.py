"""Service categories ("6+X") and their tariffs.

``credit_minutes`` is THE tariff function: the hold taken when a need is posted and the
payment made at settlement both come from it, so the two can never disagree.

Arithmetic is exact (``Fraction``): credits are integer minutes and a multiplier such as 1.5
must not drift through floats.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Mapping

from functions.core.errors import ValidationError

CREDIT_MODES = ("per_hour", "per_service")


@dataclass(frozen=True)
class RoundingBand:
    """Minutes past the last whole hour up to ``max_minutes`` (inclusive) earn ``credit_minutes``."""
    max_minutes: int
    credit_minutes: int


# The community's customary rounding: ≤15 min → 0, 15–45 → half an hour, 45–60 → an hour.
HALF_HOUR_ROUNDING: tuple[RoundingBand, ...] = (
    RoundingBand(15, 0), RoundingBand(45, 30), RoundingBand(60, 60),
)


@dataclass(frozen=True)
class Category:
    id: str
    name: str
    credit_mode: str = "per_hour"
    multiplier: Decimal = Decimal("1")
    rounding: tuple[RoundingBand, ...] = HALF_HOUR_ROUNDING  # empty = exact minutes
    max_minutes: int = 240
    credit_per_service: int = 60  # per_service: minutes of credit for one service
    credit_eligible: bool = True
    requires_insurance: bool = False
    requires_evidence: bool = False
    builtin: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "credit_mode": self.credit_mode,
            "multiplier": float(self.multiplier),
            "rounding": [{"max_minutes": b.max_minutes, "credit_minutes": b.credit_minutes}
                         for b in self.rounding],
            "max_minutes": self.max_minutes,
            "credit_per_service": self.credit_per_service,
            "credit_eligible": self.credit_eligible,
            "requires_insurance": self.requires_insurance,
            "requires_evidence": self.requires_evidence,
        }


BUILTIN_CATEGORIES: dict[str, Category] = {c.id: c for c in (
    Category("pickup", "接送帮", credit_mode="per_service", credit_per_service=30, max_minutes=120,
             requires_insurance=True, requires_evidence=True),
    Category("childcare", "托管帮", max_minutes=240, requires_insurance=True, requires_evidence=True),
    Category("tutoring", "辅导帮", max_minutes=180),
    Category("parcel", "快递帮", credit_mode="per_service", credit_per_service=15, max_minutes=60),
    Category("companion", "陪护帮", max_minutes=240, requires_insurance=True, requires_evidence=True),
    Category("pet", "宠爱帮", max_minutes=480, requires_insurance=False, requires_evidence=True),
    Category("volunteer", "志愿帮", max_minutes=240),
)}


def credit_minutes(category: Category, minutes: int) -> int:
    """Credit earned for ``minutes`` of service in ``category``.

    Minutes beyond ``max_minutes`` earn nothing; per-hour credit counts whole hours in full and
    rounds the rest of the last hour by the category's bands; the multiplier applies last and
    rounds half up to a whole minute.
    """
    if minutes < 0:
        raise ValueError("minutes must not be negative")
    if not category.credit_eligible or minutes == 0:
        return 0
    if category.credit_mode == "per_service":
        base = category.credit_per_service
    else:
        served = min(minutes, category.max_minutes)
        whole_hours, rest = divmod(served, 60)
        base = whole_hours * 60 + _round_rest(category.rounding, rest)
    credit = Fraction(base) * Fraction(category.multiplier)
    return int(credit + Fraction(1, 2)) if credit > 0 else 0


def _round_rest(bands: tuple[RoundingBand, ...], rest: int) -> int:
    if rest == 0 or not bands:
        return rest
    for band in bands:
        if rest <= band.max_minutes:
            return band.credit_minutes
    return rest  # bands always end at 60 (validated), so this is unreachable for rest < 60


# ---- admin changes -------------------------------------------------------------------------

def apply_changes(current: Category, changes: Mapping[str, Any]) -> Category:
    """Validate a tariff change (``PUT /v1/admin/categories/{id}``) and return the new category."""
    problems: dict[str, str] = {}
    updates: dict[str, Any] = {}

    def check(name: str, fn):
        if name in changes and changes[name] is not None:
            try:
                updates[name] = fn(changes[name])
            except (ValueError, TypeError, InvalidOperation) as exc:
                problems[name] = str(exc) or "is invalid"

    check("name", _name)
    check("credit_mode", _credit_mode)
    check("multiplier", _multiplier)
    check("rounding", _rounding)
    check("max_minutes", lambda v: _int_in(v, 1, 24 * 60))
    check("credit_per_service", lambda v: _int_in(v, 0, 24 * 60))
    for flag in ("credit_eligible", "requires_insurance", "requires_evidence"):
        check(flag, _bool)
    if problems:
        raise ValidationError(details={"fields": problems})
    return replace(current, **updates)


def _name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 20:
        raise ValueError("must be 1 to 20 characters")
    return value.strip()


def _credit_mode(value: Any) -> str:
    if value not in CREDIT_MODES:
        raise ValueError(f"must be one of {', '.join(CREDIT_MODES)}")
    return value


def _multiplier(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("must be a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("must be a number") from None
    if not number.is_finite() or not Decimal("0") <= number <= Decimal("10"):
        raise ValueError("must be between 0 and 10")
    if number != number.quantize(Decimal("0.01")):
        raise ValueError("at most two decimal places")
    return number.normalize() if number else Decimal("0")


def _rounding(value: Any) -> tuple[RoundingBand, ...]:
    if not isinstance(value, list) or len(value) > 12:
        raise ValueError("must be a list of at most 12 bands")
    bands: list[RoundingBand] = []
    previous = 0
    for item in value:
        if not isinstance(item, dict):
            raise ValueError("each band needs max_minutes and credit_minutes")
        top = _int_in(item.get("max_minutes"), 1, 60)
        credit = _int_in(item.get("credit_minutes"), 0, 60)
        if top <= previous:
            raise ValueError("bands must be in increasing max_minutes")
        bands.append(RoundingBand(top, credit))
        previous = top
    if bands and bands[-1].max_minutes != 60:
        raise ValueError("the last band must end at 60 minutes")
    return tuple(bands)


def _int_in(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"must be an integer from {low} to {high}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value
