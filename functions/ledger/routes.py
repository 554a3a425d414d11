"""Ledger HTTP entrypoints (API.md "Credits"): parse, authorize, call the ledger, shape.

Who may read a statement (``GET /v1/accounts/{id}/transfers``), as API.md says — "the owner,
household members, admin":
- the owner: the resident's own personal account;
- household members: the household account, and the personal accounts of the other residents
  of the same household (credits are kept per household; members spend for each other);
- admins: any account;
- nobody else. A non-admin asking for any other account gets 403 whether it exists or not:
  household ids are derived from addresses, so a 404/403 difference would tell strangers
  which flats are registered. Ids that are not account ids at all are 404.
"""
from __future__ import annotations

from typing import Any

from chalice import Blueprint

from functions.core.errors import Forbidden, NotFound, ValidationError
from functions.core.ids import derived_id
from functions.core.validation import Field, Str, amount_field
from functions.core.web import Auth, RequestContext, page_body, route
from functions.ledger.accounts import (HOUSEHOLD, POOL, RESIDENT, SYSTEM_ACCOUNTS, Account, household_account,
                                       is_account_id, parse_account, resident_account)
from functions.ledger.ledger import MAX_MEMO
from functions.ledger.model import Totals
from functions.ledger.service import get_ledger
from functions.rewards.point_kinds import ASSET_CODES, DEFAULT_ASSET, POINT_KINDS

ledger_bp = Blueprint(__name__)

TRANSFERABLE_ASSETS = tuple(code for code in ASSET_CODES if POINT_KINDS[code].transferable)


class _Target(Field):
    """``to``: exactly one of household_id / resident_id / pool (identity's parser decides)."""
    required = True

    def clean(self, value: Any) -> dict[str, Any]:
        from functions.identity.relations import parse_target

        try:
            parse_target(value)
        except ValidationError as error:
            raise ValueError(error.details.get("fields", {}).get("to", "is invalid")) from None
        return value


class _Asset(Field):
    required = False

    def clean(self, value: Any) -> str:
        if not isinstance(value, str) or value not in ASSET_CODES:
            raise ValueError(f"must be one of {', '.join(TRANSFERABLE_ASSETS)}")
        if value not in TRANSFERABLE_ASSETS:
            raise ValueError("is not transferable")
        return value


TRANSFER_BODY = {
    "to": _Target(),
    "asset": _Asset(),
    "amount": amount_field(),
    "memo": Str(max_len=MAX_MEMO, min_len=0, required=False),
    "from": Str(choices=("household", "resident"), required=False),
}


def balances_view(balances: dict[str, Totals]) -> dict[str, dict[str, int]]:
    """asset -> available / posted / pending; ``service`` always present."""
    assets = [DEFAULT_ASSET] + sorted(asset for asset in balances if asset != DEFAULT_ASSET)
    out = {}
    for asset in assets:
        totals = balances.get(asset, Totals())
        out[asset] = {"available": totals.available, "posted": totals.posted, "pending": totals.pending}
    return out


@route(ledger_bp, "/v1/accounts/me", auth=Auth.VERIFIED)
def my_accounts(ctx: RequestContext) -> dict[str, Any]:
    caller = ctx.caller
    ledger = get_ledger()
    return {
        "resident": {"id": caller.resident_id,
                     "account": resident_account(caller.resident_id),
                     "balances": balances_view(ledger.balances(resident_account(caller.resident_id)))},
        "household": {"id": caller.household_id,
                      "account": household_account(caller.household_id),
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


def _member_of_callers_household(caller: Any, account: Account) -> bool:
    if account.kind != RESIDENT:
        return False
    from functions.identity.directory import get_directory

    return get_directory().has_member(caller.household_id, account.owner)


def _account_exists(account: Account) -> bool:
    if account.id in SYSTEM_ACCOUNTS:
        return True
    from functions.identity.domain import Resident
    from functions.identity.wiring import get_identity_service

    if account.kind == RESIDENT:
        return isinstance(get_identity_service().find_member(account.owner), Resident)
    if account.kind == HOUSEHOLD:
        return get_identity_service().store.get_household(account.owner) is not None
    return get_ledger().account_seen(account.id)


@route(ledger_bp, "/v1/accounts/{account_id}/transfers", auth=Auth.VERIFIED_OR_ADMIN)
def account_transfers(ctx: RequestContext, account_id: str) -> dict[str, Any]:
    account = _account_from_path(account_id)
    caller = ctx.caller
    if not caller.is_admin:
        own = {resident_account(caller.resident_id), household_account(caller.household_id)}
        if account.id not in own and not _member_of_callers_household(caller, account):
            raise Forbidden("只能查看本人或本户成员的账户流水")
    elif not _account_exists(account):
        raise NotFound("账户不存在", {"account": account.id})
    limit, cursor = ctx.page()
    page = get_ledger().statement(account.id, limit, cursor)
    return page_body([record.public() for record in page.items], page.next_cursor)


@route(ledger_bp, "/v1/transfers", methods=["POST"], auth=Auth.VERIFIED, status=201)
def create_transfer(ctx: RequestContext) -> dict[str, Any]:
    from functions.identity.relations import transfer_target

    caller = ctx.caller
    key = ctx.idempotency_key()
    body = ctx.body(TRANSFER_BODY)
    if body.get("from") == "resident":
        debit = resident_account(caller.resident_id)
    else:
        debit = household_account(caller.household_id)
    credit = transfer_target(caller, body["to"])
    record = get_ledger().transfer(
        transfer_id=derived_id("tr", caller.resident_id, key), debit=debit, credit=credit,
        asset=body.get("asset", DEFAULT_ASSET), amount=body["amount"],
        kind="donation" if credit == POOL else "transfer", memo=body.get("memo", ""),
        actor=caller.resident_id)
    return record.public()


@route(ledger_bp, "/v1/admin/ledger/check", auth=Auth.ADMIN)
def ledger_check(ctx: RequestContext) -> dict[str, Any]:
    return get_ledger().check()

