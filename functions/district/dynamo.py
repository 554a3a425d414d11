"""DynamoDB adapter of the district domain (PynamoDB).

One table, ``district-transfers``: key (``id``, ``direction``) — ``out`` for a transfer this
community's resident sent, ``in`` for one this community received (the same id can be both
only in a test world that sends to itself). Every write is a ``DistrictWrite`` that joins the
ledger's transaction, so a record and its ledger legs commit together:

- a new record: ``attribute_not_exists(id)`` (an id is decided once, forever);
- an outcome: ``status = pending`` (an outgoing transfer resolves once).

Sparse index ``by-pending`` (``pending_shard``, ``created_at``): outgoing transfers still
pending, for the sweep that asks the hub about them; the attribute is removed when the
transfer resolves, so the index holds only what is in flight. Four shards keep one hot key off
one partition.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Sequence

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from functions.adapters.dynamo import dt, index_meta, iso, make_meta, table
from functions.core.ids import content_hash
from functions.district.model import IN, OUT, PENDING, Incoming, Outgoing, Target

PENDING_SHARDS = 4


class DistrictTransferByPending(GlobalSecondaryIndex):
    Meta = index_meta("by-pending")
    pending_shard = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


@table
class DistrictTransferItem(Model):
    Meta = make_meta("district-transfers")
    id = UnicodeAttribute(hash_key=True)
    direction = UnicodeAttribute(range_key=True)
    status = UnicodeAttribute()
    asset = UnicodeAttribute()
    amount = NumberAttribute()
    created_at = UnicodeAttribute()
    content_hash = UnicodeAttribute()
    updated_at = UnicodeAttribute(null=True)
    failure_code = UnicodeAttribute(null=True)
    failure_details = UnicodeAttribute(null=True)    # JSON
    pending_shard = UnicodeAttribute(null=True)
    # out
    payer_account = UnicodeAttribute(null=True)
    payer_household = UnicodeAttribute(null=True)
    payer_resident = UnicodeAttribute(null=True)
    target = UnicodeAttribute(null=True)             # JSON: {"community", "household_id"|"resident_id"|"self"}
    memo = UnicodeAttribute(null=True)
    phone_hash = UnicodeAttribute(null=True)         # the payer's keyed hash, never the phone
    declared = UnicodeAttribute(null=True)           # JSON list of household ids
    # in
    source = UnicodeAttribute(null=True)
    receiver_account = UnicodeAttribute(null=True)

    by_pending = DistrictTransferByPending()


def _shard(transfer_id: str) -> str:
    return str(int(content_hash(transfer_id)[:8], 16) % PENDING_SHARDS)


def _details(raw: str | None) -> dict[str, Any]:
    return json.loads(raw) if raw else {}


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _outgoing_item(t: Outgoing) -> DistrictTransferItem:
    return DistrictTransferItem(
        t.id, OUT, status=t.status, asset=t.asset, amount=t.amount, created_at=iso(t.created_at),
        content_hash=t.content_hash, payer_account=t.payer_account, payer_household=t.payer_household,
        payer_resident=t.payer_resident, target=_dump(t.target.view()), memo=t.memo or None,
        phone_hash=t.phone_hash, declared=_dump(list(t.declared)),
        pending_shard=_shard(t.id) if t.status == PENDING else None)


def _outgoing(item: DistrictTransferItem) -> Outgoing:
    return Outgoing(
        id=item.id, status=item.status, payer_account=item.payer_account or "",
        payer_household=item.payer_household or "", payer_resident=item.payer_resident or "",
        target=Target.of(json.loads(item.target or "{}")), asset=item.asset, amount=int(item.amount),
        memo=item.memo or "", created_at=dt(item.created_at), content_hash=item.content_hash,
        phone_hash=item.phone_hash, declared=tuple(json.loads(item.declared or "[]")),
        failure_code=item.failure_code, failure_details=_details(item.failure_details),
        updated_at=dt(item.updated_at))


def _incoming_item(t: Incoming) -> DistrictTransferItem:
    return DistrictTransferItem(
        t.id, IN, status=t.status, asset=t.asset, amount=t.amount, created_at=iso(t.created_at),
        content_hash=t.content_hash, source=t.source, receiver_account=t.receiver_account,
        failure_code=t.failure_code, failure_details=_dump(t.failure_details) if t.failure_details else None)


def _incoming(item: DistrictTransferItem) -> Incoming:
    return Incoming(id=item.id, status=item.status, source=item.source or "", asset=item.asset,
                    amount=int(item.amount), created_at=dt(item.created_at), content_hash=item.content_hash,
                    receiver_account=item.receiver_account, failure_code=item.failure_code,
                    failure_details=_details(item.failure_details))


class DistrictWrite:
    """One district record write, joining the caller's (the ledger's) transaction."""

    def __init__(self, item: DistrictTransferItem, resolve: Outgoing | None = None):
        self.item = item
        self.resolve = resolve

    def add_to(self, transaction: TransactWrite) -> None:
        if self.resolve is None:
            transaction.save(self.item, condition=DistrictTransferItem.id.does_not_exist())
            return
        t = self.resolve
        actions = [DistrictTransferItem.status.set(t.status),
                   DistrictTransferItem.updated_at.set(iso(t.updated_at)),
                   DistrictTransferItem.pending_shard.remove()]
        if t.failure_code:
            actions += [DistrictTransferItem.failure_code.set(t.failure_code),
                        DistrictTransferItem.failure_details.set(_dump(t.failure_details))]
        transaction.update(DistrictTransferItem(t.id, OUT), actions=actions,
                           condition=DistrictTransferItem.status == PENDING)


class DynamoDistrictStore:
    def get_outgoing(self, transfer_id: str) -> Outgoing | None:
        try:
            return _outgoing(DistrictTransferItem.get(transfer_id, OUT, consistent_read=True))
        except DistrictTransferItem.DoesNotExist:
            return None

    def get_incoming(self, transfer_id: str) -> Incoming | None:
        try:
            return _incoming(DistrictTransferItem.get(transfer_id, IN, consistent_read=True))
        except DistrictTransferItem.DoesNotExist:
            return None

    def statuses(self, direction: str, transfer_ids: Sequence[str]) -> dict[str, str]:
        keys = [(tid, direction) for tid in dict.fromkeys(transfer_ids)]
        if not keys:
            return {}
        return {item.id: item.status for item in DistrictTransferItem.batch_get(
            keys, consistent_read=True, attributes_to_get=["id", "direction", "status"])}

    def put_outgoing(self, transfer: Outgoing) -> DistrictWrite:
        return DistrictWrite(_outgoing_item(transfer))

    def resolve_outgoing(self, transfer: Outgoing) -> DistrictWrite:
        return DistrictWrite(_outgoing_item(transfer), resolve=transfer)

    def put_incoming(self, transfer: Incoming) -> DistrictWrite:
        return DistrictWrite(_incoming_item(transfer))

    def pending_outgoing(self, older_than: datetime | None = None) -> list[Outgoing]:
        out: list[Outgoing] = []
        condition = DistrictTransferItem.created_at <= iso(older_than) if older_than is not None else None
        for shard in range(PENDING_SHARDS):
            for item in DistrictTransferItem.by_pending.query(str(shard), range_key_condition=condition):
                current = self.get_outgoing(item.id)  # the index lags: decide on the table's item
                if current is not None and current.status == PENDING:
                    out.append(current)
        return out
