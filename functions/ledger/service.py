"""The time ledger: TigerBeetle-style accounts and transfers on a transactional key-value store.

Plain Python: commands are validated, turned into a ``Plan`` (the writes and the conditions
that make them safe) and committed atomically by a ``LedgerStore``. The conditions — not any
read the planner did — are what keep the ledger right under concurrency:

- a transfer item is written with ``attribute_not_exists(id)``: an id applies once, forever.
  A replay with the same content returns the stored transfer; with other content it is
  ``IdempotencyMismatch`` (409). (DynamoDB's own ClientRequestToken lasts 10 minutes; this
  does not expire.) A command that failed was never stored, so retrying it re-evaluates.
- every limited balance item carries ``available >= need`` in the same transaction, where
  ``need`` is the deepest the commands of the transaction push it (linked commands apply in
  order, as in TigerBeetle: a later credit does not fund an earlier debit).
- a pending item is resolved with ``status = pending``; a reversed one with
  ``status = posted AND attribute_not_exists(reversed_by)``.

Cost model (DynamoDB calls / items written per operation; a transactional write costs 2 WCU
per item ≤ 1 KB, and each transfer item also writes 2 GSI entries, the statement indexes):

==================  ==========================================  =====================
operation           calls                                       transaction items
==================  ==========================================  =====================
transfer / hold     1 TransactWriteItems                        3 (transfer + 2 balances)
post_pending        1 GetItem (the hold) + 1 TransactWriteItems 4 (+ hold's marker)
void_pending        1 GetItem + 1 TransactWriteItems            4
reverse             1 GetItem (original) + 1 TransactWriteItems 4 (+ original's marker)
settle_hold         1 GetItem + 1 TransactWriteItems            6 + foreign writes (2 transfers,
                                                                hold marker, payer, escrow
                                                                shard — post and payout merged
                                                                into one update — and payee)
debit from pool     + 1 BatchGetItem (its shards of the asset)  unchanged
balances            1 Query (sharded: 1 BatchGetItem)           —
statement page      2 Query (debit index, credit index)         —
replay / refusal    + 1 GetItem / BatchGetItem to diagnose      —
==================  ==========================================  =====================

``tests/integration/test_ledger_cost.py`` measures these numbers by counting every botocore
API call (moto's ConsumedCapacity is a constant) and fails if they grow.

Household cap (``settings.household_balance_cap``, 0 = none; API.md "Family rules"): a credit
(transfer or post) that would take a household's ``service`` ``available`` past the cap is paid
in full, and the excess moves on to the community pool in the same transaction: the ledger
adds a ``cap_overflow`` transfer household → pool (id ``<first command id>.cap``, linked with
the batch). The amount comes from the household balance the planner read, so the condition
pins what it was computed from — ``available <= cap - inflow`` (no overflow), ``available ==
read`` (part of the inflow overflows) or ``available >= cap`` (all of it does) — and a commit
refused because the balance moved in between is planned again from a fresh read (a few times,
then 409). Two concurrent credits can therefore not both skip the overflow. A command with
``cap_excess="refuse"`` (a resident's voluntary transfer) is refused instead with
``LimitExceeded`` (422, ``details.limit = "household_cap"``). Releases of the household's own
holds and reversals (corrections restoring an earlier state) are not capped. Replays return
the caller's transfers (the overflow is in the statement, not in the result).

Expiry (``PointKind.expires_after_days``, per community): every posted credit of an expiring
asset to a resident or household account — a transfer, the post of a hold, a reversal — adds
its amount, in the same transaction, to a bucket keyed by (the day it expires, account, asset):
the day is the community's date of the credit plus N days. The daily schedule reads the bucket
partition of one day (a Query, never a Scan) and ``expire`` moves ``min(bucket, available)``
back to issuance with a transfer whose id is derived from (account, asset, day), closing the
bucket in the same transaction: credits already spent (or held) are not taken back, and
spending is not attributed to buckets (a balance earned in two periods loses up to the older
bucket's amount while it lasts). A bucket closes once, so a rerun takes nothing more.

Refused commands are not stored: retrying one after the cause is fixed (credits arrived)
applies it. Pool payouts read the pool's shards to pick one that holds enough; the condition
still decides, and an amount no single shard holds is refused (``details.reason``).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from functions.core import clock
from functions.core.errors import (Conflict, IdempotencyMismatch, InsufficientCredits, InvalidState,
                                   LimitExceeded, NotFound, TimebankError, ValidationError)
from functions.core.ids import content_hash, derived_id, new_id
from functions.core.validation import MAX_AMOUNT_MINUTES, Field, FieldError, Id, Str, amount_field
from functions.ledger.accounts import (ESCROW, HOUSEHOLD, ISSUANCE, POOL, RESIDENT, UNINDEXED_ACCOUNTS, Account,
                                       logical_id, parse_account,
                                       physical_id, physical_ids, shard_for)
from functions.ledger.model import (OP_PENDING, OP_POST, OP_REVERSAL, OP_TRANSFER, OP_VOID, PENDING, POSTED,
                                    POSTED_OPS, VOIDED, AlreadyReversed, BalanceChange, BucketChange, Command, CommitRejected,
                                    ExpiringCredit, Hold, Plan, PointKind, PostPending, Resolution, Reverse, Totals,
                                    Transfer, TransferRecord, VoidPending)
from functions.ledger.reconciliation import EPOCH, audit, check_store, incremental_check
from functions.ledger.ports import LedgerStore
from functions.ledger.model import ASSET_CODES, DEFAULT_ASSET, DEFAULT_POINT_KINDS

MAX_BATCH = 20  # ≤ 4 items per command (transfer, marker, 2 balances): 80 + foreign writes ≤ DynamoDB's 100
MAX_TRANSACTION_ITEMS = 100  # DynamoDB's limit (moto does not enforce it): expiry buckets can add one per credit
EXPIRING_KINDS = frozenset({RESIDENT, HOUSEHOLD})  # whose credits expire: people's, not merchants' or system's
_EXPIRE_ATTEMPTS = 3
CAP_REPLANS = 4  # plans of one command batch when a cap condition finds the household balance moved
CAP_OVERFLOW_KIND = "cap_overflow"
CAP_OVERFLOW_MEMO = "超出家庭余额上限，转入社区公益池"
CAP_POLICIES = ("pool", "refuse")
MAX_MEMO = 200
MAX_TEXT = 200
_KIND = re.compile(r"[a-z][a-z0-9_]{0,39}")


class Page(NamedTuple):
    items: list[TransferRecord]
    next_cursor: dict[str, str] | None


def _invalid(field: str, reason: str, message: str | None = None) -> ValidationError:
    return ValidationError(message, {"fields": {field: reason}})


_TRANSFER_ID = Id(max_len=200)
_AMOUNT = amount_field(label=None)
_MEMO = Str(max_len=MAX_MEMO, min_len=0, strip=False)
_TEXT = Str(max_len=MAX_TEXT, min_len=0, strip=False)
_REQUIRED_TEXT = Str(max_len=MAX_TEXT)


def _check(rule: Field, value: Any, field: str, required: bool = False) -> None:
    """The ledger's own arguments go through the same field rules as HTTP bodies."""
    if value is None and not required:
        return
    try:
        rule.clean(value)
    except FieldError as error:
        raise _invalid(field, str(error)) from None


