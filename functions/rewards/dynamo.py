"""DynamoDB adapter of rewards (PynamoDB).

Tables (``timebank-<community>-rewards-…``) and the indexes that keep every request path a
GetItem or a Query, never a Scan:

- ``rewards-merchants``      merchant_id (derived from the owner's openid).
- ``rewards-catalogue``      item_id; ``by-listing`` (listed, created_key): the catalogue,
                             newest first — one partition for the community's handful of offers.
                             ``stock_left`` and ``outstanding`` are ADDed by redeem / cancel /
                             expiry / 核销 under conditions, never read-modify-written.
- ``rewards-allowances``     (item_id, holder_id) → vouchers of the item a resident holds or
                             redeemed: the per-person limit as a condition (``used < limit``).
- ``rewards-vouchers``       voucher_id; ``by-holder`` (holder_id, created_key) for "mine";
                             ``by-expiry`` (expiring, expires_at), sparse: only issued vouchers
                             carry ``expiring``, so the schedule reads only what can expire.
- ``rewards-voucher-codes``  code → voucher id and merchant: 核销 finds a code with one
                             consistent GetItem (an index would be eventually consistent).
- ``rewards-exchanges``      exchange_id; ``by-timeout`` (pending, timeout_at), sparse: only
                             pending exchanges; ``by-day`` (day, exchange_id) for reconciliation.
- ``rewards-exchange-answers`` (exchange_id, answer_key): every answer the partner gave.

Writes that must commit with ledger legs are returned as ``add_to(transaction)`` objects.
"""
from __future__ import annotations

from dataclasses import fields as dataclass_fields
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping, Sequence

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from functions.adapters.dynamo import (cancelled_by_condition, checked_cursor, dt, index_meta, iso, make_meta,
                                       new_transaction, table)
from functions.core.errors import InvalidState
from functions.core.ids import new_id
from functions.core.validation import MAX_ID_LENGTH
from functions.rewards.model import (ISSUED, PENDING, CatalogueItem, Exchange, Merchant, PartnerAnswer, Voucher)

LISTED = "all"


def created_key(at: datetime, item_id: str) -> str:
    return f"{at.astimezone(timezone.utc):%Y%m%dT%H%M%S.%f}#{item_id}"


# --- models --------------------------------------------------------------------------------------

@table
class MerchantItem(Model):
    Meta = make_meta("rewards-merchants")
    merchant_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    kind = UnicodeAttribute()
    owner_openid = UnicodeAttribute()
    created_at = UnicodeAttribute()
    created_by = UnicodeAttribute()


class CatalogueByListing(GlobalSecondaryIndex):
    Meta = index_meta("by-listing")
    listed = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


@table
class CatalogueEntryItem(Model):
    Meta = make_meta("rewards-catalogue")
    item_id = UnicodeAttribute(hash_key=True)
    listed = UnicodeAttribute()
    created_key = UnicodeAttribute()
    merchant_id = UnicodeAttribute()
    merchant_name = UnicodeAttribute()
    title = UnicodeAttribute()
    description = UnicodeAttribute(null=True)
    asset = UnicodeAttribute()
    price = NumberAttribute()
    stock_left = NumberAttribute()
    outstanding = NumberAttribute(default=0)
    redeemed = NumberAttribute(default=0)
    per_person_limit = NumberAttribute()
    valid_days = NumberAttribute()
    created_at = UnicodeAttribute()
    content_hash = UnicodeAttribute()

    by_listing = CatalogueByListing()


@table
class AllowanceItem(Model):
    Meta = make_meta("rewards-allowances")
    item_id = UnicodeAttribute(hash_key=True)
    holder_id = UnicodeAttribute(range_key=True)
    used = NumberAttribute(default=0)


class VoucherByHolder(GlobalSecondaryIndex):
    Meta = index_meta("by-holder")
    holder_id = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class VoucherByExpiry(GlobalSecondaryIndex):
    Meta = index_meta("by-expiry")
    expiring = UnicodeAttribute(hash_key=True)
    expires_at = UnicodeAttribute(range_key=True)


