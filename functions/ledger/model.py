"""Ledger values: commands callers submit, stored transfers and balances, and the write plan.

The domain (``ledger.py``) turns commands into a ``Plan`` — the exact writes and the
conditions they need — and a store commits a plan atomically or rejects it naming the plan
elements whose conditions failed. Nothing here talks to storage.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Union

from functions.core.errors import Conflict, ValidationError

# --- operations (TigerBeetle's transfer flags) -------------------------------------------
OP_TRANSFER = "transfer"          # single-phase, posted at once
OP_PENDING = "pending"            # two-phase: a hold
OP_POST = "post_pending"          # posts a hold (full or partial; the rest is released)
OP_VOID = "void_pending"          # releases a hold
OP_REVERSAL = "reversal"          # a linked reversing transfer of a posted transfer

# Operations whose effect is a posted movement debit -> credit (so they can be reversed).
POSTED_OPS = frozenset({OP_TRANSFER, OP_POST, OP_REVERSAL})

# --- status -----------------------------------------------------------------------------
POSTED = "posted"
PENDING = "pending"
VOIDED = "voided"


# --- assets (point kinds) ------------------------------------------------------------------
# Every ledger amount names one of these (API.md "Point kinds and conversion"). Amounts are
# integer minutes for the time assets and integer points for the others; the ledger treats both
# as integers of their own asset and never converts between assets inside a transfer (a
# conversion is two linked transfers through issuance). Reputation is not an asset: it is a
# score on the resident.
UNITS = ("minute", "point")
MAX_EXPIRY_DAYS = 3650
MAX_RATE = 1000


@dataclass(frozen=True)
class PointKind:
    code: str
    name_zh: str
    unit: str = "point"
    transferable: bool = True              # may residents move it (family, pool: POST /v1/transfers)?
    redeemable: bool = True                # may merchants take it (vouchers)?
    expires_after_days: int | None = None  # credits expire this many days after they were earned
    convertible_to: tuple[tuple[str, int, int], ...] = ()  # (asset, rate_num, rate_den): num/den per unit

    def rate_to(self, asset: str) -> tuple[int, int] | None:
        for target, num, den in self.convertible_to:
            if target == asset:
                return num, den
        return None


DEFAULT_POINT_KINDS: dict[str, PointKind] = {kind.code: kind for kind in (
    PointKind("service", "服务时", unit="minute"),      # mutual-aid time, the main asset
    PointKind("volunteer", "志愿时", unit="minute"),    # volunteer activity time
    PointKind("skill", "技能共享"),
    PointKind("green", "绿色生活"),
    PointKind("welfare", "公益帮扶"),
    PointKind("contribution", "贡献"),
)}
POINT_KINDS = DEFAULT_POINT_KINDS  # the product's defaults; a community's come from point_kinds_from

DEFAULT_ASSET = "service"
ASSET_CODES: tuple[str, ...] = tuple(DEFAULT_POINT_KINDS)
_KIND_KEYS = ("name", "unit", "transferable", "redeemable", "expires_after_days", "convert_to")


def point_kinds_from(config: Mapping[str, Any] | None) -> dict[str, PointKind]:
    """A community's point kinds: ``config`` is the ``[assets]`` table of its file (the
    ``TIMEBANK_ASSETS`` setting), asset id → {name, unit, transferable, redeemable,
    expires_after_days (absent/0: never), convert_to: {asset: {rate_num, rate_den}}}; what it
    leaves out keeps the defaults above. ``ValidationError`` names every bad field
    (``assets.green.convert_to.service.rate_den``), as infra/config.py reports them."""
    problems: dict[str, str] = {}
    kinds = dict(DEFAULT_POINT_KINDS)
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ValidationError("积分种类配置无效", {"fields": {"assets": "must be a table of asset id = settings"}})
    for code, settings in config.items():
        name = f"assets.{code}"
        if code not in DEFAULT_POINT_KINDS:
            problems[name] = f"unknown asset (known: {', '.join(ASSET_CODES)})"
            continue
        if not isinstance(settings, Mapping):
            problems[name] = "must be a table of settings"
            continue
        for key in sorted(set(settings) - set(_KIND_KEYS)):
            problems[f"{name}.{key}"] = f"unknown setting (allowed: {', '.join(_KIND_KEYS)})"
        base = kinds[code]
        changes: dict[str, Any] = {}
        if "name" in settings:
            value = settings["name"]
            if isinstance(value, str) and 1 <= len(value.strip()) <= 20:
                changes["name_zh"] = value.strip()
            else:
                problems[f"{name}.name"] = "must be text of 1 to 20 characters"
        if "unit" in settings:
            if settings["unit"] in UNITS:
                changes["unit"] = settings["unit"]
            else:
                problems[f"{name}.unit"] = f"must be one of {', '.join(UNITS)}"
        for flag in ("transferable", "redeemable"):
            if flag in settings:
                if isinstance(settings[flag], bool):
                    changes[flag] = settings[flag]
                else:
                    problems[f"{name}.{flag}"] = "must be true or false"
        if "expires_after_days" in settings:
            days = settings["expires_after_days"]
            if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_EXPIRY_DAYS:
                problems[f"{name}.expires_after_days"] = f"must be an integer from 0 (never) to {MAX_EXPIRY_DAYS}"
            else:
                changes["expires_after_days"] = days or None
        if "convert_to" in settings:
            rates = _rates(code, settings["convert_to"], f"{name}.convert_to", problems)
            if rates is not None:
                changes["convertible_to"] = rates
        kinds[code] = replace(base, **changes)
    if problems:
        raise ValidationError("积分种类配置无效", {"fields": problems})
    return kinds


def _rates(code: str, value: Any, name: str, problems: dict[str, str]) -> tuple[tuple[str, int, int], ...] | None:
    if not isinstance(value, Mapping):
        problems[name] = "must be a table of asset = {rate_num, rate_den}"
        return None
    out = []
    for target, rate in sorted(value.items()):
        where = f"{name}.{target}"
        if target not in DEFAULT_POINT_KINDS or target == code:
            problems[where] = "must name another known asset"
            continue
        if not isinstance(rate, Mapping) or set(rate) != {"rate_num", "rate_den"}:
            problems[where] = "must be {rate_num = n, rate_den = d}"
            continue
        bad = [key for key in ("rate_num", "rate_den") if isinstance(rate[key], bool)
               or not isinstance(rate[key], int) or not 1 <= rate[key] <= MAX_RATE]
        for key in bad:
            problems[f"{where}.{key}"] = f"must be an integer from 1 to {MAX_RATE}"
        if not bad:
            out.append((target, rate["rate_num"], rate["rate_den"]))
    return tuple(out)


# --- commands -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Transfer:
    """Move ``amount`` of ``asset`` from ``debit`` to ``credit`` now."""
    id: str
    debit: str
    credit: str
    asset: str
    amount: int
    kind: str = "transfer"
    memo: str = ""
    actor: str | None = None
    request_id: str | None = None
    debit_shard: int | None = None   # only for sharded debits pinned by the caller
    # A credit taking a household past ``household_balance_cap``: "pool" pays it in full and
    # moves the excess to the community pool in the same transaction (a ``cap_overflow`` leg);
    # "refuse" refuses it (a resident's voluntary transfer must not donate by surprise).
    cap_excess: str = "pool"

    op = OP_TRANSFER

    def fingerprint(self) -> tuple[Any, ...]:
        return (self.op, self.debit, self.credit, self.asset, self.amount, self.kind, self.memo,
                self.request_id or "")


@dataclass(frozen=True)
class Hold(Transfer):
    """Reserve ``amount`` on ``debit`` (pending) until it is posted or voided."""
    kind: str = "hold"

    op = OP_PENDING


@dataclass(frozen=True)
class PostPending:
    """Post a hold: ``amount`` (None = all of it) moves, the remainder is released."""
    id: str
    pending_id: str
    amount: int | None = None
    kind: str = "settlement"
    memo: str = ""
    actor: str | None = None

    op = OP_POST

    def fingerprint(self) -> tuple[Any, ...]:
        return (self.op, self.pending_id, "" if self.amount is None else self.amount, self.kind, self.memo)


@dataclass(frozen=True)
class VoidPending:
    """Release a hold entirely."""
    id: str
    pending_id: str
    reason: str = ""
    kind: str = "release"
    actor: str | None = None

    op = OP_VOID

    def fingerprint(self) -> tuple[Any, ...]:
        return (self.op, self.pending_id, self.reason, self.kind)


@dataclass(frozen=True)
class Reverse:
    """Correct a posted transfer by a linked transfer the other way (at most once)."""
    id: str
    original_id: str
    reason: str
    actor: str
    kind: str = "reversal"

    op = OP_REVERSAL

    def fingerprint(self) -> tuple[Any, ...]:
        return (self.op, self.original_id, self.reason, self.kind)


Command = Union[Transfer, Hold, PostPending, VoidPending, Reverse]


class AlreadyReversed(Conflict):
    code = "ALREADY_REVERSED"
    default_message = "该转账已冲正，不能再次冲正"


# --- stored values ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TransferRecord:
    """A stored transfer. Immutable apart from its resolution markers (``resolved_by`` and
    ``status``/``posted_amount`` on a pending, ``reversed_by`` on a reversed transfer)."""
    id: str
    op: str
    kind: str
    debit_account: str
    credit_account: str
    asset: str
    amount: int
    status: str
    created_at: str
    sort_key: str            # "<UTC time to µs>#<id>": statement order, newest first
    content_hash: str
    memo: str = ""
    actor: str | None = None
    request_id: str | None = None
    debit_shard: int | None = None
    credit_shard: int | None = None
    pending_id: str | None = None       # post/void: the hold they resolve
    pending_amount: int | None = None   # post/void: the hold's amount (what leaves "pending")
    reversal_of: str | None = None
    reason: str | None = None
    linked: tuple[str, ...] = ()        # ids committed in the same transaction (when > 1)
    resolved_by: str | None = None      # pending: the post/void transfer that resolved it
    posted_amount: int | None = None    # pending that was posted: how much moved
    reversed_by: str | None = None      # posted transfer that was reversed: the reversal

    def with_changes(self, **changes: Any) -> "TransferRecord":
        return replace(self, **changes)


@dataclass(frozen=True)
class Totals:
    """The four TigerBeetle totals of one (account, asset), plus the stored ``available``."""
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    available: int = 0

    @property
    def posted(self) -> int:
        return self.credits_posted - self.debits_posted

    @property
    def pending(self) -> int:
        return self.credits_pending - self.debits_pending

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(self.debits_posted + other.debits_posted, self.credits_posted + other.credits_posted,
                      self.debits_pending + other.debits_pending, self.credits_pending + other.credits_pending,
                      self.available + other.available)

    def as_dict(self) -> dict[str, int]:
        return {"debits_posted": self.debits_posted, "credits_posted": self.credits_posted,
                "debits_pending": self.debits_pending, "credits_pending": self.credits_pending,
                "available": self.available}


@dataclass(frozen=True)
class BalanceRow:
    """One stored balance item: a physical account (``pool#3``) and an asset."""
    physical: str
    asset: str
    totals: Totals


# --- the plan ----------------------------------------------------------------------------------

@dataclass
class BalanceChange:
    """Deltas to one balance item, with the condition that keeps it within its limits.

    ``min_available``: the item's ``available`` before the transaction must be >= this (the
    deepest the linked commands push it); ``max_available``: must be <= this (household cap).
    ``cap_guard``: the cap condition rests on the balance the planner read (the overflow amount
    was computed from it), so its failure means "the balance moved: plan again", not a refusal;
    ``need`` is then the part of ``min_available`` that is the account's own limit.
    """
    physical: str
    asset: str
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    min_available: int | None = None
    max_available: int | None = None
    cap_guard: bool = False
    need: int | None = None

    @property
    def available_delta(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending

    @property
    def has_deltas(self) -> bool:
        return any((self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending))

    @property
    def has_condition(self) -> bool:
        return self.min_available is not None or self.max_available is not None


@dataclass
class Resolution:
    """Mark an existing transfer: a pending gets resolved, or a posted one gets reversed.

    Condition: a pending must still be ``pending``; a reversed one must be ``posted`` and not
    reversed yet. This is what makes "resolves exactly once" / "reversed at most once" hold
    under concurrency.
    """
    transfer_id: str
    by: str
    status: str | None = None          # pending -> posted / voided
    posted_amount: int | None = None
    reversal: bool = False


@dataclass(frozen=True)
class ExpiringCredit:
    """Credits of ``asset`` posted to ``account`` that expire on ``day`` (YYYY-MM-DD in the
    community's time zone): the sum of what was earned ``expires_after_days`` before. Closed
    once the expiry schedule handled it (``expired_amount`` taken back, by ``expired_by``)."""
    day: str
    account: str
    asset: str
    amount: int
    expired_amount: int | None = None
    expired_by: str | None = None

    @property
    def closed(self) -> bool:
        return self.expired_amount is not None


@dataclass
class BucketChange:
    """Add ``amount`` to the credits of (account, asset) expiring on ``day``, or close that
    bucket (``close`` = (amount taken back, expiry transfer id or None)), on the condition that
    it was not closed before."""
    day: str
    account: str
    asset: str
    amount: int = 0
    close: tuple[int, str | None] | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.day, self.account, self.asset)


def bucket_holds(change: BucketChange, current: ExpiringCredit | None) -> bool:
    """The condition of a ``BucketChange``: a bucket is closed at most once."""
    return change.close is None or current is None or not current.closed


def apply_bucket(current: ExpiringCredit | None, change: BucketChange) -> ExpiringCredit:
    base = current or ExpiringCredit(change.day, change.account, change.asset, 0)
    if change.close is not None:
        return replace(base, amount=base.amount + change.amount, expired_amount=change.close[0],
                       expired_by=change.close[1])
    return replace(base, amount=base.amount + change.amount)


@dataclass
class Plan:
    puts: list[TransferRecord] = field(default_factory=list)
    resolutions: list[Resolution] = field(default_factory=list)
    balances: list[BalanceChange] = field(default_factory=list)
    foreign: list[Any] = field(default_factory=list)
    buckets: list[BucketChange] = field(default_factory=list)  # credits that will expire

    @property
    def item_count(self) -> int:
        return len(self.puts) + len(self.resolutions) + len(
            [b for b in self.balances if b.has_deltas or b.has_condition]) + len(self.buckets)


class CommitRejected(Exception):
    """A store refused a plan: ``failed`` lists the plan elements whose condition failed
    (``TransferRecord`` = id exists; ``Resolution``; ``BalanceChange``; ``BucketChange``; for foreign writes the
    foreign object). ``failed`` is empty when the store could not tell which."""

    def __init__(self, failed: list[Any], detail: str = ""):
        self.failed = failed
        self.detail = detail
        super().__init__(detail or f"{len(failed)} condition(s) failed")


class SimulatedCrash(Exception):
    """Raised by test hooks to simulate a process dying around a commit."""


class CommitHooks:
    """Called around every commit; tests override them to inject crashes or force
    interleavings (e.g. a barrier so every thread plans before any commits)."""

    def before_commit(self, plan: Plan) -> None:
        return None

    def after_commit(self, plan: Plan) -> None:
        return None


# --- the conditions a commit checks (what the DynamoDB conditions express) -----------------------

def resolution_holds(resolution: Resolution, current: TransferRecord | None) -> bool:
    """The condition of a ``Resolution`` against the stored transfer (shared by the fake and
    documentation of what the DynamoDB condition expresses)."""
    if current is None:
        return False
    if resolution.reversal:
        return current.status == POSTED and current.reversed_by is None
    return current.status == PENDING and current.resolved_by is None


def balance_holds(change: BalanceChange, current: Totals | None) -> bool:
    available = current.available if current else 0
    if change.min_available is not None and available < change.min_available:
        return False
    if change.max_available is not None and available > change.max_available:
        return False
    return True


def apply_change(current: Totals | None, change: BalanceChange) -> Totals:
    base = current or Totals()
    return Totals(
        debits_posted=base.debits_posted + change.debits_posted,
        credits_posted=base.credits_posted + change.credits_posted,
        debits_pending=base.debits_pending + change.debits_pending,
        credits_pending=base.credits_pending + change.credits_pending,
        available=base.available + change.available_delta,
    )
