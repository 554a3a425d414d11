"""Reconciliation: prove the stored balances are exactly what the stored transfers say.

Invariants checked (DESIGN.md "The ledger"):

1. per asset, Σ debits = Σ credits, for posted and for pending totals;
2. every balance item (all four totals and ``available``) equals the fold of the transfers
   that touched it, and no balance item exists that no transfer explains;
3. no limited account beyond its limits (``available >= 0`` on every shard, totals never
   negative, household cap when configured);
4. every pending resolved at most once, by a transfer that points back at it, with a status
   that matches; a posted amount never above the hold; every reversal mirrors its original,
   each original reversed at most once; linked legs all present.

Two ways to check them. Violations name transfer and account ids only (pseudonymous), never
personal data.

- **The full audit** (``reconcile``/``check_store``; ``make ledger-check``, an operator's
  command): two Scans, everything stored, cost growing with the ledger's history. It also
  re-bases the incremental check (``audit``): the baseline an upgraded stack starts from.
- **The incremental check** (``incremental_check``; the daily schedule and
  ``GET /v1/admin/ledger/check``): no Scan. It folds only the transfers written since its last
  checkpoint (the ``by-time`` index, a day's range of Queries) into a stored running state:
  per (account, asset) the totals at the last cut, and per asset the Σ of the four totals. Then
  it reads the balance items those transfers touched and compares each with its state plus the
  fold, checks their limits, checks each new transfer's links, resolution and reversal against
  the transfers they name, and derives the per-asset sums of the stored balances from the
  previous sums and the touched items' differences. Cost per run: the day's transfers and the
  accounts they touched, whatever the history.

  The cut is 15 minutes before the run (``SETTLE_MARGIN``, beyond a Lambda's longest life: a
  transfer stamped before it has committed or never will), so a transfer still in flight is
  never folded past. Transfers after the cut (the *tail*) are compared but folded by the next
  run; a mismatch on an account is re-read (``RECHECKS``) before it counts, so a transfer that
  commits during the run is not reported. Findings persist: a mismatched account stays in the
  checkpoint (re-verified every run until it agrees), a transfer finding stays in every report
  until the next full audit. What it cannot see, by construction: a change to an item no
  transfer has touched since the last cut, or to old transfers (history rewritten) — the
  next transfer on that account reveals the first; the full audit finds both.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Protocol

from functions.core.errors import Conflict, ValidationError
from functions.core.observability import count, logger
from functions.ledger.accounts import HOUSEHOLD, logical_id, parse_account, physical_id
from functions.ledger.model import (OP_PENDING, OP_POST, OP_REVERSAL, OP_TRANSFER, OP_VOID, PENDING, POSTED,
                                    POSTED_OPS, VOIDED, BalanceRow, Totals, TransferRecord)
from functions.ledger.model import ASSET_CODES, DEFAULT_ASSET

_FIELDS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")


def _add(fold: dict[tuple[str, str], list[int]], physical: str, asset: str, dp: int = 0, cp: int = 0,
         dpend: int = 0, cpend: int = 0) -> None:
    totals = fold[(physical, asset)]
    totals[0] += dp
    totals[1] += cp
    totals[2] += dpend
    totals[3] += cpend


def fold_transfers(transfers: Iterable[TransferRecord]) -> dict[tuple[str, str], Totals]:
    """The balances the transfers imply, per (physical account, asset)."""
    fold: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for t in transfers:
        debit = physical_id(t.debit_account, t.debit_shard)
        credit = physical_id(t.credit_account, t.credit_shard)
        if t.op in (OP_TRANSFER, OP_REVERSAL):
            _add(fold, debit, t.asset, dp=t.amount)
            _add(fold, credit, t.asset, cp=t.amount)
        elif t.op == OP_PENDING:
            _add(fold, debit, t.asset, dpend=t.amount)
            _add(fold, credit, t.asset, cpend=t.amount)
        elif t.op == OP_POST:
            held = t.pending_amount or 0
            _add(fold, debit, t.asset, dp=t.amount, dpend=-held)
            _add(fold, credit, t.asset, cp=t.amount, cpend=-held)
        elif t.op == OP_VOID:
            held = t.pending_amount or 0
            _add(fold, debit, t.asset, dpend=-held)
            _add(fold, credit, t.asset, cpend=-held)
    return {key: Totals(dp, cp, dpend, cpend, cp - dp - dpend) for key, (dp, cp, dpend, cpend) in fold.items()}


def reconcile(transfers: Iterable[TransferRecord], balances: Iterable[BalanceRow],
              household_cap: int = 0) -> dict[str, Any]:
    transfers = list(transfers)
    balances = list(balances)
    violations: list[dict[str, Any]] = []
    above_cap: list[dict[str, Any]] = []

    def violation(kind: str, **context: Any) -> None:
        violations.append({"type": kind, **context})

    # 1. double entry, per asset
    assets = {asset: dict.fromkeys(_FIELDS, 0) for asset in ASSET_CODES}
    for row in balances:
        sums = assets.setdefault(row.asset, dict.fromkeys(_FIELDS, 0))
        for name in _FIELDS:
            sums[name] += getattr(row.totals, name)
    for asset, sums in assets.items():
        if sums["debits_posted"] != sums["credits_posted"]:
            violation("unbalanced_posted", asset=asset, debits=sums["debits_posted"], credits=sums["credits_posted"])
        if sums["debits_pending"] != sums["credits_pending"]:
            violation("unbalanced_pending", asset=asset, debits=sums["debits_pending"],
                      credits=sums["credits_pending"])

    # 2. balances = fold of transfers
    expected = fold_transfers(transfers)
    stored = {(row.physical, row.asset): row.totals for row in balances}
    for key in sorted(set(expected) | set(stored)):
        want, have = expected.get(key, Totals()), stored.get(key, Totals())
        if want != have:
            violation("balance_mismatch", account=key[0], asset=key[1], expected=want.as_dict(), stored=have.as_dict())

    # 3. limits
    _limits(balances, household_cap, violation, above_cap)

    # 4. resolutions, reversals, links
    by_id = {t.id: t for t in transfers}
    resolvers = Counter(t.pending_id for t in transfers if t.op in (OP_POST, OP_VOID))
    reversals = Counter(t.reversal_of for t in transfers if t.op == OP_REVERSAL)
    for t in transfers:
        if t.amount <= 0:
            violation("non_positive_amount", transfer_id=t.id)
        if t.op == OP_PENDING:
            resolver = by_id.get(t.resolved_by) if t.resolved_by else None
            if resolvers[t.id] > 1:
                violation("resolved_twice", transfer_id=t.id)
            if t.status == PENDING:
                if t.resolved_by or resolvers[t.id]:
                    violation("pending_resolution_mismatch", transfer_id=t.id)
            elif t.status in (POSTED, VOIDED):
                expected_op = OP_POST if t.status == POSTED else OP_VOID
                if resolver is None or resolver.op != expected_op or resolver.pending_id != t.id:
                    violation("pending_resolution_mismatch", transfer_id=t.id)
                elif t.status == POSTED and t.posted_amount != resolver.amount:
                    violation("pending_resolution_mismatch", transfer_id=t.id)
            else:
                violation("bad_status", transfer_id=t.id, status=t.status)
        elif t.op in (OP_POST, OP_VOID):
            held = by_id.get(t.pending_id or "")
            if held is None or held.op != OP_PENDING or held.resolved_by != t.id:
                violation("orphan_resolution", transfer_id=t.id)
            elif (held.debit_account, held.credit_account, held.asset, held.amount,
                  held.debit_shard, held.credit_shard) != (t.debit_account, t.credit_account, t.asset,
                                                           t.pending_amount, t.debit_shard, t.credit_shard):
                violation("resolution_differs_from_hold", transfer_id=t.id)
            elif t.op == OP_POST and t.amount > held.amount:
                violation("posted_more_than_held", transfer_id=t.id)
        if t.op == OP_REVERSAL:
            original = by_id.get(t.reversal_of or "")
            if original is None or original.reversed_by != t.id:
                violation("orphan_reversal", transfer_id=t.id)
            elif (original.debit_account, original.credit_account, original.asset, original.amount) != \
                    (t.credit_account, t.debit_account, t.asset, t.amount):
                violation("reversal_differs_from_original", transfer_id=t.id)
        if t.reversed_by is not None:
            reversal = by_id.get(t.reversed_by)
            if t.op not in POSTED_OPS or reversal is None or reversal.reversal_of != t.id:
                violation("reversal_marker_mismatch", transfer_id=t.id)
        if reversals[t.id] > 1:
            violation("reversed_twice", transfer_id=t.id)
        for other in t.linked:
            partner = by_id.get(other)
            if partner is None or partner.linked != t.linked:
                violation("missing_linked_leg", transfer_id=t.id, linked_id=other)

    report = {"ok": not violations, "assets": assets, "violations": violations,
              "transfers": len(transfers), "balances": len(balances)}
    if household_cap > 0:
        report["above_cap"] = above_cap
    return report


def _limits(rows: Iterable[BalanceRow], household_cap: int, violation: Callable[..., None],
            above_cap: list[dict[str, Any]]) -> None:
    for row in rows:
        try:
            account = parse_account(logical_id(row.physical))
        except ValidationError:  # an unparseable id is itself the finding
            violation("unknown_account", account=row.physical, asset=row.asset)
            continue
        t = row.totals
        if min(t.debits_posted, t.credits_posted, t.debits_pending, t.credits_pending) < 0:
            violation("negative_total", account=row.physical, asset=row.asset)
        if account.limited and t.available < 0:
            violation("over_limit", account=row.physical, asset=row.asset, available=t.available)
        # Not a violation: the cap is kept on every credit inside its transaction, but a
        # household's own hold released (void, the unposted rest of a post) or a reversal (a
        # correction restoring an earlier state) may legitimately take it past the cap. Listed
        # for the admins instead.
        if household_cap > 0 and account.kind == HOUSEHOLD and row.asset == DEFAULT_ASSET \
                and t.available > household_cap:
            above_cap.append({"account": row.physical, "asset": row.asset, "available": t.available,
                              "cap": household_cap})


def check_store(store: Any, household_cap: int = 0) -> dict[str, Any]:
    """Reconcile everything a store holds (two Scans)."""
    return reconcile(store.scan_transfers(), store.scan_balances(), household_cap=household_cap)


# --- the incremental check -------------------------------------------------------------------------

SETTLE_MARGIN = timedelta(minutes=15)   # > a Lambda's 15-minute limit: older transfers have committed
LEASE = timedelta(minutes=15)
RECHECKS = 2                            # extra reads of a mismatched account before it counts
EPOCH = "2020"                          # no transfer predates it: where a check with no checkpoint starts


class CheckRunning(Conflict):
    code = "LEDGER_CHECK_RUNNING"
    default_message = "账本核对正在进行，请稍后再试"


@dataclass(frozen=True)
class AccountState:
    """One (physical account, asset) as the check last verified it: ``totals`` is the fold of
    its transfers before cut ``through``; ``prev_*`` what it was before that run (a run that
    died before its checkpoint leaves the items it wrote, and the rerun starts from ``prev``)."""
    through: str
    totals: Totals
    prev_through: str | None = None
    prev_totals: Totals | None = None

    def at(self, cut: str) -> Totals | None:
        if self.through <= cut:
            return self.totals
        if self.prev_through is not None and self.prev_through <= cut:
            return self.prev_totals
        return None


class CheckState(Protocol):
    """Where the incremental check keeps its running state (``dynamo.DynamoCheckReports``)."""

    def begin(self, run_id: str, now: str, until: str) -> dict[str, Any] | None:
        """Take the run's lease and return the checkpoint (None before the first run)."""

    def account_states(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], AccountState]: ...

    def save_account_states(self, states: dict[tuple[str, str], AccountState]) -> None: ...

    def commit(self, checkpoint: dict[str, Any], run_id: str) -> None: ...