def _check_text(value: Any, field: str, max_len: int = MAX_TEXT, required: bool = False) -> None:
    _check(_REQUIRED_TEXT if required else (_MEMO if max_len == MAX_MEMO else _TEXT), value, field, required)


def _check_amount(value: Any, field: str = "amount") -> None:
    _check(_AMOUNT, value, field, required=True)


def _check_id(value: Any, field: str) -> None:
    _check(_TRANSFER_ID, value, field, required=True)


@dataclass
class _Leg:
    """One command's effect on one balance item, in command order."""
    physical: str
    account: Account
    asset: str
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    capped_inflow: bool = False
    refuse_over_cap: bool = False
    request_id: str | None = None

    @property
    def available_delta(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending


def overflow_id(first_id: str, n: int, taken: Sequence[str] = ()) -> str:
    """The id of a batch's n-th cap overflow transfer (1-based), derived from its first command."""
    candidate = f"{first_id}.cap" if n == 1 else f"{first_id}.cap{n}"
    if len(candidate) > 200 or candidate in taken:
        return derived_id("tr", "cap", first_id, str(n))
    return candidate


class Ledger:
    """The ledger API other domains call (handed to them by ``functions.bootstrap.ledger()``)."""

    def __init__(self, store: LedgerStore, shards: int = 8, household_cap: int = 0,
                 point_kinds: Mapping[str, PointKind] | None = None):
        if shards < 1:
            raise ValueError("ledger_shards must be at least 1")
        self.store = store
        self.shards = shards
        self.household_cap = household_cap
        # The community's point kinds (functions.ledger.model.point_kinds_from of its
        # TIMEBANK_ASSETS setting); every asset id of the product is in it.
        self.point_kinds: dict[str, PointKind] = {**DEFAULT_POINT_KINDS, **(point_kinds or {})}

    def point_kind(self, asset: str) -> PointKind:
        try:
            return self.point_kinds[asset]
        except KeyError:
            raise _invalid("asset", f"must be one of {', '.join(ASSET_CODES)}") from None

    # --- the single operations --------------------------------------------------------------
    def transfer(self, transfer_id: str, debit: str, credit: str, asset: str = DEFAULT_ASSET,
                 amount: int = 0, kind: str = "transfer", memo: str = "", actor: str | None = None,
                 request_id: str | None = None, also: Sequence[Any] = (), *,
                 cap_excess: str = "pool") -> TransferRecord:
        return self.execute([Transfer(transfer_id, debit, credit, asset, amount, kind, memo, actor, request_id,
                                      cap_excess=cap_excess)], also)[0]

    def hold(self, transfer_id: str, debit: str, credit: str = ESCROW, asset: str = DEFAULT_ASSET,
             amount: int = 0, kind: str = "hold", memo: str = "", actor: str | None = None,
             request_id: str | None = None, also: Sequence[Any] = ()) -> TransferRecord:
        return self.execute([Hold(transfer_id, debit, credit, asset, amount, kind, memo, actor, request_id)],
                            also)[0]

    def post_pending(self, transfer_id: str, pending_id: str, amount: int | None = None,
                     actor: str | None = None, *, kind: str = "settlement", memo: str = "",
                     also: Sequence[Any] = ()) -> TransferRecord:
        return self.execute([PostPending(transfer_id, pending_id, amount, kind, memo, actor)], also)[0]

    def void_pending(self, transfer_id: str, pending_id: str, actor: str | None = None, reason: str = "",
                     *, kind: str = "release", also: Sequence[Any] = ()) -> TransferRecord:
        return self.execute([VoidPending(transfer_id, pending_id, reason, kind, actor)], also)[0]

    def reverse(self, transfer_id: str, original_id: str, reason: str, actor: str,
                also: Sequence[Any] = ()) -> TransferRecord:
        return self.execute([Reverse(transfer_id, original_id, reason, actor)], also)[0]

    def reverse_transfer(self, original_id: str, reason: str, actor: str) -> TransferRecord:
        """An admin's correction (API.md ``POST /v1/admin/transfers/{id}/reverse``): the linked
        reversing transfer of a posted transfer, with actor and reason; returns it.

        - Never twice: the reversal's id is new on every call, so what stops a second one — a
          retry, a double click, two admins at once — is the original's condition
          ``attribute_not_exists(reversed_by)`` in the reversal's own transaction. The loser
          gets ``AlreadyReversed`` (409), never a second movement.
        - A settlement is one unit: its payout (escrow → volunteer) and its post (payer →
          escrow) were written as one linked batch, so reversing either reverses both (payout
          first: it funds the escrow leg), and the escrow never keeps what it passed on.
        - A receiver who has spent the credits meanwhile cannot cover the reversal: refused
          with ``InsufficientCredits`` (422) and nothing written. We refuse rather than record
          a debt the receiver's next credits pay first: a debt is a negative balance, which API.md
          allows only issuance and clearing accounts, and every spend and the household cap
          would have to learn about it. The admin sees the refusal and decides (e.g. a transfer
          back agreed with the resident, then the reversal)."""
        _check_id(original_id, "transfer_id")
        _check_text(reason, "reason", required=True)
        original = self.store.get_transfer(original_id)
        if original is None:
            raise NotFound("转账不存在", {"transfer_id": original_id})
        if original.reversed_by is not None:
            raise AlreadyReversed(details={"transfer_id": original_id, "reversed_by": original.reversed_by})
        batch = self._settlement_legs(original)
        commands = [Reverse(new_id("tr"), record.id, reason, actor) for record in batch]
        try:
            records = self.execute(commands)
        except InvalidState:
            stored = self.store.get_transfers([record.id for record in batch])
            done = [t.reversed_by for t in stored.values() if t.reversed_by]
            if done:
                raise AlreadyReversed(details={"transfer_id": original_id, "reversed_by": done[0]}) from None
            raise
        return next(r for r in records if r.reversal_of == original_id)

    def _settlement_legs(self, original: TransferRecord) -> list[TransferRecord]:
        """The posted transfers reversed together with ``original``: its linked batch's legs
        through the escrow (a settlement's post and payout), payout first; else itself."""
        if ESCROW not in (original.debit_account, original.credit_account) or len(original.linked) < 2:
            return [original]
        siblings = self.store.get_transfers([i for i in original.linked if i != original.id])
        legs = [original, *(t for t in siblings.values() if ESCROW in (t.debit_account, t.credit_account)
                            and t.op in POSTED_OPS and t.status == POSTED)]
        return sorted(legs, key=lambda t: t.debit_account != ESCROW)

    def settle_hold(self, settlement_id: str, pending_id: str, payee: str, amount: int,
                    also: Sequence[Any] = (), actor: str | None = None, kind: str = "settlement",
                    memo: str = "") -> list[TransferRecord]:
        """Settle a request's hold in one transaction with the caller's ``also`` writes:
        post ``amount`` of the hold (payer -> escrow, the rest released) and pay it out
        (escrow -> ``payee``, from the escrow shard the hold credited). ``amount == 0`` voids
        the hold instead. Ids: ``<settlement_id>.post`` and ``.pay`` (or ``.void``)."""
        _check_id(settlement_id, "settlement_id")
        if len(settlement_id) > 190:
            raise _invalid("settlement_id", "最多 190 个字符")
        _check_id(pending_id, "pending_id")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_AMOUNT_MINUTES:
            raise _invalid("amount", f"须为 0 到 {MAX_AMOUNT_MINUTES} 的整数")
        parse_account(payee, "payee")
        pending = self.store.get_transfer(pending_id)
        if pending is None or pending.op != OP_PENDING:
            raise NotFound("冻结记录不存在", {"pending_id": pending_id})
        if pending.credit_account != ESCROW:
            raise InvalidState("只能结算转入托管账户的冻结", {"pending_id": pending_id})
        commands: list[Command]
        if amount == 0:
            commands = [VoidPending(f"{settlement_id}.void", pending_id, "settled at zero minutes", "release", actor)]
        else:
            commands = [
                PostPending(f"{settlement_id}.post", pending_id, amount, kind, memo, actor),
                Transfer(f"{settlement_id}.pay", ESCROW, payee, pending.asset, amount, kind, memo, actor,
                         pending.request_id, debit_shard=pending.credit_shard),
            ]
        return self._execute(commands, list(also), {pending_id: pending})

    def execute(self, commands: Iterable[Command], also: Sequence[Any] = ()) -> list[TransferRecord]:
        """Commit several commands (and ``also``: other domains' writes with
        ``add_to(transaction)``) in one transaction: all of them or none. With no commands
        the ``also`` writes alone are committed (a failed condition is ``InvalidState``)."""
        return self._execute(list(commands), list(also), {})

    # --- reads ---------------------------------------------------------------------------------
    def get_transfer(self, transfer_id: str) -> TransferRecord | None:
        _check_id(transfer_id, "transfer_id")
        return self.store.get_transfer(transfer_id)

    def balances(self, account_id: str) -> dict[str, Totals]:
        """asset -> totals (sum of shards for a sharded account); assets never touched are absent."""
        account = parse_account(account_id)
        if not account.sharded:
            return self.store.account_balances(account.id)
        found = self.store.get_balances([(p, a) for p in physical_ids(account, self.shards) for a in ASSET_CODES])
        out: dict[str, Totals] = {}
        for (_, asset), totals in found.items():
            out[asset] = out.get(asset, Totals()) + totals
        return out

    def account_seen(self, account_id: str) -> bool:
        account = parse_account(account_id)
        return self.store.account_seen(account.id, physical_ids(account, self.shards))

    def statement(self, account_id: str, limit: int = 20, cursor: dict[str, Any] | None = None) -> Page:
        """Transfers debiting or crediting the account, newest first, with their current status."""
        account = parse_account(account_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise _invalid("limit", "须为 1 到 100 的整数")
        before = None
        if cursor is not None:
            before = cursor.get("before") if isinstance(cursor, dict) else None
            if not isinstance(before, str) or not before or len(before) > 300:
                raise _invalid("cursor", "不是本接口返回的翻页标记")
        if account.id in UNINDEXED_ACCOUNTS:
            rows = self.store.time_statement(account.id, before, limit + 1, int(EPOCH),
                                             clock.now().astimezone(timezone.utc).year)
        else:
            # A sharded account's entries are under its shards: one Query per shard and side.
            rows = self.store.statement(physical_ids(account, self.shards), before, limit + 1)
        items = rows[:limit]
        return Page(items, {"before": items[-1].sort_key} if len(rows) > limit else None)

    def check(self) -> dict[str, Any]:
        """The full audit of everything stored (two Scans; tests' oracle, ``audit`` for operators)."""
        return check_store(self.store, household_cap=self.household_cap)

    def check_incremental(self, state: Any, now: Any = None) -> dict[str, Any]:
        """The scheduled / admin check: the transfers since the last checkpoint and the accounts
        they touched, never a Scan (``reconciliation.incremental_check``)."""
        return incremental_check(self.store, state, now or clock.now(), self.household_cap, run_id=new_id("chk"))

    def audit(self, state: Any, now: Any = None) -> dict[str, Any]:
        """The full audit, re-basing the incremental check (``make ledger-check``)."""
        return audit(self.store, state, now or clock.now(), self.household_cap, run_id=new_id("chk"))

    # --- expiry ----------------------------------------------------------------------------------
    def expiring(self, day: str) -> list[ExpiringCredit]:
        """The buckets of credits that expire on ``day`` (one Query of that day's partition)."""
        return self.store.expiring(day)

    @staticmethod
    def expiry_transfer_id(credit: ExpiringCredit) -> str:
        return derived_id("tr", "expiry", credit.account, credit.asset, credit.day)

    def expire(self, credit: ExpiringCredit, actor: str = "system") -> ExpiringCredit:
        """Move ``min(credit.amount, available)`` of the bucket's account back to issuance and
        close the bucket, in one transaction; a closed bucket is returned as it is. Safe to run
        again at any point (the bucket closes once; the transfer id is the bucket's)."""
        if credit.closed:
            return credit
        transfer_id = self.expiry_transfer_id(credit)
        for _ in range(_EXPIRE_ATTEMPTS):
            totals = self.store.get_balances([(credit.account, credit.asset)]).get(
                (credit.account, credit.asset), Totals())
            take = max(0, min(credit.amount, totals.available))
            close = BucketChange(credit.day, credit.account, credit.asset,
                                 close=(take, transfer_id if take else None))
            try:
                if take == 0:
                    self.store.commit(Plan(buckets=[close]))
                else:
                    self._execute([Transfer(transfer_id, credit.account, ISSUANCE, credit.asset, take,
                                            kind="expiry", memo=f"{credit.day} 到期", actor=actor)], [], {},
                                  closes=[close])
                return ExpiringCredit(credit.day, credit.account, credit.asset, credit.amount, take,
                                      close.close[1])  # type: ignore[index]
            except InsufficientCredits:
                continue  # spent between the read and the commit: read again
            except (CommitRejected, InvalidState, IdempotencyMismatch):
                break     # closed meanwhile (another run, or a crash after its commit)
        current = {c.account + "#" + c.asset: c for c in self.store.expiring(credit.day)}
        found = current.get(credit.account + "#" + credit.asset)
        if found is None or not found.closed:
            raise Conflict("积分到期处理冲突，请重试", {"account": credit.account, "asset": credit.asset})
        return found

    # --- execution ------------------------------------------------------------------------------
    def _execute(self, commands: list[Command], also: list[Any], preloaded: dict[str, TransferRecord],
                 closes: Sequence[BucketChange] = ()) -> list[TransferRecord]:
        self._validate(commands, also)
        for attempt in range(CAP_REPLANS):
            try:
                plan, records = self._plan(commands, also, preloaded)
                plan.buckets.extend(closes)
                if plan.item_count + len(also) > MAX_TRANSACTION_ITEMS:
                    raise _invalid("commands", f"at most {MAX_TRANSACTION_ITEMS} writes in one transaction")
            except (InvalidState, InsufficientCredits, LimitExceeded, NotFound):
                # Refused on what the planner read; a replay of a committed batch lands here too
                # (its hold is no longer pending, its original already reversed).
                replay = self._replay(commands)
                if replay is not None:
                    return replay
                raise
            try:
                self.store.commit(plan)
            except CommitRejected as rejected:
                if attempt < CAP_REPLANS - 1 and self._balance_moved(rejected):
                    continue  # an overflow was computed from a balance that changed: plan again
                return self._diagnose(commands, plan, rejected)
            return records[:len(commands)]
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _balance_moved(rejected: CommitRejected) -> bool:
        return bool(rejected.failed) and all(isinstance(f, BalanceChange) and f.cap_guard for f in rejected.failed)

    def _validate(self, commands: list[Command], also: list[Any]) -> None:
        if not commands and not also:
            raise _invalid("commands", "at least one command or linked write")
        if len(commands) > MAX_BATCH:
            raise _invalid("commands", f"一次最多 {MAX_BATCH} 笔")
        for command in commands:
            if not isinstance(command, (Transfer, PostPending, VoidPending, Reverse)):
                raise _invalid("commands", f"unknown command {type(command).__name__}")
            _check_id(command.id, "transfer_id")
        ids = [c.id for c in commands]
        if len(set(ids)) != len(ids):
            raise _invalid("transfer_id", "each command of a batch needs its own id")
        touched: set[str] = set()
        for command in commands:
            if isinstance(command, Transfer):  # and Hold
                self._validate_movement(command)
            elif isinstance(command, (PostPending, VoidPending)):
                _check_id(command.pending_id, "pending_id")
                if isinstance(command, PostPending):
                    if command.amount is not None:
                        _check_amount(command.amount)
                    _check_text(command.memo, "memo", MAX_MEMO)
                else:
                    _check_text(command.reason, "reason")
                _check_text(command.actor, "actor")
                target = command.pending_id
            else:  # Reverse
                _check_id(command.original_id, "original_id")
                _check_text(command.reason, "reason", required=True)
                _check_text(command.actor, "actor", required=True)
                target = command.original_id
            if not isinstance(command.kind, str) or not _KIND.fullmatch(command.kind):
                raise _invalid("kind", "须为小写下划线形式，最多 40 个字符")
            if isinstance(command, (PostPending, VoidPending, Reverse)):
                if target in ids:
                    raise _invalid("transfer_id", "a batch cannot resolve or reverse a transfer it creates")
                if target in touched:
                    raise _invalid("transfer_id", "a batch cannot resolve or reverse one transfer twice")
                touched.add(target)

    def _validate_movement(self, command: Transfer) -> None:
        debit = parse_account(command.debit, "debit")
        credit = parse_account(command.credit, "credit")
        if debit.id == credit.id:
            raise _invalid("credit", "收款账户不能与付款账户相同")
        if command.asset not in ASSET_CODES:
            raise _invalid("asset", f"须为以下之一：{'、'.join(ASSET_CODES)}")
        _check_amount(command.amount)
        _check_text(command.memo, "memo", MAX_MEMO)
        _check_text(command.actor, "actor")
        _check_text(command.request_id, "request_id")
        if command.cap_excess not in CAP_POLICIES:
            raise _invalid("cap_excess", f"must be one of {', '.join(CAP_POLICIES)}")
        if command.debit_shard is not None:
            if not debit.sharded or isinstance(command.debit_shard, bool) or \
                    not isinstance(command.debit_shard, int) or not 0 <= command.debit_shard < self.shards:
                raise _invalid("debit_shard", "不是付款账户的分片")

    # --- planning ---------------------------------------------------------------------------------
    def _plan(self, commands: list[Command], also: list[Any], preloaded: dict[str, TransferRecord]
              ) -> tuple[Plan, list[TransferRecord]]:
        now = clock.now()
        created_at = clock.isoformat(now)
        stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        linked = tuple(c.id for c in commands) if len(commands) > 1 else ()

        wanted = [c.pending_id if isinstance(c, (PostPending, VoidPending)) else c.original_id
                  for c in commands if isinstance(c, (PostPending, VoidPending, Reverse))]
        missing = [tid for tid in wanted if tid not in preloaded]
        loaded = dict(preloaded)
        if missing:
            loaded.update(self.store.get_transfers(missing))

        plan = Plan(foreign=also)
        records: list[TransferRecord] = []
        legs: list[_Leg] = []
        escrow_shard_posted: dict[str, int] = {}  # asset -> escrow shard a batch's post credited
        # What the batch's earlier commands did to each balance item: a reversal batch may pay
        # from an escrow shard that an earlier reversal of the same batch credits.
        earlier: dict[tuple[str, str], int] = defaultdict(int)

        def pick_shard(account: Account, asset: str, amount: int, transfer_id: str, pinned: int | None,
                       preferred: int | None = None) -> int | None:
            return self._debit_shard(account, asset, amount, transfer_id, pinned, preferred, earlier)

        for command in commands:
            common = dict(id=command.id, kind=command.kind, created_at=created_at,
                          sort_key=f"{stamp}#{command.id}",
                          content_hash=content_hash(*command.fingerprint()), actor=command.actor, linked=linked)
            if isinstance(command, Transfer):  # Transfer and Hold
                debit, credit = parse_account(command.debit), parse_account(command.credit)
                pinned = command.debit_shard
                if pinned is None and debit.id == ESCROW:
                    pinned = escrow_shard_posted.get(command.asset)
                debit_shard = pick_shard(debit, command.asset, command.amount, command.id, pinned)
                credit_shard = shard_for(command.id, self.shards) if credit.sharded else None
                pending = command.op == OP_PENDING
                record = TransferRecord(
                    op=command.op, debit_account=debit.id, credit_account=credit.id, asset=command.asset,
                    amount=command.amount, status=PENDING if pending else POSTED, memo=command.memo,
                    request_id=command.request_id, debit_shard=debit_shard, credit_shard=credit_shard, **common)
                if pending:
                    legs.append(_Leg(physical_id(debit.id, debit_shard), debit, command.asset,
                                     debits_pending=command.amount))
                    legs.append(_Leg(physical_id(credit.id, credit_shard), credit, command.asset,
                                     credits_pending=command.amount))
                else:
                    legs.append(_Leg(physical_id(debit.id, debit_shard), debit, command.asset,
                                     debits_posted=command.amount))
                    legs.append(_Leg(physical_id(credit.id, credit_shard), credit, command.asset,
                                     credits_posted=command.amount, capped_inflow=True,
                                     refuse_over_cap=command.cap_excess == "refuse", request_id=command.request_id))
            elif isinstance(command, (PostPending, VoidPending)):
                held = loaded.get(command.pending_id)
                if held is None or held.op != OP_PENDING:
                    raise NotFound("冻结记录不存在", {"pending_id": command.pending_id})
                if held.status != PENDING:
                    raise InvalidState("该冻结已结算或已释放", {"pending_id": command.pending_id,
                                                              "status": held.status})
                debit, credit = parse_account(held.debit_account), parse_account(held.credit_account)
                dphys = physical_id(debit.id, held.debit_shard)
                cphys = physical_id(credit.id, held.credit_shard)
                if isinstance(command, PostPending):
                    amount = held.amount if command.amount is None else command.amount
                    if amount > held.amount:
                        raise _invalid("amount", f"不能超过冻结的 {held.amount} 分钟")
                    record = TransferRecord(
                        op=OP_POST, debit_account=debit.id, credit_account=credit.id, asset=held.asset,
                        amount=amount, status=POSTED, memo=command.memo, request_id=held.request_id,
                        debit_shard=held.debit_shard, credit_shard=held.credit_shard,
                        pending_id=held.id, pending_amount=held.amount, **common)
                    plan.resolutions.append(Resolution(held.id, command.id, status=POSTED, posted_amount=amount))
                    legs.append(_Leg(dphys, debit, held.asset, debits_pending=-held.amount, debits_posted=amount))
                    legs.append(_Leg(cphys, credit, held.asset, credits_pending=-held.amount,
                                     credits_posted=amount, capped_inflow=True, request_id=held.request_id))
                    if credit.id == ESCROW:
                        escrow_shard_posted[held.asset] = held.credit_shard  # type: ignore[assignment]
                else:
                    record = TransferRecord(
                        op=OP_VOID, debit_account=debit.id, credit_account=credit.id, asset=held.asset,
                        amount=held.amount, status=VOIDED, memo=command.reason, reason=command.reason or None,
                        request_id=held.request_id, debit_shard=held.debit_shard, credit_shard=held.credit_shard,
                        pending_id=held.id, pending_amount=held.amount, **common)
                    plan.resolutions.append(Resolution(held.id, command.id, status=VOIDED))
                    legs.append(_Leg(dphys, debit, held.asset, debits_pending=-held.amount))
                    legs.append(_Leg(cphys, credit, held.asset, credits_pending=-held.amount))
            else:  # Reverse
                original = loaded.get(command.original_id)
                if original is None:
                    raise NotFound("原转账不存在", {"original_id": command.original_id})
                if original.op not in POSTED_OPS or original.status != POSTED:
                    raise InvalidState("只能冲正已入账的转账；冻结请释放", {"original_id": original.id})
                if original.reversed_by is not None:
                    raise InvalidState("该转账已冲正", {"original_id": original.id,
                                                     "reversed_by": original.reversed_by})
                debit = parse_account(original.credit_account)
                credit = parse_account(original.debit_account)
                debit_shard = pick_shard(debit, original.asset, original.amount, command.id,
                                         None, preferred=original.credit_shard)
                credit_shard = original.debit_shard
                record = TransferRecord(
                    op=OP_REVERSAL, debit_account=debit.id, credit_account=credit.id, asset=original.asset,
                    amount=original.amount, status=POSTED, memo=command.reason, reason=command.reason,
                    request_id=original.request_id, debit_shard=debit_shard, credit_shard=credit_shard,
                    reversal_of=original.id, **common)
                plan.resolutions.append(Resolution(original.id, command.id, reversal=True))
                legs.append(_Leg(physical_id(debit.id, debit_shard), debit, original.asset,
                                 debits_posted=original.amount))
                legs.append(_Leg(physical_id(credit.id, credit_shard), credit, original.asset,
                                 credits_posted=original.amount))
            plan.puts.append(record)
            records.append(record)
            for leg in legs[len(legs) - 2:]:
                earlier[(leg.physical, leg.asset)] += leg.available_delta

        guards = self._cap_overflows(commands, legs, plan, records, common_for=lambda oid, t: dict(
            id=oid, kind=t.kind, created_at=created_at, sort_key=f"{stamp}#{oid}",
            content_hash=content_hash(*t.fingerprint()), actor=None, linked=linked))
        plan.balances = self._merge(legs, guards)
        plan.buckets = self._buckets(legs, now)
        return plan, records

    def _buckets(self, legs: list[_Leg], now: Any) -> list[BucketChange]:
        """Posted credits of expiring assets to people's accounts: one bucket update per
        (expiry day, account, asset) of the transaction."""
        today = now.astimezone(clock.CHINA_TZ).date()
        added: dict[tuple[str, str, str], int] = defaultdict(int)
        for leg in legs:
            days = self.point_kinds[leg.asset].expires_after_days
            if days and leg.credits_posted > 0 and leg.account.kind in EXPIRING_KINDS:
                day = (today + timedelta(days=days)).isoformat()
                added[(day, leg.account.id, leg.asset)] += leg.credits_posted
        return [BucketChange(day, account, asset, amount) for (day, account, asset), amount in added.items()]

    def _cap_overflows(self, commands: list[Command], legs: list[_Leg], plan: Plan,
                       records: list[TransferRecord], common_for: Any) -> dict[tuple[str, str], BalanceChange]:
        """Add the ``cap_overflow`` transfers this batch needs and return, per capped household
        item, the condition that keeps the planned amounts right (see the module docstring)."""
        guards: dict[tuple[str, str], BalanceChange] = {}
        if self.household_cap <= 0:
            return guards
        capped: dict[tuple[str, str], list[_Leg]] = defaultdict(list)
        for leg in legs:
            if leg.account.kind == HOUSEHOLD and leg.asset == DEFAULT_ASSET:
                capped[(leg.physical, leg.asset)].append(leg)
        candidates = {key: item_legs for key, item_legs in capped.items()
                      if any(leg.capped_inflow for leg in item_legs)
                      and sum(leg.available_delta for leg in item_legs) > 0}
        if not candidates:
            return guards
        cap = self.household_cap
        refusing = {key for key, item_legs in candidates.items() if any(leg.refuse_over_cap for leg in item_legs)}
        for key in refusing:
            net = sum(leg.available_delta for leg in candidates[key])
            if net > cap:
                raise self._cap_refusal(key[0], key[1])
            guards[key] = BalanceChange(key[0], key[1], max_available=cap - net)
        to_read = [key for key in candidates if key not in refusing]
        current = self.store.get_balances(to_read) if to_read else {}
        ids = [c.id for c in commands]
        overflows: list[TransferRecord] = []
        for key in to_read:
            item_legs = candidates[key]
            net = sum(leg.available_delta for leg in item_legs)
            read = current.get(key, Totals()).available
            if read + net <= cap:
                guards[key] = BalanceChange(key[0], key[1], max_available=cap - net, cap_guard=True)
                continue
            if read >= cap:
                excess = net
                guards[key] = BalanceChange(key[0], key[1], min_available=cap, cap_guard=True)
            else:
                excess = read + net - cap
                guards[key] = BalanceChange(key[0], key[1], min_available=read, max_available=read,
                                            cap_guard=True)
            account = item_legs[0].account
            request_id = next((leg.request_id for leg in item_legs if leg.capped_inflow and leg.request_id), None)
            oid = overflow_id(ids[0], len(overflows) + 1, ids)
            command = Transfer(oid, account.id, POOL, key[1], excess, CAP_OVERFLOW_KIND, CAP_OVERFLOW_MEMO,
                               None, request_id)
            credit_shard = shard_for(oid, self.shards)
            overflows.append(TransferRecord(
                op=OP_TRANSFER, debit_account=account.id, credit_account=POOL, asset=key[1], amount=excess,
                status=POSTED, memo=CAP_OVERFLOW_MEMO, request_id=request_id, debit_shard=None,
                credit_shard=credit_shard, **common_for(oid, command)))
            legs.append(_Leg(key[0], account, key[1], debits_posted=excess))
            pool = parse_account(POOL)
            legs.append(_Leg(physical_id(POOL, credit_shard), pool, key[1], credits_posted=excess))
        if overflows:
            linked = tuple(ids) + tuple(o.id for o in overflows)
            relinked = [r.with_changes(linked=linked) for r in [*records, *overflows]]
            plan.puts[:] = relinked
            records[:] = relinked
        return guards

    def _debit_shard(self, account: Account, asset: str, amount: int, transfer_id: str,
                     pinned: int | None, preferred: int | None = None,
                     earlier: dict[tuple[str, str], int] | None = None) -> int | None:
        if not account.sharded:
            return None
        if pinned is not None:
            return pinned
        first = preferred if preferred is not None and preferred < self.shards else shard_for(transfer_id, self.shards)
        if not account.limited:
            return first
        # A limited sharded account (pool) pays from one shard that holds enough. The read only
        # picks the shard; the commit's condition is what guarantees it still holds enough.
        keys = [(physical_id(account.id, shard), asset) for shard in range(self.shards)]
        found = self.store.get_balances(keys)
        available = [found.get(key, Totals()).available + (earlier or {}).get(key, 0) for key in keys]
        if available[first] >= amount:
            return first
        best = max(range(self.shards), key=lambda shard: available[shard])
        if available[best] >= amount:
            return best
        raise InsufficientCredits(details={"account": account.id, "asset": asset,
                                           "reason": "no single shard holds the amount"
                                           if sum(available) >= amount else "insufficient"})

    def _merge(self, legs: list[_Leg], guards: dict[tuple[str, str], BalanceChange] | None = None
               ) -> list[BalanceChange]:
        """One update per balance item (a transaction may touch an item once), with the
        condition that reproduces applying the legs one after the other."""
        grouped: dict[tuple[str, str], list[_Leg]] = defaultdict(list)
        for leg in legs:
            grouped[(leg.physical, leg.asset)].append(leg)
        changes = []
        for (physical, asset), item_legs in grouped.items():
            account = item_legs[0].account
            change = BalanceChange(physical, asset)
            running = lowest = 0
            for leg in item_legs:
                change.debits_posted += leg.debits_posted
                change.credits_posted += leg.credits_posted
                change.debits_pending += leg.debits_pending
                change.credits_pending += leg.credits_pending
                running += leg.available_delta
                lowest = min(lowest, running)
            if account.limited and lowest < 0:
                change.min_available = change.need = -lowest
            guard = (guards or {}).get((physical, asset))
            if guard is not None:
                change.cap_guard = guard.cap_guard
                change.max_available = guard.max_available
                if guard.min_available is not None:
                    # A household never goes below 0: a floor of 0 is no condition (and would
                    # fail on a balance item not yet written).
                    change.min_available = max(change.min_available or 0, guard.min_available) or None
            if change.has_deltas or change.has_condition:
                changes.append(change)
        return changes

    # --- after a refusal -------------------------------------------------------------------------------
    def _replay(self, commands: list[Command]) -> list[TransferRecord] | None:
        """The stored transfers if this exact batch was committed before; None if none of its
        ids exist; ``IdempotencyMismatch`` if an id exists with other content."""
        ids = [c.id for c in commands]
        stored = self.store.get_transfers(ids)
        if not stored:
            return None
        linked = tuple(ids) if len(ids) > 1 else ()
        for command in commands:
            record = stored.get(command.id)
            if record is None or record.content_hash != content_hash(*command.fingerprint()) \
                    or not self._same_batch(record.linked, ids, linked):
                raise IdempotencyMismatch(details={"transfer_id": command.id})
        return [stored[i] for i in ids]

    @staticmethod
    def _same_batch(stored: tuple[str, ...], ids: list[str], linked: tuple[str, ...]) -> bool:
        """The stored batch is this one, possibly with the cap overflows the ledger added."""
        if stored == linked:
            return True
        extra = stored[len(ids):]
        return bool(extra) and stored[:len(ids)] == tuple(ids) and \
            extra == tuple(overflow_id(ids[0], n, ids) for n in range(1, len(extra) + 1))

    def _diagnose(self, commands: list[Command], plan: Plan, rejected: CommitRejected) -> list[TransferRecord]:
        failed = rejected.failed
        for element in failed:
            # A caller's own write refused (its state moved on): whatever the transfers say, the
            # batch is not the one that committed, and a replay answer would claim its writes
            # were applied. The caller decides again on what is stored.
            if not isinstance(element, (TransferRecord, Resolution, BalanceChange, BucketChange)) \
                    and not callable(getattr(element, "refusal", None)):
                raise InvalidState(details={"reason": "a linked write's condition failed"})
        if not failed or any(isinstance(f, TransferRecord) for f in failed):
            replay = self._replay(commands)
            if replay is not None:
                return replay
        for element in failed:
            if isinstance(element, Resolution):
                if element.reversal:
                    raise InvalidState("该转账已冲正", {"original_id": element.transfer_id})
                raise InvalidState("该冻结已结算或已释放", {"pending_id": element.transfer_id})
        for element in failed:
            if isinstance(element, BucketChange):
                raise InvalidState("该到期积分已处理", {"account": element.account, "day": element.day})
        foreign = [f for f in failed if not isinstance(f, (TransferRecord, Resolution, BalanceChange, BucketChange))]
        if foreign:
            # A linked write that enforces a rule of its own (a risk counter) names its refusal.
            raise foreign[0].refusal()
        for element in failed:
            if isinstance(element, BalanceChange):
                raise self._balance_refusal(element)
        raise Conflict("账本并发冲突，请重试", {"reason": rejected.detail or "transaction cancelled"})

    def _cap_refusal(self, physical: str, asset: str) -> LimitExceeded:
        return LimitExceeded("超出家庭账户余额上限", {"limit": "household_cap", "account": logical_id(physical),
                                                "asset": asset, "cap": self.household_cap})

    def _balance_refusal(self, change: BalanceChange) -> TimebankError:
        details = {"account": logical_id(change.physical), "asset": change.asset}
        if change.cap_guard:
            current = self.store.get_balances([(change.physical, change.asset)]).get(
                (change.physical, change.asset), Totals())
            if change.need is not None and current.available < change.need:
                return InsufficientCredits(details=details)
            return Conflict("账户余额变动频繁，请重试", {**details, "reason": "household balance kept changing"})
        if change.max_available is None:
            return InsufficientCredits(details=details)
        if change.min_available is None:
            return self._cap_refusal(change.physical, change.asset)
        current = self.store.get_balances([(change.physical, change.asset)]).get(
            (change.physical, change.asset), Totals())
        if current.available < change.min_available:
            return InsufficientCredits(details=details)
        return self._cap_refusal(change.physical, change.asset)