@table
class VoucherItem(Model):
    Meta = make_meta("rewards-vouchers")
    voucher_id = UnicodeAttribute(hash_key=True)
    code = UnicodeAttribute()
    status = UnicodeAttribute()
    expiring = UnicodeAttribute(null=True)   # "issued" while issued (sparse index)
    item_id = UnicodeAttribute()
    merchant_id = UnicodeAttribute()
    title = UnicodeAttribute()
    asset = UnicodeAttribute()
    price = NumberAttribute()
    holder_id = UnicodeAttribute()
    household_id = UnicodeAttribute()
    payer_account = UnicodeAttribute()
    hold_transfer_id = UnicodeAttribute()
    created_at = UnicodeAttribute()
    created_key = UnicodeAttribute()
    expires_at = UnicodeAttribute()
    content_hash = UnicodeAttribute()
    closed_at = UnicodeAttribute(null=True)
    redeem_token = UnicodeAttribute(null=True)

    by_holder = VoucherByHolder()
    by_expiry = VoucherByExpiry()


@table
class VoucherCodeItem(Model):
    Meta = make_meta("rewards-voucher-codes")
    code = UnicodeAttribute(hash_key=True)
    voucher_id = UnicodeAttribute()
    merchant_id = UnicodeAttribute()


class ExchangeByTimeout(GlobalSecondaryIndex):
    Meta = index_meta("by-timeout")
    pending = UnicodeAttribute(hash_key=True)
    timeout_at = UnicodeAttribute(range_key=True)


class ExchangeByDay(GlobalSecondaryIndex):
    Meta = index_meta("by-day")
    day = UnicodeAttribute(hash_key=True)
    exchange_id = UnicodeAttribute(range_key=True)


@table
class ExchangeItem(Model):
    Meta = make_meta("rewards-exchanges")
    exchange_id = UnicodeAttribute(hash_key=True)
    status = UnicodeAttribute()
    pending = UnicodeAttribute(null=True)    # "pending" while pending (sparse index)
    day = UnicodeAttribute()
    resident_id = UnicodeAttribute()
    household_id = UnicodeAttribute()
    payer_account = UnicodeAttribute()
    asset = UnicodeAttribute()
    amount = NumberAttribute()
    coins = NumberAttribute()
    zyh_user_id = UnicodeAttribute()
    hold_transfer_id = UnicodeAttribute()
    created_at = UnicodeAttribute()
    timeout_at = UnicodeAttribute()
    content_hash = UnicodeAttribute()
    partner_ref = UnicodeAttribute(null=True)
    failure_reason = UnicodeAttribute(null=True)
    resolved_at = UnicodeAttribute(null=True)
    late_answer = UnicodeAttribute(null=True)
    late_partner_ref = UnicodeAttribute(null=True)
    late_at = UnicodeAttribute(null=True)

    by_timeout = ExchangeByTimeout()
    by_day = ExchangeByDay()


@table
class ExchangeAnswerItem(Model):
    Meta = make_meta("rewards-exchange-answers")
    exchange_id = UnicodeAttribute(hash_key=True)
    answer_key = UnicodeAttribute(range_key=True)   # "<UTC µs>#<new id>": oldest first
    outcome = UnicodeAttribute()
    partner_ref = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    effect = UnicodeAttribute()
    received_at = UnicodeAttribute()


# --- conversions ------------------------------------------------------------------------------------

_VOUCHER_TIMES = ("created_at", "expires_at", "closed_at")
_EXCHANGE_TIMES = ("created_at", "timeout_at", "resolved_at", "late_at")
_INTEGERS = ("price", "stock_left", "outstanding", "redeemed", "per_person_limit", "valid_days", "amount", "coins")


def _value(name: str, raw: Any, times: Sequence[str]) -> Any:
    if raw is None:
        return None
    if name in times:
        return dt(raw)
    if name in _INTEGERS:
        return int(raw)
    return raw


