"""What leaves over HTTP about cross-community transfers: ids and figures, never a phone or its hash."""
from __future__ import annotations

from typing import Any

from functions.core import clock
from functions.district.model import FAILED, KIND_OUT, Outgoing


def outgoing_view(transfer: Outgoing) -> dict[str, Any]:
    return {
        "id": transfer.id,
        "status": transfer.status,
        "kind": KIND_OUT,
        "amount": transfer.amount,
        "asset": transfer.asset,
        "memo": transfer.memo,
        "debit_account": transfer.payer_account,
        "to": transfer.target.view(),
        "created_at": clock.isoformat(transfer.created_at),
        "updated_at": clock.isoformat(transfer.updated_at) if transfer.updated_at else None,
        "failure_code": transfer.failure_code if transfer.status == FAILED else None,
        "failure_details": transfer.failure_details if transfer.status == FAILED else {},
    }


def local_transfer_view(view: dict[str, Any]) -> dict[str, Any]:
    """A transfer of this community's own ledger, in the same shape (it never fails: refused
    local transfers are not stored)."""
    return {**view, "to": None, "failure_code": None, "failure_details": {}}
