"""DynamoDB adapter of the hub (PynamoDB). Its tables are the hub stack's own
(``bootstrap.HUB_MODEL_MODULES``): no community creates them.

- ``hub-transfers``: one item per transfer between communities, key ``id``; the destination's
  outcome is written with ``status = forwarding`` (recorded once). Sparse index ``by-open``
  (``open_shard``, ``created_at``): transfers not closed yet — what the sweep asks about and
  what a community's reconciliation counts as in flight; the attribute is removed on close.
- ``hub-positions``: (``community``, ``asset``) → ``net`` (sent out minus received), moved by
  ``ADD`` in the transaction that records a credited outcome.

A commit is one ``TransactWriteItems`` of the writes and the outbox event.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import TransactWriteError
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from functions.adapters.dynamo import (cancelled_by_condition, commit, dt, index_meta, iso, make_meta,
                                       retry_on_conflict, table)
from functions.core.errors import InvalidState
from functions.core.ids import content_hash
from functions.hub.model import FORWARDING, HubTransfer

OPEN_SHARDS = 4


class HubTransferByOpen(GlobalSecondaryIndex):
    Meta = index_meta("by-open")
    open_shard = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


@table
class HubTransferItem(Model):
    Meta = make_meta("hub-transfers")
    id = UnicodeAttribute(hash_key=True)
    source = UnicodeAttribute()
    destination = UnicodeAttribute()
    asset = UnicodeAttribute()
    amount = NumberAttribute()
    status = UnicodeAttribute()
    message = UnicodeAttribute()                  # JSON: what the destination gets
    content_hash = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute(null=True)
    failure_code = UnicodeAttribute(null=True)
    failure_details = UnicodeAttribute(null=True)  # JSON
    closed = BooleanAttribute(default=False)
    open_shard = UnicodeAttribute(null=True)

    by_open = HubTransferByOpen()


@table
class HubPositionItem(Model):
    Meta = make_meta("hub-positions")
    community = UnicodeAttribute(hash_key=True)
    asset = UnicodeAttribute(range_key=True)
    net = NumberAttribute(default=0)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _item(t: HubTransfer) -> HubTransferItem:
    return HubTransferItem(
        t.id, source=t.source, destination=t.destination, asset=t.asset, amount=t.amount, status=t.status,
        message=_dump(t.message), content_hash=t.content_hash, created_at=iso(t.created_at),
        updated_at=iso(t.updated_at), failure_code=t.failure_code,
        failure_details=_dump(t.failure_details) if t.failure_details else None, closed=t.closed,
        open_shard=None if t.closed else str(int(content_hash(t.id)[:8], 16) % OPEN_SHARDS))


def _transfer(item: HubTransferItem) -> HubTransfer:
    return HubTransfer(
        id=item.id, source=item.source, destination=item.destination, asset=item.asset, amount=int(item.amount),
        status=item.status, message=json.loads(item.message), content_hash=item.content_hash,
        created_at=dt(item.created_at), updated_at=dt(item.updated_at), failure_code=item.failure_code,
        failure_details=json.loads(item.failure_details) if item.failure_details else {},
        closed=bool(item.closed))


class _Put:
    def __init__(self, transfer: HubTransfer):
        self.transfer = transfer

    def add_to(self, transaction: TransactWrite) -> None:
        transaction.save(_item(self.transfer), condition=HubTransferItem.id.does_not_exist())


class _Resolve:
    def __init__(self, transfer: HubTransfer):
        self.transfer = transfer

    def add_to(self, transaction: TransactWrite) -> None:
        t = self.transfer
        actions = [HubTransferItem.status.set(t.status), HubTransferItem.updated_at.set(iso(t.updated_at))]
        if t.failure_code:
            actions += [HubTransferItem.failure_code.set(t.failure_code),
                        HubTransferItem.failure_details.set(_dump(t.failure_details))]
        transaction.update(HubTransferItem(t.id), actions=actions, condition=HubTransferItem.status == FORWARDING)


class _Close:
    def __init__(self, transfer: HubTransfer):
        self.transfer = transfer

    def add_to(self, transaction: TransactWrite) -> None:
        transaction.update(HubTransferItem(self.transfer.id),
                           actions=[HubTransferItem.closed.set(True), HubTransferItem.open_shard.remove()],
                           condition=HubTransferItem.closed == False)  # noqa: E712 - a DynamoDB condition


class _Move:
    def __init__(self, community: str, asset: str, delta: int):
        self.community, self.asset, self.delta = community, asset, delta

    def add_to(self, transaction: TransactWrite) -> None:
        transaction.update(HubPositionItem(self.community, self.asset), actions=[HubPositionItem.net.add(self.delta)])


class DynamoHubStore:
    def get(self, transfer_id: str) -> HubTransfer | None:
        try:
            return _transfer(HubTransferItem.get(transfer_id, consistent_read=True))
        except HubTransferItem.DoesNotExist:
            return None

    def put_new(self, transfer: HubTransfer) -> _Put:
        return _Put(transfer)

    def resolve(self, transfer: HubTransfer) -> _Resolve:
        return _Resolve(transfer)

    def move_position(self, community: str, asset: str, delta: int) -> _Move:
        return _Move(community, asset, delta)

    def close(self, transfer: HubTransfer) -> _Close:
        return _Close(transfer)

    def commit(self, writes: Sequence[Any]) -> None:
        try:
            # Two transfers crediting one community's position at once conflict; nothing was written.
            retry_on_conflict(lambda: commit(writes))
        except TransactWriteError as error:
            if cancelled_by_condition(error):
                raise InvalidState(details={"reason": "a condition of the hub's write failed"}) from None
            raise

    def open_transfers(self) -> list[HubTransfer]:
        out = []
        for shard in range(OPEN_SHARDS):
            for item in HubTransferItem.by_open.query(str(shard)):
                current = self.get(item.id)  # the index lags: decide on the table's item
                if current is not None and not current.closed:
                    out.append(current)
        return out

    def positions(self, community: str | None = None) -> dict[str, dict[str, int]]:
        items = HubPositionItem.query(community, consistent_read=True) if community else \
            HubPositionItem.scan(consistent_read=True)
        out: dict[str, dict[str, int]] = {}
        for item in items:
            out.setdefault(item.community, {})[item.asset] = int(item.net or 0)
        return out

    def scan(self) -> list[HubTransfer]:
        return [_transfer(item) for item in HubTransferItem.scan(consistent_read=True)]
