"""Ledger accounts: typed ids, their debit limits and their physical shards.

An account id is a typed string, so every other domain names accounts the same way::

    resident_account("res_1")  -> "resident:res_1"
    household_account("hh_2")  -> "household:hh_2"
    merchant_account("m_3")    -> "merchant:m_3"
    clearing_account("xihu-7") -> "clearing:xihu-7"
    POOL, ISSUANCE, ESCROW     -> "pool", "issuance", "escrow"

Limits (TigerBeetle's ``debits_must_not_exceed_credits``), enforced as a DynamoDB condition on
the stored ``available`` inside the same transaction as the transfer:

- resident, household, merchant, pool, escrow: ``available >= 0`` always.
- issuance: unbounded negative — starting credits and grants are created here, so its balance
  is minus everything ever issued (the "money supply" of the community).
- clearing accounts: **unbounded negative**, like issuance. A clearing account mirrors this
  community's net position against one remote community / external platform: minutes a
  resident brings in from elsewhere are credited from it (it goes negative), minutes spent
  elsewhere are debited to it. How far two communities may run a net position is the district
  clearing hub's decision (it sees both ledgers); a local floor here would only refuse honest
  residents. Reconciliation between ledgers compares ``clearing:<us>`` there with
  ``-clearing:<them>`` here.

Sharding: issuance, pool and escrow take writes from every household, so each is kept as
``ledger_shards`` physical items (``issuance#3``) to spread one hot partition over several.
A credit lands on the shard picked from the transfer id's hash; a debit from issuance likewise;
a debit from a limited sharded account (pool, escrow) must use a shard that holds enough —
for escrow the very shard its hold credited (recorded on the pending transfer). The balance of
a sharded account is the sum of its shards. ``ledger_shards`` may grow, never shrink: a shrink
would hide the upper shards from ``balances``.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from functions.core.errors import ValidationError

POOL = "pool"          # community pool: donations, household-cap overflow, community grants
ISSUANCE = "issuance"  # the only source of new minutes (starting credits, grants)
ESCROW = "escrow"      # receives the holds of service requests until settlement

RESIDENT = "resident"
HOUSEHOLD = "household"
MERCHANT = "merchant"
CLEARING = "clearing"

SYSTEM_ACCOUNTS: frozenset[str] = frozenset({POOL, ISSUANCE, ESCROW})
OWNED_KINDS: frozenset[str] = frozenset({RESIDENT, HOUSEHOLD, MERCHANT, CLEARING})
SHARDED_ACCOUNTS: frozenset[str] = frozenset({POOL, ISSUANCE, ESCROW})
UNBOUNDED_KINDS: frozenset[str] = frozenset({ISSUANCE, CLEARING})
# Accounts with no per-account statement index entries: every order's three transfers pass
# through the escrow, so its entries were a third of the ledger's index writes and one hot
# partition. Its statement (an admin's view) is read from the time index instead.
UNINDEXED_ACCOUNTS: frozenset[str] = frozenset({ESCROW})

_OWNER = re.compile(r"[A-Za-z0-9_\-]{1,100}")


@dataclass(frozen=True)
class Account:
    id: str      # the logical id, e.g. "household:hh_2" or "pool"
    kind: str    # resident / household / merchant / clearing / pool / issuance / escrow
    owner: str | None

    @property
    def sharded(self) -> bool:
        return self.kind in SHARDED_ACCOUNTS

    @property
    def limited(self) -> bool:
        """Whether ``available`` must stay >= 0."""
        return self.kind not in UNBOUNDED_KINDS


def _typed(kind: str, owner: str) -> str:
    if not isinstance(owner, str) or not _OWNER.fullmatch(owner):
        raise ValidationError("账户编号无效", {"fields": {"account": f"invalid {kind} id"}})
    return f"{kind}:{owner}"


def resident_account(resident_id: str) -> str:
    return _typed(RESIDENT, resident_id)


def household_account(household_id: str) -> str:
    return _typed(HOUSEHOLD, household_id)


def merchant_account(merchant_id: str) -> str:
    return _typed(MERCHANT, merchant_id)


def clearing_account(code: str) -> str:
    return _typed(CLEARING, code)


def parse_account(account_id: object, field: str = "account") -> Account:
    """The account an id names; ``ValidationError`` for anything that is not a ledger account."""
    if isinstance(account_id, str):
        if account_id in SYSTEM_ACCOUNTS:
            return Account(account_id, account_id, None)
        kind, sep, owner = account_id.partition(":")
        if sep and kind in OWNED_KINDS and _OWNER.fullmatch(owner):
            return Account(account_id, kind, owner)
    raise ValidationError("账户编号无效", {"fields": {field: "不是有效的账户编号"}})


def is_account_id(value: object) -> bool:
    try:
        parse_account(value)
    except ValidationError:
        return False
    return True


def shard_for(transfer_id: str, shards: int) -> int:
    """The shard a transfer credits (or debits, for issuance): stable across retries."""
    digest = hashlib.sha256(transfer_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % shards


def physical_id(account_id: str, shard: int | None) -> str:
    """The stored item of an account: the account itself, or ``<account>#<shard>``."""
    return account_id if shard is None else f"{account_id}#{shard}"


def logical_id(physical: str) -> str:
    return physical.split("#", 1)[0]


def physical_ids(account: Account, shards: int) -> list[str]:
    if account.sharded:
        return [physical_id(account.id, shard) for shard in range(shards)]
    return [account.id]