def _entity(cls: type, record: Model, key: str, times: Sequence[str], defaults: Mapping[str, Any] | None = None) -> Any:
    """A stored item as its domain value: the dataclass's fields, by name (``id`` is the key)."""
    values = {}
    for spec in dataclass_fields(cls):
        raw = getattr(record, key if spec.name == "id" else spec.name)
        values[spec.name] = _value(spec.name, raw, times) if raw is not None else (defaults or {}).get(spec.name)
    return cls(**values)


def _merchant(record: MerchantItem) -> Merchant:
    return Merchant(record.merchant_id, record.name, record.kind, record.owner_openid, dt(record.created_at),
                    record.created_by)


def _item(record: CatalogueEntryItem) -> CatalogueItem:
    return _entity(CatalogueItem, record, "item_id", ("created_at",), {"description": ""})


def _voucher(record: VoucherItem) -> Voucher:
    return _entity(Voucher, record, "voucher_id", _VOUCHER_TIMES)


def _exchange(record: ExchangeItem) -> Exchange:
    return _entity(Exchange, record, "exchange_id", _EXCHANGE_TIMES)


def _stored(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


class Write:
    """A write of rewards joining another domain's transaction (the ledger's ``also=``)."""

    def __init__(self, apply: Callable[[TransactWrite], None]):
        self._apply = apply

    def add_to(self, transaction: TransactWrite) -> None:
        self._apply(transaction)


def _set_actions(model: type[Model], changes: Mapping[str, Any]) -> list[Any]:
    return [getattr(model, name).remove() if value is None else getattr(model, name).set(_stored(value))
            for name, value in changes.items()]


# --- the store --------------------------------------------------------------------------------------

class DynamoRewardsStore:
    @staticmethod
    def commit(writes: Sequence[Any]) -> None:
        """The writes in one transaction; ``InvalidState`` when a condition failed."""
        try:
            with new_transaction() as transaction:
                for write in writes:
                    write.add_to(transaction)
        except TransactWriteError as error:
            if cancelled_by_condition(error):
                raise InvalidState(details={"reason": "a condition failed"}) from None
            raise

    # merchants
    def get_merchant(self, merchant_id: str) -> Merchant | None:
        if not merchant_id or len(merchant_id) > MAX_ID_LENGTH:
            return None
        try:
            return _merchant(MerchantItem.get(merchant_id, consistent_read=True))
        except DoesNotExist:
            return None

    def new_merchant(self, merchant: Merchant) -> Write:
        record = MerchantItem(merchant.id, name=merchant.name, kind=merchant.kind, owner_openid=merchant.owner_openid,
                              created_at=iso(merchant.created_at), created_by=merchant.created_by)
        return Write(lambda tx: tx.save(record, condition=MerchantItem.merchant_id.does_not_exist()))

    # catalogue
    def get_item(self, item_id: str) -> CatalogueItem | None:
        if not item_id or len(item_id) > MAX_ID_LENGTH:
            return None
        try:
            return _item(CatalogueEntryItem.get(item_id, consistent_read=True))
        except DoesNotExist:
            return None

    def new_item(self, item: CatalogueItem) -> Write:
        record = CatalogueEntryItem(
            item.id, listed=LISTED, created_key=created_key(item.created_at, item.id), merchant_id=item.merchant_id,
            merchant_name=item.merchant_name, title=item.title, description=item.description or None,
            asset=item.asset, price=item.price, stock_left=item.stock_left, outstanding=0, redeemed=0,
            per_person_limit=item.per_person_limit, valid_days=item.valid_days, created_at=iso(item.created_at),
            content_hash=item.content_hash)
        return Write(lambda tx: tx.save(record, condition=CatalogueEntryItem.item_id.does_not_exist()))

    def change_item(self, item: CatalogueItem, changes: Mapping[str, Any]) -> Write:
        actions = _set_actions(CatalogueEntryItem, {k: (v if k != "description" else v or None)
                                                    for k, v in changes.items()})
        condition = CatalogueEntryItem.outstanding == item.outstanding
        return Write(lambda tx: tx.update(CatalogueEntryItem(item.id), actions=actions, condition=condition))

    def catalogue(self, limit: int, cursor: dict | None) -> tuple[list[CatalogueItem], dict | None]:
        start = checked_cursor(cursor, ("item_id", "listed", "created_key"), {"listed": LISTED})
        query = CatalogueEntryItem.by_listing.query(LISTED, scan_index_forward=False, limit=limit,
                                                   last_evaluated_key=start)
        items = [_item(record) for record in query]
        return items, query.last_evaluated_key

    def take_unit(self, item_id: str) -> Write:
        return Write(lambda tx: tx.update(
            CatalogueEntryItem(item_id),
            actions=[CatalogueEntryItem.stock_left.add(-1), CatalogueEntryItem.outstanding.add(1)],
            condition=CatalogueEntryItem.stock_left >= 1))

    def return_unit(self, item_id: str) -> Write:
        return Write(lambda tx: tx.update(
            CatalogueEntryItem(item_id),
            actions=[CatalogueEntryItem.stock_left.add(1), CatalogueEntryItem.outstanding.add(-1)],
            condition=CatalogueEntryItem.outstanding >= 1))

    def hand_over_unit(self, item_id: str) -> Write:
        return Write(lambda tx: tx.update(
            CatalogueEntryItem(item_id),
            actions=[CatalogueEntryItem.outstanding.add(-1), CatalogueEntryItem.redeemed.add(1)],
            condition=CatalogueEntryItem.outstanding >= 1))

    def take_allowance(self, item_id: str, holder_id: str, limit: int) -> Write:
        condition = AllowanceItem.used.does_not_exist() | (AllowanceItem.used < limit)
        return Write(lambda tx: tx.update(AllowanceItem(item_id, holder_id), actions=[AllowanceItem.used.add(1)],
                                          condition=condition))

    def return_allowance(self, item_id: str, holder_id: str) -> Write:
        return Write(lambda tx: tx.update(AllowanceItem(item_id, holder_id), actions=[AllowanceItem.used.add(-1)],
                                          condition=AllowanceItem.used >= 1))

    def allowance_used(self, item_id: str, holder_id: str) -> int:
        try:
            return int(AllowanceItem.get(item_id, holder_id, consistent_read=True).used or 0)
        except DoesNotExist:
            return 0

    # vouchers
    def get_voucher(self, voucher_id: str) -> Voucher | None:
        if not voucher_id or len(voucher_id) > MAX_ID_LENGTH:
            return None
        try:
            return _voucher(VoucherItem.get(voucher_id, consistent_read=True))
        except DoesNotExist:
            return None

    def new_voucher(self, voucher: Voucher) -> list[Write]:
        values = {name: _stored(getattr(voucher, name)) for name in
                  (f.name for f in dataclass_fields(Voucher)) if name != "id"}
        record = VoucherItem(voucher.id, expiring=ISSUED, created_key=created_key(voucher.created_at, voucher.id),
                             **values)
        code = VoucherCodeItem(voucher.code, voucher_id=voucher.id, merchant_id=voucher.merchant_id)
        return [Write(lambda tx: tx.save(record, condition=VoucherItem.voucher_id.does_not_exist())),
                Write(lambda tx: tx.save(code, condition=VoucherCodeItem.code.does_not_exist()))]

    def voucher_of_code(self, code: str) -> tuple[str, str] | None:
        if not code or len(code) > MAX_ID_LENGTH:
            return None
        try:
            record = VoucherCodeItem.get(code, consistent_read=True)
        except DoesNotExist:
            return None
        return record.voucher_id, record.merchant_id

    def change_voucher(self, voucher: Voucher, changes: Mapping[str, Any]) -> Write:
        actions = _set_actions(VoucherItem, changes)
        if changes.get("status", voucher.status) != ISSUED:
            actions.append(VoucherItem.expiring.remove())
        condition = VoucherItem.status == voucher.status
        return Write(lambda tx: tx.update(VoucherItem(voucher.id), actions=actions, condition=condition))

    def vouchers_of(self, holder_id: str, limit: int, cursor: dict | None) -> tuple[list[Voucher], dict | None]:
        start = checked_cursor(cursor, ("voucher_id", "holder_id", "created_key"), {"holder_id": holder_id})
        query = VoucherItem.by_holder.query(holder_id, scan_index_forward=False, limit=limit, last_evaluated_key=start)
        return [_voucher(record) for record in query], query.last_evaluated_key

    def vouchers_expiring(self, until: datetime) -> Iterator[Voucher]:
        for record in VoucherItem.by_expiry.query(ISSUED, range_key_condition=VoucherItem.expires_at <= iso(until)):
            yield _voucher(record)

    # exchanges
    def get_exchange(self, exchange_id: str) -> Exchange | None:
        if not exchange_id or len(exchange_id) > MAX_ID_LENGTH:
            return None
        try:
            return _exchange(ExchangeItem.get(exchange_id, consistent_read=True))
        except DoesNotExist:
            return None

    def get_exchanges(self, exchange_ids: Sequence[str]) -> dict[str, Exchange]:
        ids = [i for i in dict.fromkeys(exchange_ids) if i and len(i) <= MAX_ID_LENGTH]
        if not ids:
            return {}
        return {record.exchange_id: _exchange(record) for record in ExchangeItem.batch_get(ids, consistent_read=True)}

    def new_exchange(self, exchange: Exchange) -> Write:
        values = {name: _stored(getattr(exchange, name)) for name in
                  (f.name for f in dataclass_fields(Exchange)) if name != "id"}
        record = ExchangeItem(exchange.id, pending=PENDING, day=exchange.day, **values)
        return Write(lambda tx: tx.save(record, condition=ExchangeItem.exchange_id.does_not_exist()))

    def change_exchange(self, exchange: Exchange, changes: Mapping[str, Any]) -> Write:
        actions = _set_actions(ExchangeItem, changes)
        if changes.get("status", exchange.status) != PENDING:
            actions.append(ExchangeItem.pending.remove())
        condition = ExchangeItem.status == exchange.status
        return Write(lambda tx: tx.update(ExchangeItem(exchange.id), actions=actions, condition=condition))

    def record_late_answer(self, exchange_id: str, answer: PartnerAnswer, at: datetime) -> None:
        ExchangeItem(exchange_id).update(actions=[
            ExchangeItem.late_answer.set(answer.outcome),
            ExchangeItem.late_partner_ref.set(answer.partner_ref) if answer.partner_ref
            else ExchangeItem.late_partner_ref.remove(),
            ExchangeItem.late_at.set(iso(at)),
        ], condition=ExchangeItem.exchange_id.exists())

    def log_answer(self, answer: PartnerAnswer, effect: str, at: datetime) -> Write:
        # Each answer its own item, the same answer twice too: the log is what reconciliation
        # and an operator read to see what the partner said, and when.
        record = ExchangeAnswerItem(answer.exchange_id, f"{at.astimezone(timezone.utc):%Y%m%dT%H%M%S.%f}#{new_id('ans')}",
                                    outcome=answer.outcome, partner_ref=answer.partner_ref, reason=answer.reason,
                                    effect=effect, received_at=iso(at))
        return Write(lambda tx: tx.save(record))

    def answers(self, exchange_id: str) -> list[tuple[PartnerAnswer, str]]:
        return [(PartnerAnswer(r.exchange_id, r.outcome, r.partner_ref, r.reason), r.effect)
                for r in ExchangeAnswerItem.query(exchange_id, consistent_read=True)]

    def exchanges_due(self, until: datetime) -> Iterator[Exchange]:
        for record in ExchangeItem.by_timeout.query(PENDING, range_key_condition=ExchangeItem.timeout_at <= iso(until)):
            yield _exchange(record)

    def exchanges_of_day(self, day: str) -> list[Exchange]:
        return [_exchange(record) for record in ExchangeItem.by_day.query(day)]
