from decimal import Decimal

from functions.requests.service import CategoryCatalog
from functions.requests.dynamo import DynamoCategoryStore


def test_admin_change_survives_a_round_trip_through_dynamodb(aws):
    catalog = CategoryCatalog(DynamoCategoryStore())
    catalog.update("companion", {"multiplier": 1.5, "rounding": [], "requires_evidence": False}, actor="admin-test")
    reloaded = CategoryCatalog(DynamoCategoryStore()).get("companion")
    assert reloaded.multiplier == Decimal("1.5")
    assert reloaded.rounding == ()
    assert reloaded.requires_evidence is False


def test_seed_is_idempotent(aws):
    catalog = CategoryCatalog(DynamoCategoryStore())
    assert catalog.seed() == 7
    assert catalog.seed() == 0
    assert len(DynamoCategoryStore().load_all()) == 7
