"""Ledger entrypoints (API.md "Credits"): balances, statements, transfers, the ledger check.

Who may read a statement (``GET /v1/accounts/{id}/transfers``), as API.md says — "the owner,
household members, admin":
- the owner: the resident's own personal account;
- household members: the household account, and the personal accounts of the other residents
  of the same household (credits are kept per household; members spend for each other);
- admins: any account;
- nobody else. A non-admin asking for any other account gets 403 whether it exists or not, so
  the answer never tells a stranger which flats are registered. Ids that are not account ids
  at all are 404.
"""
from __future__ import annotations

from typing import Any

from chalice import Blueprint, Cron

from functions import bootstrap
from functions.core.errors import (Conflict, Forbidden, InsufficientCredits, InvalidState, LimitExceeded, NotFound,
                                   NotRelative, ValidationError)
from functions.core.validation import Bool, FieldError, Id, Schema, Str, amount_field, field_error
from functions.core.settings import get_settings
from functions.core.web import Auth, RequestContext, json_response, page_body, route
from functions.ledger.accounts import (POOL, RESIDENT, SYSTEM_ACCOUNTS, Account, household_account,
                                       is_account_id, parse_account, resident_account)
from functions.ledger.model import ASSET_CODES, DEFAULT_ASSET, AlreadyReversed
from functions.ledger.reconciliation import CheckRunning
from functions.ledger.service import MAX_MEMO
from functions.ledger.views import balances_view, transfer_view

ledger_bp = Blueprint(__name__)

_TARGET_KEYS = ("household_id", "resident_id", "pool")
_REMOTE_TARGET_KEYS = ("household_id", "resident_id", "self")
COMMUNITY_ID = r"[a-z][a-z0-9]*(-[a-z0-9]+)*"


def _one_target(to: dict[str, Any]) -> None:
    if to.get("community") is not None:
        # 通存通兑: a household or resident of another community, or the payer themself there.
        present = [key for key in _REMOTE_TARGET_KEYS if to.get(key) is not None]
        if len(present) != 1 or to.get("pool") is not None:
            raise FieldError("跨社区收款方须且只能是 household_id、resident_id、self 之一")
        if "self" in present and to["self"] is not True:
            raise FieldError("self 只能为 true")
        return
    if to.get("self") is not None:
        raise FieldError("self 须与 community 一起使用")
    present = [key for key in _TARGET_KEYS if key in to]
    if len(present) != 1:
        raise FieldError("收款方须且只能是 household_id、resident_id、pool 之一")
    if "pool" in to and to["pool"] is not True:
        raise FieldError("pool 只能为 true")


TRANSFER = Schema({
    "to": Schema({"household_id": Id(max_len=100, required=False), "resident_id": Id(max_len=100, required=False),
                  "pool": Bool(required=False),
                  "community": Str(max_len=20, pattern=COMMUNITY_ID, required=False, label="社区"),
                  "self": Bool(required=False)}, label="收款方", check=_one_target),
    # Which assets residents may transfer is the community's configuration (the ledger's point kinds).
    "asset": Str(choices=ASSET_CODES, required=False, label="积分种类"),
    "amount": amount_field(),
    "memo": Str(max_len=MAX_MEMO, min_len=0, required=False, label="备注"),
    "from": Str(choices=("household", "resident"), required=False, label="付款账户"),
}, name="TransferRequest", example={"to": {"pool": True}, "amount": 30, "memo": "捐给社区公益池"})


@route(ledger_bp, "/v1/accounts/me", auth=Auth.VERIFIED, response="MyAccounts")
def my_accounts(ctx: RequestContext) -> dict[str, Any]:
    """The caller's personal and household balances per asset."""
    caller, ledger = ctx.caller, bootstrap.ledger()
    return {
        "resident": {"id": caller.resident_id, "account": resident_account(caller.resident_id),
                     "balances": balances_view(ledger.balances(resident_account(caller.resident_id)))},
        "household": {"id": caller.household_id, "account": household_account(caller.household_id),
                      "balances": balances_view(ledger.balances(household_account(caller.household_id)))},
    }


def _account_from_path(raw: str) -> Account:
    """A resident id, a household id or a typed account id; 404 for anything else."""
    if is_account_id(raw):
        return parse_account(raw)
    try:
        if raw.startswith("res_"):
            return parse_account(resident_account(raw))
        if raw.startswith("hh_"):
            return parse_account(household_account(raw))
    except ValidationError:
        pass
    raise NotFound("账户不存在", {"account": "unknown"})


@route(ledger_bp, "/v1/accounts/{account_id}/transfers", auth=Auth.VERIFIED_OR_ADMIN, paged=True,
       path_params={"account_id": Str(max_len=128)}, errors=(Forbidden, NotFound), response="LedgerTransfer")