def stamp(moment: datetime) -> str:
    """A cut: comparable with transfers' ``sort_key`` ("<stamp>#<id>" sorts after "<stamp>")."""
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def _zero_sums() -> dict[str, dict[str, int]]:
    return {asset: dict.fromkeys(_FIELDS, 0) for asset in ASSET_CODES}


def _with(totals: Totals, *more: Totals) -> Totals:
    dp, cp, dpend, cpend = (totals.debits_posted, totals.credits_posted, totals.debits_pending,
                            totals.credits_pending)
    for other in more:
        dp += other.debits_posted
        cp += other.credits_posted
        dpend += other.debits_pending
        cpend += other.credits_pending
    return Totals(dp, cp, dpend, cpend, cp - dp - dpend)


def _add_sums(sums: dict[str, dict[str, int]], asset: str, totals: Totals, sign: int = 1) -> None:
    row = sums.setdefault(asset, dict.fromkeys(_FIELDS, 0))
    for name in _FIELDS:
        row[name] += sign * getattr(totals, name)


def _transfer_findings(window: list[TransferRecord], targets: dict[str, TransferRecord]) -> list[dict[str, Any]]:
    """Invariant 4 for the transfers of one window: each against its batch (all in the window:
    a batch is one transaction, one stamp) and the transfers it resolves or reverses (read in
    full: their markers). A second resolution or reversal of an older transfer shows as an
    orphan (the marker names the first)."""
    found: list[dict[str, Any]] = []
    by_id = {t.id: t for t in window}
    resolvers = Counter(t.pending_id for t in window if t.op in (OP_POST, OP_VOID))
    reversals = Counter(t.reversal_of for t in window if t.op == OP_REVERSAL)
    for t in window:
        if t.amount <= 0:
            found.append({"type": "non_positive_amount", "transfer_id": t.id})
        if t.op in (OP_POST, OP_VOID):
            held = targets.get(t.pending_id or "")
            if resolvers[t.pending_id] > 1:
                found.append({"type": "resolved_twice", "transfer_id": t.pending_id})
            if held is None or held.op != OP_PENDING or held.resolved_by != t.id:
                found.append({"type": "orphan_resolution", "transfer_id": t.id})
            elif (held.debit_account, held.credit_account, held.asset, held.amount,
                  held.debit_shard, held.credit_shard) != (t.debit_account, t.credit_account, t.asset,
                                                           t.pending_amount, t.debit_shard, t.credit_shard):
                found.append({"type": "resolution_differs_from_hold", "transfer_id": t.id})
            elif t.op == OP_POST and t.amount > held.amount:
                found.append({"type": "posted_more_than_held", "transfer_id": t.id})
            elif held.status != (POSTED if t.op == OP_POST else VOIDED) or \
                    (t.op == OP_POST and held.posted_amount != t.amount):
                found.append({"type": "pending_resolution_mismatch", "transfer_id": held.id})
        if t.op == OP_REVERSAL:
            original = targets.get(t.reversal_of or "")
            if reversals[t.reversal_of] > 1:
                found.append({"type": "reversed_twice", "transfer_id": t.reversal_of})
            if original is None or original.reversed_by != t.id:
                found.append({"type": "orphan_reversal", "transfer_id": t.id})
            elif original.op not in POSTED_OPS or (original.debit_account, original.credit_account,
                                                   original.asset, original.amount) != \
                    (t.credit_account, t.debit_account, t.asset, t.amount):
                found.append({"type": "reversal_differs_from_original", "transfer_id": t.id})
        for other in t.linked:
            partner = by_id.get(other)
            if partner is None or partner.linked != t.linked:
                found.append({"type": "missing_linked_leg", "transfer_id": t.id, "linked_id": other})
    unique: dict[str, dict[str, Any]] = {}
    for finding in found:
        unique.setdefault(repr(sorted(finding.items())), finding)
    return list(unique.values())


