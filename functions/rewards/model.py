"""Rewards (礼遇) as plain rules: converting points, merchants and their catalogue, vouchers,
and exchanges with 志愿汇 — what each may do and what it costs, with no I/O.

Conversion arithmetic is exact (integers only): ``amount`` of the source asset at
``rate_num/rate_den`` gives ``floor(amount · num / den)`` of the target, and the resident is
debited the least amount that gives exactly that: ``ceil(credited · den / num)`` (≤ amount).
What does not divide stays with the resident; the community never credits a fraction.

A voucher's life::

    issued → redeemed (核销 by its merchant: the hold is posted to the merchant)
    issued → cancelled (by its holder)      issued → expired (the schedule)  — both void the hold

A 志愿汇 exchange's life::

    pending → confirmed (the partner accepted: the hold is posted to the clearing account)
    pending → failed (the partner refused, or no answer before the timeout: the hold is voided)

Whatever the partner answers after that is a *late* answer: recorded, never applied.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from functions.core import clock
from functions.core.errors import BusinessRuleViolation, Conflict
from functions.core.events import DomainEvent, new_event
from functions.core.ids import derived_id
from functions.core.validation import field_error
from functions.ledger.accounts import ISSUANCE, merchant_account
from functions.ledger.model import PointKind, Transfer

MERCHANT_KINDS = ("supermarket", "property", "shop", "other")
MAX_PRICE = 100_000
MAX_STOCK = 100_000
MAX_PER_PERSON = 100
MAX_VALID_DAYS = 366


# --- refusals (API.md "Point kinds and conversion", "Merchants and vouchers") -----------------

class NotConvertible(BusinessRuleViolation):
    code = "NOT_CONVERTIBLE"
    default_message = "这两种积分之间不能兑换"


class AgeRestricted(BusinessRuleViolation):
    code = "AGE_RESTRICTED"
    default_message = "未达到本社区规定的兑换年龄"


class NotRedeemable(BusinessRuleViolation):
    code = "NOT_REDEEMABLE"
    default_message = "商户不接受该种积分"


class OutOfStock(Conflict):
    code = "OUT_OF_STOCK"
    default_message = "该礼品已兑完"


class AlreadyRedeemed(Conflict):
    code = "ALREADY_REDEEMED"
    default_message = "该券已核销"


class VoucherExpired(Conflict):
    code = "EXPIRED"
    default_message = "该券已过期"


class StockBelowOutstanding(BusinessRuleViolation):
    code = "STOCK_BELOW_OUTSTANDING"
    default_message = "库存不能少于已发出未核销的券数"


class ExchangeUnavailable(BusinessRuleViolation):
    code = "EXCHANGE_UNAVAILABLE"
    default_message = "本社区未开通志愿汇兑换"


class PartnerNoAnswer(Exception):
    """The partner took the request but did not answer in time (its answer may come later)."""


# --- age ----------------------------------------------------------------------------------------

def check_age(min_age: int, birth_year: int | None, today: datetime) -> None:
    """Only the birth year is known: the age is this calendar year minus it."""
    if min_age <= 0:
        return
    if birth_year is None or today.year - birth_year < min_age:
        raise AgeRestricted(details={"min_age": min_age})


# --- conversion ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Conversion:
    id: str
    account: str
    from_asset: str
    to_asset: str
    debited: int
    credited: int

    @property
    def transfer_ids(self) -> tuple[str, str]:
        return (f"{self.id}.out", f"{self.id}.in")


def conversion_amounts(amount: int, rate_num: int, rate_den: int) -> tuple[int, int]:
    """(debited, credited): rounded down in the community's favour, debiting only what was used."""
    credited = amount * rate_num // rate_den
    debited = -(-credited * rate_den // rate_num)
    return debited, credited


def plan_conversion(conversion_id: str, account: str, from_asset: str, to_asset: str, amount: int,
                    kinds: Mapping[str, PointKind], actor: str | None) -> tuple[Conversion, list[Transfer]]:
    """The two linked ledger legs of a conversion: the source asset goes back to issuance, the
    target is issued to the same account (one transaction: both or neither)."""
    source = kinds[from_asset]
    rate = source.rate_to(to_asset)
    if rate is None:
        raise NotConvertible(details={"from_asset": from_asset, "to_asset": to_asset})
    debited, credited = conversion_amounts(amount, *rate)
    if credited == 0:
        smallest = -(-rate[1] // rate[0])
        raise field_error("amount", f"数量至少 {smallest} 才能兑换 1 {kinds[to_asset].name_zh}")
    conversion = Conversion(conversion_id, account, from_asset, to_asset, debited, credited)
    out_id, in_id = conversion.transfer_ids
    memo = f"{source.name_zh}兑换{kinds[to_asset].name_zh}"
    return conversion, [
        Transfer(out_id, account, ISSUANCE, from_asset, debited, kind="conversion", memo=memo, actor=actor),
        Transfer(in_id, ISSUANCE, account, to_asset, credited, kind="conversion", memo=memo, actor=actor),
    ]


# --- merchants and their catalogue -----------------------------------------------------------------

def merchant_id_for(owner_openid: str) -> str:
    """One merchant per owner login: the id is derived from it (so creating twice is a replay,
    and a merchant's caller knows its merchant without a read)."""
    return derived_id("mer", owner_openid)


@dataclass(frozen=True)
class Merchant:
    id: str
    name: str
    kind: str
    owner_openid: str
    created_at: datetime
    created_by: str

    @property
    def account_id(self) -> str:
        return merchant_account(self.id)


@dataclass(frozen=True)
class CatalogueItem:
    """A merchant's offer. ``stock_left`` units may still be redeemed; ``outstanding`` vouchers
    are issued and not yet redeemed (their units are reserved); ``stock`` is both."""
    id: str
    merchant_id: str
    merchant_name: str
    title: str
    description: str
    asset: str
    price: int
    stock_left: int
    per_person_limit: int
    valid_days: int
    created_at: datetime
    content_hash: str = ""
    outstanding: int = 0
    redeemed: int = 0

    @property
    def stock(self) -> int:
        return self.stock_left + self.outstanding


ITEM_FIELDS = ("title", "description", "asset", "price", "stock", "per_person_limit", "valid_days")


def item_changes(item: CatalogueItem, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Stored changes of a merchant's edit: ``stock`` becomes ``stock_left`` and may not go
    below the vouchers outstanding."""
    out = {name: value for name, value in changes.items() if name != "stock"}
    if "stock" in changes:
        if changes["stock"] < item.outstanding:
            raise StockBelowOutstanding(details={"outstanding": item.outstanding})
        out["stock_left"] = changes["stock"] - item.outstanding
    return out


# --- vouchers ---------------------------------------------------------------------------------------

ISSUED = "issued"
REDEEMED = "redeemed"
CANCELLED = "cancelled"
EXPIRED = "expired"
VOUCHER_STATUSES = (ISSUED, REDEEMED, CANCELLED, EXPIRED)

# Crockford's base32 without I, L, O, U, upper case: the QR code's alphanumeric mode encodes it
# at 5.5 bits per character, and a person can read it out without confusing 0/O or 1/I.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 20  # 100 random bits: unguessable, and 20 characters fit a version-1 QR code


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(raw: str) -> str:
    """What a merchant types or scans: case and separators do not matter; O/I/L read as 0/1."""
    text = raw.strip().upper().replace("-", "").replace(" ", "")
    return text.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))


@dataclass(frozen=True)
class Voucher:
    id: str
    code: str
    status: str
    item_id: str
    merchant_id: str
    title: str
    asset: str
    price: int
    holder_id: str
    household_id: str
    payer_account: str
    hold_transfer_id: str
    created_at: datetime
    expires_at: datetime
    content_hash: str = ""
    closed_at: datetime | None = None
    redeem_token: str | None = None   # which 核销 attempt won (concurrent attempts share a transfer id)


class VoucherStateError(Conflict):
    code = "INVALID_STATE"
    default_message = "该券当前状态不允许此操作"

    def __init__(self, voucher: Voucher):
        super().__init__(details={"voucher_id": voucher.id, "status": voucher.status})


def check_redeemable(voucher: Voucher, now: datetime) -> None:
    """核销: once only, and not after expiry (another merchant's code is not found at all)."""
    if voucher.status == REDEEMED:
        raise AlreadyRedeemed(details={"voucher_id": voucher.id})
    if voucher.status == EXPIRED or (voucher.status == ISSUED and now >= voucher.expires_at):
        raise VoucherExpired(details={"voucher_id": voucher.id, "expires_at": clock.isoformat(voucher.expires_at)})
    if voucher.status != ISSUED:
        raise VoucherStateError(voucher)


# --- 志愿汇 exchanges -----------------------------------------------------------------------------

PENDING = "pending"
CONFIRMED = "confirmed"
FAILED = "failed"
ACCEPTED = "accepted"
REFUSED = "refused"
ZYH = "zyh"
EXCHANGE_REQUESTED = "exchange.requested"
ZYH_ASSETS = ("volunteer",)


@dataclass(frozen=True)
class Exchange:
    id: str
    status: str
    resident_id: str
    household_id: str
    payer_account: str
    asset: str
    amount: int
    coins: int
    zyh_user_id: str
    hold_transfer_id: str
    created_at: datetime
    timeout_at: datetime
    content_hash: str = ""
    partner_ref: str | None = None
    failure_reason: str | None = None      # "refused" / "timeout"
    resolved_at: datetime | None = None
    late_answer: str | None = None         # the last answer that came after the exchange was resolved
    late_partner_ref: str | None = None
    late_at: datetime | None = None

    @property
    def day(self) -> str:
        """The community's date of the request: reconciliation compares per day."""
        return self.created_at.astimezone(clock.CHINA_TZ).date().isoformat()


@dataclass(frozen=True)
class PartnerAnswer:
    exchange_id: str
    outcome: str               # accepted / refused
    partner_ref: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class StatementLine:
    """One exchange on the partner's daily statement (what it credited)."""
    exchange_id: str
    partner_ref: str
    amount: int
    coins: int


def exchange_requested(exchange: Exchange) -> DomainEvent:
    return new_event(EXCHANGE_REQUESTED, exchange.id, exchange.created_at,
                     {"amount": exchange.amount, "coins": exchange.coins})


APPLY, DUPLICATE, LATE, EARLY = "applied", "duplicate", "late", "early"


def answer_effect(exchange: Exchange | None, answer: PartnerAnswer) -> str:
    """What an answer does: a pending exchange resolves by it; the same answer again is a
    duplicate; anything after a resolution it does not repeat (a refusal after our timeout, an
    acceptance after a void) is late — recorded for reconciliation, never applied; an answer for
    an exchange we have not recorded yet is early — kept until its exchange is processed."""
    if exchange is None:
        return EARLY
    if exchange.status == PENDING:
        return APPLY
    if exchange.status == CONFIRMED and answer.outcome == ACCEPTED and answer.partner_ref == exchange.partner_ref:
        return DUPLICATE
    if exchange.status == FAILED and answer.outcome == REFUSED and exchange.failure_reason == REFUSED:
        return DUPLICATE
    return LATE


def resolution_changes(answer: PartnerAnswer, at: datetime) -> dict[str, Any]:
    if answer.outcome == ACCEPTED:
        return {"status": CONFIRMED, "partner_ref": answer.partner_ref, "resolved_at": at}
    return {"status": FAILED, "failure_reason": REFUSED, "resolved_at": at}


def reconcile_day(day: str, ours: Iterable[Exchange], theirs: Iterable[StatementLine],
                  elsewhere: Mapping[str, Exchange]) -> dict[str, Any]:
    """Our exchanges of ``day`` against the partner's statement of ``day``; ``elsewhere`` are
    our records of statement lines that are not among ours (another day, or never confirmed).

    Mismatches: confirmed here but missing there; on their statement but not confirmed here
    (a late acceptance after our timeout, an answer we never received, an id we do not know);
    amounts or references that differ."""
    ours = list(ours)
    theirs = list(theirs)
    confirmed = {e.id: e for e in ours if e.status == CONFIRMED}
    lines = {line.exchange_id: line for line in theirs}
    mismatches: list[dict[str, Any]] = []
    for exchange_id, exchange in sorted(confirmed.items()):
        line = lines.get(exchange_id)
        if line is None:
            mismatches.append({"kind": "missing_at_partner", "exchange_id": exchange_id, "amount": exchange.amount,
                               "coins": exchange.coins})
        elif (line.amount, line.coins, line.partner_ref) != (exchange.amount, exchange.coins, exchange.partner_ref):
            mismatches.append({"kind": "differs", "exchange_id": exchange_id,
                               "ours": {"amount": exchange.amount, "coins": exchange.coins,
                                        "partner_ref": exchange.partner_ref},
                               "theirs": {"amount": line.amount, "coins": line.coins,
                                          "partner_ref": line.partner_ref}})
    everything = {e.id: e for e in ours} | dict(elsewhere)
    for exchange_id, line in sorted(lines.items()):
        if exchange_id in confirmed:
            continue
        exchange = everything.get(exchange_id)
        if exchange is not None and exchange.status == CONFIRMED:
            continue  # confirmed here on another day (the partner's day ended later or earlier)
        entry: dict[str, Any] = {"kind": "missing_here", "exchange_id": exchange_id, "amount": line.amount,
                                 "coins": line.coins, "partner_ref": line.partner_ref,
                                 "our_status": exchange.status if exchange else "unknown"}
        if exchange is not None and exchange.late_answer is not None:
            entry["late_answer"] = exchange.late_answer
            entry["failure_reason"] = exchange.failure_reason
        mismatches.append(entry)
    late = [{"exchange_id": e.id, "status": e.status, "failure_reason": e.failure_reason,
             "late_answer": e.late_answer, "partner_ref": e.late_partner_ref,
             "at": clock.isoformat(e.late_at) if e.late_at else None}
            for e in sorted(ours, key=lambda e: e.id) if e.late_answer is not None]
    return {
        "date": day,
        "ok": not mismatches,
        "ours": {"count": len(confirmed), "amount": sum(e.amount for e in confirmed.values())},
        "theirs": {"count": len(lines), "amount": sum(line.amount for line in lines.values())},
        "mismatches": mismatches,
        "late_answers": late,
    }
