"""Ledger values: commands callers submit, stored transfers and balances, and the write plan.

The domain (``ledger.py``) turns commands into a ``Plan`` — the exact writes and the
conditions they need — and a store commits a plan atomically or rejects it naming the plan
elements whose conditions failed. Nothing here talks to storage.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Union

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
# Every ledger amount names one of these. Amounts are integer minutes for the time assets and
# integer points for the others; the ledger treats both as integers of their own asset and
# never converts between assets inside a transfer.
@dataclass(frozen=True)
class PointKind:
    code: str
    name_zh: str
    transferable: bool  # may residents move it between accounts (family, pool)?


POINT_KINDS: dict[str, PointKind] = {kind.code: kind for kind in (
    PointKind("service", "服务时", transferable=True),          # mutual-aid time, the main asset
    PointKind("volunteer", "志愿时", transferable=True),        # volunteer activity time
    PointKind("skill", "技能共享积分", transferable=True),
    PointKind("green", "绿色生活积分", transferable=True),
    PointKind("welfare", "公益帮扶积分", transferable=True),
    PointKind("contribution", "贡献积分", transferable=True),
    PointKind("reputation", "声望积分", transferable=False),    # earned, never moved by residents
)}

DEFAULT_ASSET = "service"
ASSET_CODES: tuple[str, ...] = tuple(POINT_KINDS)


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


@dataclass
class Plan:
    puts: list[TransferRecord] = field(default_factory=list)
    resolutions: list[Resolution] = field(default_factory=list)
    balances: list[BalanceChange] = field(default_factory=list)
    foreign: list[Any] = field(default_factory=list)

    @property
    def item_count(self) -> int:
        return len(self.puts) + len(self.resolutions) + len(
            [b for b in self.balances if b.has_deltas or b.has_condition])


class CommitRejected(Exception):
    """A store refused a plan: ``failed`` lists the plan elements whose condition failed
    (``TransferRecord`` = id exists; ``Resolution``; ``BalanceChange``; for foreign writes the
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