def incremental_check(store: Any, state: CheckState, now: datetime, household_cap: int = 0,
                      run_id: str = "check") -> dict[str, Any]:
    """One run of the incremental check (see the module docstring); returns the report."""
    checkpoint = state.begin(run_id, stamp(now), stamp(now + LEASE))
    since = checkpoint["cut"] if checkpoint else EPOCH
    cut = max(since, stamp(now - SETTLE_MARGIN))
    until = stamp(now + timedelta(days=1))
    read = store.transfers_between(since, until)
    window = [t for t in read if t.sort_key < cut]
    folded = fold_transfers(window)
    tail = fold_transfers(t for t in read if t.sort_key >= cut)
    suspects = [tuple(key) for key in (checkpoint or {}).get("suspects", [])]
    keys = sorted(set(folded) | set(tail) | set(suspects))
    states = state.account_states(keys)
    violations: list[dict[str, Any]] = []
    above_cap: list[dict[str, Any]] = []

    def violation(kind: str, **context: Any) -> None:
        violations.append({"type": kind, **context})

    base: dict[tuple[str, str], Totals] = {}
    for key in keys:
        known = states.get(key)
        at = known.at(since) if known else Totals()
        if at is None:  # written by a run whose checkpoint is not this one's: the state is unusable
            violation("check_state_mismatch", account=key[0], asset=key[1])
            at = known.totals  # type: ignore[union-attr]
        base[key] = at
    stored = store.get_balances(keys)
    expected = {key: _with(base[key], folded.get(key, Totals()), tail.get(key, Totals())) for key in keys}
    differing = [key for key in keys if stored.get(key, Totals()) != expected[key]]
    for _ in range(RECHECKS):
        if not differing:
            break
        # A transfer that committed while this run read: read its tail and those balances again.
        tail = fold_transfers(t for t in store.transfers_between(cut, until))
        stored.update(store.get_balances(differing))
        for key in differing:
            expected[key] = _with(base[key], folded.get(key, Totals()), tail.get(key, Totals()))
        differing = [key for key in differing if stored.get(key, Totals()) != expected[key]]
    for key in differing:
        violation("balance_mismatch", account=key[0], asset=key[1], expected=expected[key].as_dict(),
                  stored=stored.get(key, Totals()).as_dict())
    _limits([BalanceRow(key[0], key[1], stored[key]) for key in keys if key in stored], household_cap,
            violation, above_cap)

    # Per asset: the stored balances' sums are the checked sums, plus what the transfers since
    # moved, plus how far each touched item is from what they say.
    at_cut = {asset: dict(row) for asset, row in ((checkpoint or {}).get("assets") or _zero_sums()).items()}
    for (_, asset), totals in folded.items():
        _add_sums(at_cut, asset, totals)
    assets = {asset: dict(row) for asset, row in at_cut.items()}
    for key in keys:
        _add_sums(assets, key[1], tail.get(key, Totals()))
        _add_sums(assets, key[1], stored.get(key, Totals()))
        _add_sums(assets, key[1], expected[key], -1)
    for asset, sums in assets.items():
        if sums["debits_posted"] != sums["credits_posted"]:
            violation("unbalanced_posted", asset=asset, debits=sums["debits_posted"], credits=sums["credits_posted"])
        if sums["debits_pending"] != sums["credits_pending"]:
            violation("unbalanced_pending", asset=asset, debits=sums["debits_pending"],
                      credits=sums["credits_pending"])

    wanted = {t.pending_id for t in window if t.op in (OP_POST, OP_VOID) and t.pending_id} | \
        {t.reversal_of for t in window if t.op == OP_REVERSAL and t.reversal_of}
    targets = store.get_transfers(sorted(wanted)) if wanted else {}
    carried = list((checkpoint or {}).get("open", []))
    known_findings = {repr(sorted(f.items())) for f in carried}
    for finding in _transfer_findings(window, targets):
        if repr(sorted(finding.items())) not in known_findings:
            carried.append(finding)
    violations.extend(carried)

    state.save_account_states({key: AccountState(cut, _with(base[key], totals), since, base[key])
                               for key, totals in folded.items()})
    state.commit({"cut": cut, "assets": at_cut, "open": carried, "suspects": [list(key) for key in differing]},
                 run_id)
    report: dict[str, Any] = {"ok": not violations, "assets": assets, "violations": violations,
                              "transfers": len(read), "balances": len(keys), "mode": "incremental",
                              "since": since, "through": cut}
    if household_cap > 0:
        report["above_cap"] = above_cap
    return report


