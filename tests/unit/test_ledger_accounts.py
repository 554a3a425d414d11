"""Typed account ids, limits and shards."""
from __future__ import annotations

import pytest

from functions.core.errors import ValidationError
from functions.ledger.accounts import (ESCROW, ISSUANCE, POOL, clearing_account, household_account, is_account_id,
                                       logical_id, merchant_account, parse_account, physical_id, physical_ids,
                                       resident_account, shard_for)


def test_typed_ids():
    assert resident_account("res_1") == "resident:res_1"
    assert household_account("hh_2") == "household:hh_2"
    assert merchant_account("m-3") == "merchant:m-3"
    assert clearing_account("xihu") == "clearing:xihu"
    assert (POOL, ISSUANCE, ESCROW) == ("pool", "issuance", "escrow")


@pytest.mark.parametrize("owner", ["", "a b", "a:b", "a#1", "x" * 101, None, 5])
def test_owner_ids_are_checked(owner):
    with pytest.raises(ValidationError):
        resident_account(owner)


@pytest.mark.parametrize("account_id,kind,limited,sharded", [
    ("resident:res_1", "resident", True, False),
    ("household:hh_1", "household", True, False),
    ("merchant:m_1", "merchant", True, False),
    ("clearing:xihu", "clearing", False, False),
    ("pool", "pool", True, True),
    ("escrow", "escrow", True, True),
    ("issuance", "issuance", False, True),
])
def test_limits_and_sharding(account_id, kind, limited, sharded):
    account = parse_account(account_id)
    assert (account.kind, account.limited, account.sharded) == (kind, limited, sharded)


@pytest.mark.parametrize("bad", ["", "pool#3", "wallet:x", "resident:", "resident", "issuance:x", None, 3, ["pool"]])
def test_what_is_not_an_account(bad):
    assert not is_account_id(bad)
    with pytest.raises(ValidationError):
        parse_account(bad)


def test_shards_are_stable_and_spread():
    assert shard_for("tr_1", 8) == shard_for("tr_1", 8)
    assert len({shard_for(f"tr_{i}", 8) for i in range(200)}) == 8
    assert physical_id(POOL, 3) == "pool#3" and physical_id("household:hh_1", None) == "household:hh_1"
    assert logical_id("pool#3") == POOL
    assert physical_ids(parse_account(POOL), 4) == ["pool#0", "pool#1", "pool#2", "pool#3"]
    assert physical_ids(parse_account("household:hh_1"), 4) == ["household:hh_1"]
