"""What leaves the ledger over HTTP: transfers as statements show them, balances per asset."""
from __future__ import annotations

from typing import Any, Mapping

from functions.ledger.model import DEFAULT_ASSET, Totals, TransferRecord


def transfer_view(record: TransferRecord) -> dict[str, Any]:
    """The statement / API shape (API.md "Credits")."""
    out: dict[str, Any] = {
        "id": record.id, "amount": record.amount, "asset": record.asset,
        "debit_account": record.debit_account, "credit_account": record.credit_account,
        "kind": record.kind, "status": record.status, "memo": record.memo, "created_at": record.created_at,
    }
    if record.request_id:
        out["request_id"] = record.request_id
    if record.pending_id:
        out["pending_id"] = record.pending_id
    if record.posted_amount is not None:
        out["posted_amount"] = record.posted_amount
    if record.reversal_of:
        out["reversal_of"] = out["reverses"] = record.reversal_of
    if record.reversed_by:
        out["reversed_by"] = record.reversed_by
    return out


def balances_view(balances: Mapping[str, Totals]) -> dict[str, dict[str, int]]:
    """asset -> available / posted / pending; ``service`` always present.

    ``pending`` is what open holds keep from the account, as a positive amount (API.md), so
    that ``available = posted - pending``; credits on their way in (a hold in favour of the
    account) are not spendable and not shown."""
    assets = [DEFAULT_ASSET] + sorted(asset for asset in balances if asset != DEFAULT_ASSET)
    out = {}
    for asset in assets:
        totals = balances.get(asset, Totals())
        out[asset] = {"available": totals.available, "posted": totals.posted, "pending": totals.debits_pending}
    return out