def audit(store: Any, state: CheckState, now: datetime, household_cap: int = 0,
          run_id: str = "audit") -> dict[str, Any]:
    """The full audit (two Scans: an operator's command), which also re-bases the incremental
    check: every account's state at a new cut is the fold of its transfers before it, the
    checked sums theirs, its balance findings the accounts re-verified next, its transfer
    findings the ones carried. Cost: one put per balance item (``make ledger-check``)."""
    state.begin(run_id, stamp(now), stamp(now + LEASE))
    transfers = list(store.scan_transfers())
    rows = list(store.scan_balances())
    report = reconcile(transfers, rows, household_cap=household_cap)
    cut = stamp(now - SETTLE_MARGIN)
    before = fold_transfers(t for t in transfers if t.sort_key < cut)
    states = {key: AccountState(cut, totals) for key, totals in before.items()}
    for row in rows:
        states.setdefault((row.physical, row.asset), AccountState(cut, Totals()))
    sums = _zero_sums()
    for (_, asset), totals in before.items():
        _add_sums(sums, asset, totals)
    suspects = [[v["account"], v["asset"]] for v in report["violations"] if v["type"] == "balance_mismatch"]
    carried = [v for v in report["violations"] if "transfer_id" in v]
    state.save_account_states(states)
    state.commit({"cut": cut, "assets": sums, "open": carried, "suspects": suspects}, run_id)
    return {**report, "mode": "full", "since": EPOCH, "through": cut}


def run_check(ledger: Any, reports: Any, now: Any = None, full: bool = False) -> dict[str, Any]:
    """The daily job and the admin endpoint (incremental), the CLI (``full``: the audit):
    check, keep the report for the admin endpoint, log and emit metrics — counts and violation
    types only."""
    from functions.core import clock

    moment = now or clock.now()
    report = {**(ledger.audit(reports, moment) if full else ledger.check_incremental(reports, moment)),
              "checked_at": clock.isoformat(moment)}
    reports.save(report)
    kinds = Counter(v["type"] for v in report["violations"])
    log = logger.info if report["ok"] else logger.error
    log("ledger reconciliation", extra={"ok": report["ok"], "violations": len(report["violations"]),
                                        "violation_types": dict(kinds), "transfers": report["transfers"],
                                        "balances": report["balances"]})
    count("LedgerViolations", len(report["violations"]))
    count("LedgerCheckRuns")
    return report
