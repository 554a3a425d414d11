"""The tariff function: the hold and the payment both come from it, so its edges matter."""
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from functions.core.errors import NotFound, ValidationError
from functions.requests.service import CategoryCatalog
from functions.requests.model import BUILTIN_CATEGORIES, Category, apply_changes, credit_minutes
from tests.fakes.requests import InMemoryCategoryStore

HOURLY = Category("x", "测试", credit_mode="per_hour", max_minutes=240)


@pytest.mark.parametrize("minutes, expected", [
    (0, 0), (1, 0), (15, 0),            # ≤15 min earns nothing
    (16, 30), (30, 30), (45, 30),       # 15–45 → half an hour
    (46, 60), (59, 60), (60, 60),       # 45–60 → an hour
    (61, 60), (75, 60), (76, 90), (105, 90), (106, 120),
    (240, 240), (241, 240), (1000, 240),  # capped at max_minutes
])
def test_per_hour_rounding_bands(minutes, expected):
    assert credit_minutes(HOURLY, minutes) == expected


def test_multiplier_applies_after_rounding_and_rounds_half_up():
    category = apply_changes(HOURLY, {"multiplier": 1.5})
    assert credit_minutes(category, 30) == 45
    assert credit_minutes(category, 60) == 90
    odd = apply_changes(HOURLY, {"multiplier": 1.25, "rounding": []})
    assert credit_minutes(odd, 2) == 3      # 2.5 → 3 (half up, exact, no float drift)
    assert credit_minutes(odd, 1) == 1      # 1.25 → 1


def test_per_service_pays_the_fixed_credit_whatever_the_duration():
    pickup = BUILTIN_CATEGORIES["pickup"]
    assert credit_minutes(pickup, 5) == 30
    assert credit_minutes(pickup, 119) == 30
    assert credit_minutes(pickup, 0) == 0


def test_not_credit_eligible_earns_nothing():
    favour = apply_changes(HOURLY, {"credit_eligible": False})
    assert credit_minutes(favour, 120) == 0


def test_negative_minutes_are_refused():
    with pytest.raises(ValueError):
        credit_minutes(HOURLY, -1)


@given(st.integers(min_value=0, max_value=2000), st.integers(min_value=0, max_value=2000))
def test_credit_is_monotonic_and_bounded(a, b):
    low, high = sorted((a, b))
    assert 0 <= credit_minutes(HOURLY, low) <= credit_minutes(HOURLY, high) <= HOURLY.max_minutes


@pytest.mark.parametrize("changes, field", [
    ({"credit_mode": "per_day"}, "credit_mode"),
    ({"multiplier": -1}, "multiplier"),
    ({"multiplier": 11}, "multiplier"),
    ({"multiplier": "abc"}, "multiplier"),
    ({"multiplier": 1.234}, "multiplier"),
    ({"multiplier": True}, "multiplier"),
    ({"rounding": [{"max_minutes": 30, "credit_minutes": 30}]}, "rounding"),
    ({"rounding": [{"max_minutes": 45, "credit_minutes": 30}, {"max_minutes": 15, "credit_minutes": 0}]}, "rounding"),
    ({"rounding": "half"}, "rounding"),
    ({"max_minutes": 0}, "max_minutes"),
    ({"max_minutes": "60"}, "max_minutes"),
    ({"credit_eligible": "yes"}, "credit_eligible"),
    ({"name": ""}, "name"),
])
def test_bad_tariff_changes_name_the_field(changes, field):
    with pytest.raises(ValidationError) as error:
        apply_changes(HOURLY, changes)
    assert field in error.value.details["fields"]


def test_catalog_merges_config_overrides_and_admin_changes():
    store = InMemoryCategoryStore()
    catalog = CategoryCatalog(store, overrides={"tutoring": {"multiplier": 2}})
    assert [c.id for c in catalog.all()] == list(BUILTIN_CATEGORIES)
    assert catalog.get("tutoring").multiplier == Decimal("2")
    catalog.update("pet", {"max_minutes": 60}, actor="admin")
    assert catalog.get("pet").max_minutes == 60
    assert catalog.seed() == 6  # pet is stored already
    assert catalog.seed() == 0
    with pytest.raises(NotFound):
        catalog.get("nope")
    with pytest.raises(ValidationError):
        CategoryCatalog(store, overrides={"nope": {}})


class CountingStore(InMemoryCategoryStore):
    def __init__(self):
        super().__init__()
        self.loads = 0

    def load_all(self):
        self.loads += 1
        return super().load_all()


def test_catalog_reads_the_store_once_per_cache_period_and_sees_its_own_changes_at_once():
    now = [0.0]
    store = CountingStore()
    catalog = CategoryCatalog(store, cache_seconds=30, monotonic=lambda: now[0])
    for _ in range(5):
        catalog.get("tutoring")
    assert store.loads == 1
    catalog.update("tutoring", {"max_minutes": 90}, actor="admin")
    assert catalog.get("tutoring").max_minutes == 90
    other = CategoryCatalog(store, cache_seconds=30, monotonic=lambda: now[0])
    other.get("pet")
    store.save(apply_changes(BUILTIN_CATEGORIES["pet"], {"max_minutes": 30}), actor="elsewhere")
    assert other.get("pet").max_minutes == 480   # another function's change: not yet
    now[0] = 30.0
    assert other.get("pet").max_minutes == 30    # after the cache period
