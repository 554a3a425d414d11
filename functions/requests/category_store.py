"""DynamoDB adapter for categories: only admin changes are stored; built-ins need no seeding.

One partition (``community``) holds this community's handful of categories, so listing them is
a single Query (1 call, ≤ ~10 items), never a Scan.
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Protocol

from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from functions.core.storage import make_meta, table
from functions.requests.categories import Category, RoundingBand

PARTITION = "categories"


class CategoryStore(Protocol):
    def load_all(self) -> dict[str, Category]: ...
    def save(self, category: Category, actor: str) -> None: ...


@table
class CategoryRecord(Model):
    Meta = make_meta("categories")
    partition = UnicodeAttribute(hash_key=True)
    category_id = UnicodeAttribute(range_key=True)
    tariff = UnicodeAttribute()  # JSON of Category.to_dict(): one attribute keeps the schema flat
    updated_by = UnicodeAttribute(null=True)


def category_from_dict(data: dict, builtin: bool = True) -> Category:
    return Category(
        id=data["id"], name=data["name"], credit_mode=data["credit_mode"],
        multiplier=Decimal(str(data["multiplier"])),
        rounding=tuple(RoundingBand(b["max_minutes"], b["credit_minutes"]) for b in data["rounding"]),
        max_minutes=data["max_minutes"], credit_per_service=data["credit_per_service"],
        credit_eligible=data["credit_eligible"], requires_insurance=data["requires_insurance"],
        requires_evidence=data["requires_evidence"], builtin=builtin,
    )


class DynamoCategoryStore:
    def load_all(self) -> dict[str, Category]:
        return {
            record.category_id: category_from_dict(json.loads(record.tariff))
            for record in CategoryRecord.query(PARTITION)
        }

    def save(self, category: Category, actor: str) -> None:
        payload = category.to_dict()
        # Keep the exact decimal, not the float the API shows.
        payload["multiplier"] = str(category.multiplier)
        CategoryRecord(PARTITION, category.id, tariff=json.dumps(payload, ensure_ascii=False),
                       updated_by=actor).save()


class InMemoryCategoryStore:
    def __init__(self) -> None:
        self.saved: dict[str, Category] = {}

    def load_all(self) -> dict[str, Category]:
        return dict(self.saved)

    def save(self, category: Category, actor: str) -> None:
        self.saved[category.id] = category
