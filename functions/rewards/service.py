"""Rewards use cases: point kinds and conversion, the daily expiry of points, merchants and
their catalogue, vouchers (redeem, 核销, cancel, expiry) and the 志愿汇 exchange (request, the
partner's answers, the timeout, the daily reconciliation).

Money and state move together, always through the ledger with ids derived from the thing
they belong to: a voucher's hold is taken in the transaction that stores the voucher, takes
one unit of stock and counts it against the holder's per-person allowance; 核销 posts the hold
in the transaction that marks the voucher redeemed; cancelling and expiry void it in the one
that gives the unit back. An exchange's hold is taken with the exchange and its
``exchange.requested`` event (the outbox); the partner's answer posts or voids it in the
transaction that resolves the exchange.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from functions.core import clock
from functions.core.caller import Caller
from functions.core.errors import (AlreadyExists, Conflict, Forbidden, IdempotencyMismatch, InvalidState,
                                   LimitExceeded, NotFound)
from functions.core.events import DomainEvent, EventRelay, Outbox
from functions.core.ids import content_hash, derived_id, new_id
from functions.core.observability import count, logger
from functions.identity.model import ROLE_MERCHANT
from functions.ledger.accounts import POOL, clearing_account, household_account, merchant_account, resident_account
from functions.ledger.model import ASSET_CODES, ExpiringCredit, PointKind, TransferRecord
from functions.rewards.model import (ACCEPTED, APPLY, CANCELLED, EARLY, EXPIRED, FAILED, ISSUED, ITEM_FIELDS, LATE,
                                     PENDING, REDEEMED, ZYH, CatalogueItem, Conversion, Exchange,
                                     ExchangeUnavailable, Merchant, NotConvertible, NotRedeemable, OutOfStock,
                                     PartnerAnswer, PartnerNoAnswer, Voucher, VoucherStateError, answer_effect,
                                     check_age, check_redeemable, exchange_requested, item_changes, merchant_id_for,
                                     new_code, normalise_code, plan_conversion, reconcile_day, resolution_changes)
from functions.rewards.ports import Ledger, Residents, RewardsStore, ZyhPartner

_RETRIES = 3


def _payer(caller: Caller, from_resident: bool) -> str:
    return resident_account(caller.resident_id) if from_resident else household_account(caller.household_id)


def _today(now: datetime) -> str:
    return now.astimezone(clock.CHINA_TZ).date().isoformat()


class AgeRule:
    """The community's ``min_redeem_age`` for converting and redeeming (0: none, and then no
    birth year is read)."""

    def __init__(self, residents: Residents, min_age: int):
        self.residents, self.min_age = residents, min_age

    def check(self, caller: Caller, now: datetime) -> None:
        if self.min_age > 0:
            check_age(self.min_age, self.residents.birth_year(caller.household_id, caller.resident_id), now)


# --- point kinds, conversion, expiry -------------------------------------------------------------

class PointsService:
    def __init__(self, ledger: Ledger, age: AgeRule, now: Callable[[], datetime] = clock.now):
        self.ledger, self.age, self.now = ledger, age, now

    def kinds(self) -> list[PointKind]:
        return [self.ledger.point_kinds[code] for code in ASSET_CODES]

    def convert(self, caller: Caller, from_asset: str, to_asset: str, amount: int, from_resident: bool,
                idempotency_key: str) -> Conversion:
        """Two linked ledger legs (source → issuance, issuance → target) in one transaction;
        the key makes the ids, so a replay returns the first result and another body is 409."""
        if from_asset == to_asset or self.ledger.point_kind(from_asset).rate_to(to_asset) is None:
            raise NotConvertible(details={"from_asset": from_asset, "to_asset": to_asset})
        self.age.check(caller, self.now())
        conversion, commands = plan_conversion(
            derived_id("cv", caller.resident_id, idempotency_key), _payer(caller, from_resident), from_asset,
            to_asset, amount, self.ledger.point_kinds, caller.actor)
        self.ledger.execute(commands)
        count("PointsConverted")
        return conversion

    def expire_due(self, day: str | None = None) -> dict[str, Any]:
        """The day's buckets of expiring credits (one Query): each moves ``min(bucket,
        available)`` back to issuance, once (see ``functions.ledger.service``). A missed day is
        caught up by running it with that ``day``."""
        day = day or _today(self.now())
        buckets: list[ExpiringCredit] = self.ledger.expiring(day)
        closed = taken = 0
        for credit in buckets:
            if credit.closed:
                continue
            result = self.ledger.expire(credit)
            closed += 1
            taken += result.expired_amount or 0
        if taken:
            count("PointsExpired", taken)
        return {"day": day, "buckets": len(buckets), "closed": closed, "expired": taken}


# --- merchants, catalogue, vouchers ---------------------------------------------------------------

class MerchantService:
    def __init__(self, store: RewardsStore, ledger: Ledger, residents: Residents, age: AgeRule,
                 now: Callable[[], datetime] = clock.now, make_code: Callable[[], str] = new_code):
        self.store, self.ledger, self.residents, self.age = store, ledger, residents, age
        self.now, self.make_code = now, make_code

    # merchants
    def create_merchant(self, actor: str, name: str, kind: str, owner_openid: str) -> tuple[Merchant, bool]:
        """A merchant with its own ledger account; its owner's login gets the role ``merchant``
        in the same transaction. One merchant per owner: the same body again is a replay
        (False), another body for the same owner is 409 ``ALREADY_EXISTS``."""
        merchant_id = merchant_id_for(owner_openid)
        existing = self.store.get_merchant(merchant_id)
        if existing is None:
            merchant = Merchant(merchant_id, name, kind, owner_openid, self.now(), actor)
            try:
                self.ledger.execute([], also=[self.store.new_merchant(merchant),
                                              self.residents.role_grant(owner_openid, ROLE_MERCHANT)])
                count("MerchantCreated")
                return merchant, True
            except InvalidState:
                existing = self.store.get_merchant(merchant_id)  # created concurrently
                if existing is None:
                    raise Conflict("操作冲突，请重试") from None
        if (existing.name, existing.kind) != (name, kind):
            raise AlreadyExists("该微信用户已是另一商户的店主", {"merchant_id": existing.id})
        return existing, False

    def merchant(self, merchant_id: str) -> Merchant:
        merchant = self.store.get_merchant(merchant_id)
        if merchant is None:
            raise NotFound("未找到该商户", {"merchant_id": merchant_id})
        return merchant

    def merchant_of(self, caller: Caller) -> Merchant:
        merchant = self.store.get_merchant(merchant_id_for(caller.openid))
        if merchant is None:  # the role without a merchant (set by hand): nothing to act for
            raise Forbidden("该登录未关联商户")
        return merchant

    def settle(self, actor: str, merchant_id: str, asset: str, amount: int, memo: str,
               idempotency_key: str) -> TransferRecord:
        """The community fund buys a merchant's credits back: merchant account → pool."""
        merchant = self.merchant(merchant_id)
        self.ledger.point_kind(asset)
        return self.ledger.transfer(
            derived_id("tr", "buyback", merchant.id, idempotency_key), merchant.account_id, POOL, asset, amount,
            kind="merchant_buyback", memo=memo or f"社区基金回购{merchant.name}积分", actor=actor)

    def statement(self, caller: Caller, limit: int, cursor: dict | None) -> tuple[Merchant, dict, Any]:
        merchant = self.merchant_of(caller)
        return merchant, self.ledger.balances(merchant.account_id), \
            self.ledger.statement(merchant.account_id, limit, cursor)

    # catalogue
    def _redeemable(self, asset: str) -> None:
        if not self.ledger.point_kind(asset).redeemable:
            raise NotRedeemable(details={"asset": asset})

    def add_item(self, caller: Caller, fields: Mapping[str, Any], idempotency_key: str | None) -> CatalogueItem:
        merchant = self.merchant_of(caller)
        self._redeemable(fields["asset"])
        fingerprint = content_hash(*(fields.get(name, "") for name in ITEM_FIELDS))
        item_id = derived_id("itm", merchant.id, idempotency_key) if idempotency_key else new_id("itm")
        existing = self.store.get_item(item_id) if idempotency_key else None
        if existing is None:
            item = CatalogueItem(
                id=item_id, merchant_id=merchant.id, merchant_name=merchant.name, title=fields["title"],
                description=fields.get("description", ""), asset=fields["asset"], price=fields["price"],
                stock_left=fields["stock"], per_person_limit=fields["per_person_limit"],
                valid_days=fields["valid_days"], created_at=self.now(), content_hash=fingerprint)
            try:
                self.store.commit([self.store.new_item(item)])
                return item
            except InvalidState:
                existing = self.store.get_item(item_id)
                if existing is None:
                    raise Conflict("操作冲突，请重试") from None
        if existing.content_hash != fingerprint:
            raise IdempotencyMismatch()
        return existing

    def merchant_item(self, caller: Caller, item_id: str) -> CatalogueItem:
        item = self.store.get_item(item_id)
        if item is None or item.merchant_id != merchant_id_for(caller.openid):
            raise NotFound("未找到该礼品", {"item_id": item_id})
        return item

    def change_item(self, caller: Caller, item_id: str, changes: Mapping[str, Any]) -> CatalogueItem:
        """Only the fields given change; ``stock`` counts the vouchers outstanding, so it can
        never go below them (a concurrent redeem makes the write retry on what is stored)."""
        item = self.merchant_item(caller, item_id)
        if "asset" in changes:
            self._redeemable(changes["asset"])
        for _ in range(_RETRIES):
            stored = item_changes(item, changes)
            try:
                self.store.commit([self.store.change_item(item, stored)])
                return replace(item, **stored)
            except InvalidState:
                item = self.merchant_item(caller, item_id)
        raise Conflict("操作冲突，请重试")

    def catalogue(self, limit: int, cursor: dict | None) -> tuple[list[CatalogueItem], dict | None]:
        return self.store.catalogue(limit, cursor)

    # vouchers
    def redeem(self, caller: Caller, item_id: str, from_resident: bool, idempotency_key: str) -> Voucher:
        """Hold the price on the payer, take one unit and one of the holder's allowance, store
        the voucher and its code — one transaction, so there is no voucher without stock, no
        hold without a voucher, and no oversell however many redeem at once."""
        voucher_id = derived_id("vch", caller.resident_id, idempotency_key)
        fingerprint = content_hash(item_id, from_resident)
        existing = self.store.get_voucher(voucher_id)
        if existing is not None:
            return self._replayed(existing, fingerprint)
        item = self.store.get_item(item_id)
        if item is None:
            raise NotFound("未找到该礼品", {"item_id": item_id})
        self._redeemable(item.asset)
        now = self.now()
        self.age.check(caller, now)
        if item.stock_left <= 0:
            raise OutOfStock(details={"item_id": item.id})
        voucher = Voucher(
            id=voucher_id, code=self.make_code(), status=ISSUED, item_id=item.id, merchant_id=item.merchant_id,
            title=item.title, asset=item.asset, price=item.price, holder_id=caller.resident_id,
            household_id=caller.household_id, payer_account=_payer(caller, from_resident),
            hold_transfer_id=derived_id("tr", "voucher", voucher_id), created_at=now,
            expires_at=now + timedelta(days=item.valid_days), content_hash=fingerprint)
        writes = [*self.store.new_voucher(voucher), self.store.take_unit(item.id),
                  self.store.take_allowance(item.id, caller.resident_id, item.per_person_limit)]
        try:
            self.ledger.hold(voucher.hold_transfer_id, voucher.payer_account, merchant_account(item.merchant_id),
                             item.asset, item.price, kind="voucher", memo=f"兑换{item.title}"[:200],
                             actor=caller.actor, also=writes)
        except (InvalidState, IdempotencyMismatch):
            return self._refused(voucher, item, caller, fingerprint)
        count("VoucherIssued")
        return voucher

    def _replayed(self, existing: Voucher, fingerprint: str) -> Voucher:
        if existing.content_hash != fingerprint:
            raise IdempotencyMismatch()
        return existing

    def _refused(self, voucher: Voucher, item: CatalogueItem, caller: Caller, fingerprint: str) -> Voucher:
        """A linked write's condition failed: find out which, by reading what is stored."""
        existing = self.store.get_voucher(voucher.id)
        if existing is not None:  # a concurrent replay of the same key won
            return self._replayed(existing, fingerprint)
        current = self.store.get_item(item.id)
        if current is None or current.stock_left <= 0:
            raise OutOfStock(details={"item_id": item.id})
        if self.store.allowance_used(item.id, caller.resident_id) >= item.per_person_limit:
            raise LimitExceeded("已达到每人可兑换的数量上限",
                                {"limit": "per_person", "max": item.per_person_limit, "item_id": item.id})
        raise Conflict("操作冲突，请重试")

    def mine(self, caller: Caller, limit: int, cursor: dict | None) -> tuple[list[Voucher], dict | None]:
        return self.store.vouchers_of(caller.resident_id, limit, cursor)

    def own_voucher(self, caller: Caller, voucher_id: str) -> Voucher:
        voucher = self.store.get_voucher(voucher_id)
        if voucher is None or voucher.holder_id != caller.resident_id:
            raise NotFound("未找到该券", {"voucher_id": voucher_id})  # someone else's is not shown to exist
        return voucher

    def cancel(self, caller: Caller, voucher_id: str) -> Voucher:
        voucher = self.own_voucher(caller, voucher_id)
        if voucher.status == CANCELLED:
            return voucher
        if voucher.status != ISSUED:
            raise VoucherStateError(voucher)
        return self._release(voucher, CANCELLED, caller.actor, "持券人取消")

    def _release(self, voucher: Voucher, status: str, actor: str, reason: str) -> Voucher:
        """Cancel or expire: void the hold, give the unit and the allowance back, one transaction."""
        changes = {"status": status, "closed_at": self.now()}
        writes = [self.store.change_voucher(voucher, changes), self.store.return_unit(voucher.item_id),
                  self.store.return_allowance(voucher.item_id, voucher.holder_id)]
        try:
            self.ledger.void_pending(derived_id("tr", status, voucher.id), voucher.hold_transfer_id, actor=actor,
                                     reason=reason, kind="voucher_release", also=writes)
        except InvalidState:
            current = self.store.get_voucher(voucher.id) or voucher
            if current.status == status:
                return current
            raise VoucherStateError(current) from None
        return replace(voucher, **changes)

    def redeem_code(self, caller: Caller, code: str) -> Voucher:
        """核销: the merchant posts the hold to its account, once. Attempts racing for one code
        share the transfer id (the hold's), so the voucher records which attempt won."""
        merchant_id = merchant_id_for(caller.openid)
        found = self.store.voucher_of_code(normalise_code(code))
        voucher = self.store.get_voucher(found[0]) if found is not None and found[1] == merchant_id else None
        if voucher is None:
            raise NotFound("未找到该券", {"code": "unknown"})
        now = self.now()
        check_redeemable(voucher, now)
        token = new_id("rdm")
        changes = {"status": REDEEMED, "closed_at": now, "redeem_token": token}
        writes = [self.store.change_voucher(voucher, changes), self.store.hand_over_unit(voucher.item_id)]
        try:
            self.ledger.post_pending(derived_id("tr", "redeem", voucher.id), voucher.hold_transfer_id,
                                     actor=caller.actor, kind="voucher_redeemed", memo=f"核销{voucher.title}"[:200],
                                     also=writes)
        except InvalidState:
            pass
        current = self.store.get_voucher(voucher.id) or voucher
        if current.redeem_token != token:
            check_redeemable(current, now)
            raise Conflict("操作冲突，请重试")
        count("VoucherRedeemed")
        return current

    def expire_vouchers(self) -> int:
        """Issued vouchers past ``expires_at``: the hold is voided and the unit goes back."""
        expired = 0
        for voucher in self.store.vouchers_expiring(self.now()):
            try:
                self._release(voucher, EXPIRED, "system", "过期未核销")
                expired += 1
            except Conflict:
                continue  # redeemed or cancelled meanwhile
        return expired


