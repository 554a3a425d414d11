"""The one way other domains reach the ledger: ``get_ledger()``.

    from functions.ledger.accounts import ISSUANCE, household_account
    from functions.ledger.service import get_ledger

    get_ledger().transfer(transfer_id=..., debit=ISSUANCE, credit=household_account(hid),
                          asset="service", amount=300, kind="starting_credits", memo="", actor=admin)
"""
from __future__ import annotations

from functools import lru_cache

from functions.core.settings import get_settings
from functions.ledger.dynamo import DynamoLedgerStore
from functions.ledger.ledger import Ledger


@lru_cache(maxsize=1)
def get_ledger() -> Ledger:
    settings = get_settings()
    return Ledger(DynamoLedgerStore(), shards=settings.ledger_shards,
                  household_cap=settings.household_balance_cap)


def reset_ledger() -> None:
    """Tests that change settings call this so the next ``get_ledger()`` reads them again."""
    get_ledger.cache_clear()
