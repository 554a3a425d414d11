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

Scans are fine here: it runs from the admin endpoint, the CLI and a daily schedule, never on a
resident's request path. Violations name transfer and account ids only (pseudonymous), never
personal data.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable

from functions.core.errors import ValidationError
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
    for row in balances:
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


def check_store(store: Any, household_cap: int = 0) -> dict[str, Any]:
    """Reconcile everything a store holds (two Scans)."""
    return reconcile(store.scan_transfers(), store.scan_balances(), household_cap=household_cap)


def run_check(ledger: Any, reports: Any, now: Any = None) -> dict[str, Any]:
    """The daily job (and the CLI): reconcile, keep the report for the admin endpoint, log and
    emit metrics — counts and violation types only."""
    from functions.core import clock

    report = {**ledger.check(), "checked_at": clock.isoformat(now or clock.now())}
    reports.save(report)
    kinds = Counter(v["type"] for v in report["violations"])
    log = logger.info if report["ok"] else logger.error
    log("ledger reconciliation", extra={"ok": report["ok"], "violations": len(report["violations"]),
                                        "violation_types": dict(kinds), "transfers": report["transfers"],
                                        "balances": report["balances"]})
    count("LedgerViolations", len(report["violations"]))
    count("LedgerCheckRuns")
    return report
