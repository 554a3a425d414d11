"""Category catalogue service: built-ins, the community's configured overrides, admin changes."""
from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any, Mapping

from functions.core.errors import NotFound, ValidationError
from functions.requests.categories import BUILTIN_CATEGORIES, Category, apply_changes
from functions.requests.category_store import CategoryStore, DynamoCategoryStore


class CategoryCatalog:
    def __init__(self, store: CategoryStore, overrides: Mapping[str, Mapping[str, Any]] | None = None):
        self._store = store
        self._defaults = _with_overrides(overrides or {})

    def all(self) -> list[Category]:
        merged = {**self._defaults, **self._store.load_all()}
        return [merged[key] for key in sorted(merged, key=_builtin_order)]

    def get(self, category_id: str) -> Category:
        stored = self._store.load_all()
        category = stored.get(category_id) or self._defaults.get(category_id)
        if category is None:
            raise NotFound("没有这个服务类别", {"category": category_id})
        return category

    def update(self, category_id: str, changes: Mapping[str, Any], actor: str) -> Category:
        updated = apply_changes(self.get(category_id), changes)
        self._store.save(updated, actor)
        return updated

    def seed(self, actor: str = "seed") -> int:
        """Write the defaults that are not stored yet (demo/local); returns how many were written."""
        stored = self._store.load_all()
        missing = [c for key, c in self._defaults.items() if key not in stored]
        for category in missing:
            self._store.save(category, actor)
        return len(missing)


def _builtin_order(category_id: str) -> tuple[int, str]:
    order = list(BUILTIN_CATEGORIES)
    return (order.index(category_id) if category_id in order else len(order), category_id)


def _with_overrides(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Category]:
    categories = dict(BUILTIN_CATEGORIES)
    for category_id, changes in overrides.items():
        if category_id not in categories:
            raise ValidationError(f"tariff override names unknown category {category_id}")
        categories[category_id] = apply_changes(categories[category_id], changes)
    return categories


def configured_overrides() -> dict[str, dict[str, Any]]:
    """``TIMEBANK_TARIFF_OVERRIDES`` is JSON written by infra/ from the community config."""
    raw = os.environ.get("TIMEBANK_TARIFF_OVERRIDES", "")
    return json.loads(raw) if raw else {}


@lru_cache(maxsize=1)
def get_catalog() -> CategoryCatalog:
    return CategoryCatalog(DynamoCategoryStore(), configured_overrides())


def seed_builtin_categories() -> int:
    return get_catalog().seed()