def account_transfers(ctx: RequestContext, account_id: str) -> dict[str, Any]:
    """A statement, newest first: the owner, household members and admins may read it."""
    account = _account_from_path(account_id)
    caller, owners = ctx.caller, bootstrap.account_owners()
    if not caller.is_admin:
        own = {resident_account(caller.resident_id), household_account(caller.household_id)}
        shares = account.kind == RESIDENT and owners.shares_household(caller, account.owner)
        if account.id not in own and not shares:
            raise Forbidden("只能查看本人或本户成员的账户流水")
    elif account.id not in SYSTEM_ACCOUNTS and not (owners.exists(account)
                                                     or bootstrap.ledger().account_seen(account.id)):
        raise NotFound("账户不存在", {"account": account.id})
    page = bootstrap.ledger().statement(account.id, ctx.limit, ctx.cursor)
    return page_body([transfer_view(record) for record in page.items], page.next_cursor)


@route(ledger_bp, "/v1/transfers", methods=["POST"], auth=Auth.VERIFIED, status=201, body=TRANSFER,
       idempotency="required", response="LedgerTransfer", responses={202: "PendingTransfer"},
       errors=(Forbidden, NotFound, Conflict, InsufficientCredits, LimitExceeded, NotRelative,
               (422, "RECEIVER_NOT_VERIFIED"), (422, "NO_DISTRICT")))
def create_transfer(ctx: RequestContext) -> Any:
    """Move credits to the own household, a declared relative's household or the community pool;
    with ``to.community``, to another community of the district (202: it completes there)."""
    from functions.core.ids import derived_id

    caller, body = ctx.caller, ctx.data
    asset = body.get("asset", DEFAULT_ASSET)
    if not bootstrap.ledger().point_kind(asset).transferable:
        raise field_error("asset", "该积分种类不可转让")
    to = body["to"]
    transfer_id = derived_id("tr", caller.resident_id, ctx.key)
    if to.get("community") is not None:
        if to["community"] != get_settings().community_id:
            # The district domain takes it from here, through the port bootstrap hands in.
            return json_response(bootstrap.cross_community().send(caller, transfer_id, body), 202)
        if to.get("self"):
            raise ValidationError("不能转给本社区的自己", {"fields": {"to": "self 只用于其他社区"}})
    debit = resident_account(caller.resident_id) if body.get("from") == "resident" \
        else household_account(caller.household_id)
    if to.get("pool"):
        credit = POOL
    else:
        kind = "household_id" if "household_id" in to else "resident_id"
        credit = bootstrap.account_owners().recipient(caller, kind, to[kind])
    record = bootstrap.ledger().transfer(
        transfer_id=transfer_id, debit=debit, credit=credit,
        asset=asset, amount=body["amount"],
        kind="donation" if credit == POOL else "transfer", memo=body.get("memo", ""), actor=caller.resident_id,
        # A resident moving credits into a household at its cap is told so (LIMIT_EXCEEDED
        # household_cap) rather than donating the excess without asking.
        cap_excess="refuse")
    return transfer_view(record)


REVERSAL = Schema({"reason": Str(max_len=200, label="冲正原因")}, name="ReversalRequest",
                  example={"reason": "重复结算，核实后冲正"})


@route(ledger_bp, "/v1/admin/transfers/{transfer_id}/reverse", methods=["POST"], auth=Auth.ADMIN, status=201,
       body=REVERSAL, path_params={"transfer_id": Str(max_len=200)}, response="LedgerTransfer",
       errors=(NotFound, AlreadyReversed, InvalidState, InsufficientCredits), admin_action="transfer.reverse")
def reverse_transfer(ctx: RequestContext, transfer_id: str) -> dict[str, Any]:
    """Reverse a posted transfer (a settlement: both of its legs) by a linked transfer the other
    way, with the admin as actor and the reason; never twice (409 ALREADY_REVERSED); refused
    with 422 INSUFFICIENT_CREDITS when the receiver has spent the credits meanwhile."""
    return transfer_view(bootstrap.ledger().reverse_transfer(transfer_id, ctx.data["reason"], ctx.caller.actor))


@route(ledger_bp, "/v1/admin/ledger/check", auth=Auth.ADMIN, response="LedgerCheckReport",
       admin_action="ledger.check", errors=(CheckRunning,))
def ledger_check(ctx: RequestContext) -> dict[str, Any]:
    """The latest report of the ledger check, with the time it ran (``checked_at``).

    The daily schedule (incremental) and ``make ledger-check`` (the full audit) write the
    report, this reads it. A stack that never ran a check runs the incremental one here, once:
    Queries of the transfers since the ledger began and the balances they touched, never a Scan
    (409 LEDGER_CHECK_RUNNING while another run holds the lease)."""
    from functions.ledger.reconciliation import run_check

    return bootstrap.ledger_checks().latest() or run_check(bootstrap.ledger(), bootstrap.ledger_checks())


@ledger_bp.schedule(Cron(0, 18, "*", "*", "?", "*"), name="ledger-check")
def scheduled_ledger_check(event: Any) -> dict[str, Any]:
    """Daily at 02:00 Beijing time: the incremental ledger check (the transfers since the last
    run and the accounts they touched; no Scan), kept for the admin endpoint, as a log line and
    metrics."""
    from functions.ledger.reconciliation import run_check

    report = run_check(bootstrap.ledger(), bootstrap.ledger_checks())
    return {"ok": report["ok"], "violations": len(report["violations"])}