# --- 志愿汇 exchange -------------------------------------------------------------------------------

class ExchangeService:
    def __init__(self, store: RewardsStore, ledger: Ledger, partner: ZyhPartner, outbox: Outbox,
                 relay: EventRelay, *, coins_per_minute: int, timeout: timedelta, available: bool,
                 now: Callable[[], datetime] = clock.now):
        self.store, self.ledger, self.partner, self.outbox, self.relay = store, ledger, partner, outbox, relay
        self.coins_per_minute, self.timeout, self.available, self.now = coins_per_minute, timeout, available, now

    def request(self, caller: Caller, asset: str, amount: int, zyh_user_id: str, from_resident: bool,
                idempotency_key: str) -> Exchange:
        """Hold the credits as a pending transfer to the 志愿汇 clearing account, with the
        exchange and its ``exchange.requested`` event, in one transaction."""
        if not self.available:
            raise ExchangeUnavailable()
        exchange_id = derived_id("zx", caller.resident_id, idempotency_key)
        fingerprint = content_hash(asset, amount, zyh_user_id, from_resident)
        existing = self.store.get_exchange(exchange_id)
        if existing is not None:
            return self._replayed(existing, fingerprint)
        now = self.now()
        exchange = Exchange(
            id=exchange_id, status=PENDING, resident_id=caller.resident_id, household_id=caller.household_id,
            payer_account=_payer(caller, from_resident), asset=asset, amount=amount,
            coins=amount * self.coins_per_minute, zyh_user_id=zyh_user_id,
            hold_transfer_id=derived_id("tr", "zyh", exchange_id), created_at=now, timeout_at=now + self.timeout,
            content_hash=fingerprint)
        event = exchange_requested(exchange)
        try:
            self.ledger.hold(exchange.hold_transfer_id, exchange.payer_account, clearing_account(ZYH), asset, amount,
                             kind="zyh_exchange", memo="兑换志愿汇", actor=caller.actor,
                             also=[self.store.new_exchange(exchange), self.outbox.write(event)])
        except (InvalidState, IdempotencyMismatch):
            current = self.store.get_exchange(exchange_id)
            if current is None:
                raise Conflict("操作冲突，请重试") from None
            return self._replayed(current, fingerprint)
        self.relay.dispatch([event])
        count("ZyhExchangeRequested")
        return exchange

    @staticmethod
    def _replayed(existing: Exchange, fingerprint: str) -> Exchange:
        if existing.content_hash != fingerprint:
            raise IdempotencyMismatch()
        return existing

    def get(self, caller: Caller, exchange_id: str) -> Exchange:
        exchange = self.store.get_exchange(exchange_id)
        if exchange is None or not (caller.is_admin or exchange.resident_id == caller.resident_id):
            raise NotFound("未找到该兑换", {"exchange_id": exchange_id})
        return exchange

    def process(self, event: DomainEvent) -> str:
        """The consumer of ``exchange.requested``: ask the partner (our exchange id is its
        idempotency key: a redelivery never makes a second exchange there) and apply its
        answer. An answer that came before our record was written is applied instead of asking.
        No answer in time: the timeout schedule voids it; the partner may still answer later."""
        exchange = self.store.get_exchange(event.subject)
        if exchange is None:
            raise NotFound("未找到该兑换", {"exchange_id": event.subject})
        if exchange.status != PENDING:
            return "resolved"
        early = [answer for answer, effect in self.store.answers(exchange.id) if effect == EARLY]
        if early:
            return self.apply_answer(early[0], exchange)
        try:
            answer = self.partner.submit(exchange)
        except PartnerNoAnswer:
            logger.warning("zyh gave no answer", extra={"exchange_id": exchange.id})
            count("ZyhNoAnswer")
            return "no_answer"
        return self.apply_answer(answer, exchange)

    def apply_answer(self, answer: PartnerAnswer, known: Exchange | None = None) -> str:
        """Post (accepted) or void (refused) the hold of a pending exchange, exactly once; a
        duplicate changes nothing; a late answer is recorded on the exchange for
        reconciliation; an early one is kept in the answer log. Every answer is logged.
        ``known``: the exchange as the caller just read it (the conditions decide anyway)."""
        for _ in range(_RETRIES):
            exchange = known if known is not None else self.store.get_exchange(answer.exchange_id)
            known = None
            effect = answer_effect(exchange, answer)
            now = self.now()
            if effect != APPLY:
                if effect == LATE:
                    self.store.record_late_answer(answer.exchange_id, answer, now)
                    count("ZyhLateAnswer")
                self.store.commit([self.store.log_answer(answer, effect, now)])
                return effect
            assert exchange is not None
            writes = [self.store.change_exchange(exchange, resolution_changes(answer, now)),
                      self.store.log_answer(answer, APPLY, now)]
            try:
                if answer.outcome == ACCEPTED:
                    self.ledger.post_pending(derived_id("tr", "zyh-post", exchange.id), exchange.hold_transfer_id,
                                             actor="zyh", kind="zyh_exchange",
                                             memo=f"志愿汇已入账 {answer.partner_ref or ''}".strip()[:200],
                                             also=writes)
                else:
                    self.ledger.void_pending(derived_id("tr", "zyh-void", exchange.id), exchange.hold_transfer_id,
                                             actor="zyh", reason=f"志愿汇拒绝 {answer.reason or ''}".strip()[:200],
                                             kind="zyh_refused", also=writes)
            except InvalidState:
                continue  # resolved meanwhile (a concurrent answer, the timeout): decide again
            count("ZyhExchangeConfirmed" if answer.outcome == ACCEPTED else "ZyhExchangeRefused")
            return APPLY
        raise Conflict("操作冲突，请重试")

    def expire_due(self) -> int:
        """Pending exchanges with no answer after the timeout fail: the hold is voided."""
        failed = 0
        now = self.now()
        for exchange in self.store.exchanges_due(now):
            changes = {"status": FAILED, "failure_reason": "timeout", "resolved_at": now}
            try:
                self.ledger.void_pending(derived_id("tr", "zyh-timeout", exchange.id), exchange.hold_transfer_id,
                                         actor="system", reason="志愿汇超时未应答", kind="zyh_timeout",
                                         also=[self.store.change_exchange(exchange, changes)])
                failed += 1
            except InvalidState:
                continue  # answered meanwhile
        if failed:
            count("ZyhExchangeTimedOut", failed)
        return failed

    def reconcile(self, day: str) -> dict[str, Any]:
        """Our exchanges of the day (the clearing account's confirmed legs) against the
        partner's statement of that day; every mismatch listed, late answers too."""
        ours = self.store.exchanges_of_day(day)
        theirs = self.partner.statement(day)
        known = {exchange.id for exchange in ours}
        elsewhere = self.store.get_exchanges([line.exchange_id for line in theirs if line.exchange_id not in known])
        report = reconcile_day(day, ours, theirs, elsewhere)
        if not report["ok"]:
            logger.warning("zyh reconciliation found mismatches",
                           extra={"day": day, "mismatches": len(report["mismatches"])})
            count("ZyhReconciliationMismatches", len(report["mismatches"]))
        return report


def answer_from_message(message: Mapping[str, Any]) -> PartnerAnswer:
    """A partner notification's body (validated by the route) as an answer."""
    return PartnerAnswer(message["exchange_id"], message["status"], message.get("ref"), message.get("reason"))
