"""Category catalogue service: built-ins, the community's configured overrides, admin changes."""
from __future__ import annotations

import json
import os
import time
from functools import lru_cache
from typing import Any, Callable, Mapping

from functions.core.errors import NotFound, ValidationError
from functions.requests.categories import BUILTIN_CATEGORIES, Category, apply_changes
from functions.requests.category_store import CategoryStore, DynamoCategoryStore


# Every order step reads its category's tariff; a warm function keeps the handful of
# categories for this long instead of one Query per step. An admin's change is seen at once by
# the function that made it and within this time by the others.
CACHE_SECONDS = 30.0


class CategoryCatalog:
    def __init__(self, store: CategoryStore, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                 cache_seconds: float = CACHE_SECONDS, monotonic: Callable[[], float] = time.monotonic):
        self._store = store
        self._defaults = _with_overrides(overrides or {})
        self._cache_seconds, self._monotonic = cache_seconds, monotonic
        self._stored: dict[str, Category] | None = None
        self._loaded_at = 0.0

    def forget(self) -> None:
        """Drop the cached copy (tests start each case on a fresh account)."""
        self._stored = None

    def _load(self) -> dict[str, Category]:
        now = self._monotonic()
        if self._stored is None or now - self._loaded_at >= self._cache_seconds:
            self._stored, self._loaded_at = self._store.load_all(), now
        return self._stored

    def all(self) -> list[Category]:
        merged = {**self._defaults, **self._load()}
        return [merged[key] for key in sorted(merged, key=_builtin_order)]

    def get(self, category_id: str) -> Category:
        stored = self._load()
        category = stored.get(category_id) or self._defaults.get(category_id)
        if category is None:
            raise NotFound("没有这个服务类别", {"category": category_id})
        return category

    def update(self, category_id: str, changes: Mapping[str, Any], actor: str) -> Category:
        self._stored = None  # decide on what is stored now, not on a cached copy
        updated = apply_changes(self.get(category_id), changes)
        self._store.save(updated, actor)
        self._stored = None
        return updated

    def seed(self, actor: str = "seed") -> int:
        """Write the defaults that are not stored yet (demo/local); returns how many were written."""
        stored = self._store.load_all()
        missing = [c for key, c in self._defaults.items() if key not in stored]
        for category in missing:
            self._store.save(category, actor)
        self._stored = None
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
