"""Rewards entrypoints (API.md "Point kinds and conversion", "Merchants and vouchers",
"Exchange with 志愿汇"): the routes, the expiry schedules (points, vouchers, exchanges) and the
consumer that asks 志愿汇.

Beyond API.md: ``POST /v1/partners/zyh/answers`` takes the partner's own (HMAC-signed)
notification of an answer; 422 ``STOCK_BELOW_OUTSTANDING`` when a merchant's new stock is
below the vouchers outstanding; 422 ``EXCHANGE_UNAVAILABLE`` in a community without 志愿汇.
Someone else's voucher or exchange is 404, as if it did not exist.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from chalice import Blueprint, Cron, Rate

from functions import bootstrap
from functions.core.errors import (AlreadyExists, Conflict, Forbidden, IdempotencyMismatch, InsufficientCredits,
                                   LimitExceeded, NotFound, Unauthenticated, UpstreamError)
from functions.core.events import parse_event
from functions.core.messaging import QueueSpec, register_queue
from functions.core.validation import Day, FieldError, Int, Schema, Str, amount_field
from functions.core.web import Auth, RequestContext, decode_cursor, encode_cursor, json_response, page_body, route
from functions.ledger.model import ASSET_CODES
from functions.ledger.views import balances_view, transfer_view
from functions.rewards.model import (ACCEPTED, EXCHANGE_REQUESTED, MAX_PER_PERSON, MAX_PRICE, MAX_STOCK,
                                     MAX_VALID_DAYS, MERCHANT_KINDS, REFUSED, ZYH_ASSETS, AgeRestricted,
                                     AlreadyRedeemed, ExchangeUnavailable, NotConvertible, NotRedeemable, OutOfStock,
                                     StockBelowOutstanding, VoucherExpired, VoucherStateError)
from functions.rewards.service import answer_from_message
from functions.rewards.views import (asset_view, conversion_view, exchange_view, item_view, merchant_view,
                                     voucher_view)

ZYH_EXCHANGES = register_queue(QueueSpec("zyh-exchanges", purpose="exchange.requested → ask 志愿汇, post or void the hold",
                                         events=(EXCHANGE_REQUESTED,), consumer_timeout_seconds=60))
ANSWERS_PATH = "/v1/partners/zyh/answers"

rewards_bp = Blueprint(__name__)

ASSET = Str(choices=ASSET_CODES, label="积分种类")
FROM = Str(choices=("household", "resident"), required=False, label="付款账户")

CONVERSION = Schema({
    "from_asset": ASSET, "to_asset": ASSET, "amount": amount_field(), "from": FROM,
}, name="ConversionRequest", example={"from_asset": "green", "to_asset": "service", "amount": 100})
NEW_MERCHANT = Schema({
    "name": Str(max_len=40, label="商户名称"),
    "kind": Str(choices=MERCHANT_KINDS, label="商户类型"),
    "owner_openid": Str(max_len=64, pattern=r"[A-Za-z0-9_\-]{1,64}", label="店主微信 openid"),
}, name="NewMerchant", example={"name": "社区便民超市", "kind": "supermarket", "owner_openid": "merchant-demo"})
SETTLEMENT = Schema({
    "asset": ASSET, "amount": amount_field(), "memo": Str(max_len=200, min_len=0, required=False, label="备注"),
}, name="MerchantSettlement", example={"asset": "service", "amount": 60, "memo": "十二月回购"})
_ITEM_FIELDS = {
    "title": Str(max_len=60, label="名称"),
    "description": Str(max_len=500, min_len=0, required=False, label="说明"),
    "asset": ASSET,
    "price": Int(min=1, max=MAX_PRICE, label="价格"),
    "stock": Int(min=0, max=MAX_STOCK, label="库存"),
    "per_person_limit": Int(min=1, max=MAX_PER_PERSON, label="每人限兑"),
    "valid_days": Int(min=1, max=MAX_VALID_DAYS, label="有效天数"),
}
NEW_ITEM = Schema(_ITEM_FIELDS, name="NewCatalogueItem", example={
    "title": "环保购物袋", "description": "可重复使用", "asset": "service", "price": 30, "stock": 20,
    "per_person_limit": 2, "valid_days": 30})


def _something(changes: dict[str, Any]) -> None:
    if not changes:
        raise FieldError("至少修改一项")


ITEM_CHANGES = Schema({name: replace(rule, required=False) for name, rule in _ITEM_FIELDS.items()},
                      name="CatalogueItemChanges", check=_something, example={"stock": 30, "price": 25})
REDEMPTION = Schema({"from": FROM}, name="Redemption")
CODE = Schema({"code": Str(max_len=64, label="券码")}, name="VoucherCode", example={"code": "8K3M9Q2W7X4T6R1V5B0N"})
EXCHANGE = Schema({
    "asset": Str(choices=ZYH_ASSETS, label="积分种类"),
    "amount": amount_field(),
    "zyh_user_id": Str(max_len=64, pattern=r"[A-Za-z0-9_\-]{1,64}", label="志愿汇账号"),
    "from": FROM,
}, name="ZyhExchangeRequest", example={"asset": "volunteer", "amount": 60, "zyh_user_id": "zyh-10086"})
RECONCILE_QUERY = Schema({"date": Day(label="日期")})
STATEMENT_QUERY = Schema({"limit": Int(min=1, max=100, required=False, label="数量"),
                          "cursor": Str(max_len=2000, required=False, label="翻页标记")})
PARTNER_ANSWER = Schema({
    "exchange_id": Str(max_len=128, label="兑换编号"),
    "status": Str(choices=(ACCEPTED, REFUSED), label="结果"),
    "ref": Str(max_len=128, required=False, label="志愿汇流水号"),
    "reason": Str(max_len=200, required=False, label="原因"),
}, name="ZyhAnswer", example={"exchange_id": "zx_x", "status": "accepted", "ref": "zyh-20261201-0001"})


# --- point kinds and conversion ---------------------------------------------------------------------

@route(rewards_bp, "/v1/assets", auth=Auth.LOGIN, response="AssetList")
def list_assets(ctx: RequestContext) -> dict[str, Any]:
    """The community's point kinds: unit, transferable, redeemable, expiry and conversions."""
    return {"items": [asset_view(kind) for kind in bootstrap.points().kinds()]}


@route(rewards_bp, "/v1/conversions", methods=["POST"], auth=Auth.VERIFIED, status=201, body=CONVERSION,
       idempotency="required", response="Conversion",
       errors=(NotConvertible, InsufficientCredits, AgeRestricted, Conflict))
def convert(ctx: RequestContext) -> dict[str, Any]:
    """Convert points at the community's rate: two linked ledger legs, both or neither."""
    body = ctx.data
    return conversion_view(bootstrap.points().convert(ctx.caller, body["from_asset"], body["to_asset"], body["amount"],
                                                      body.get("from") == "resident", ctx.key))


# --- merchants ----------------------------------------------------------------------------------------

@route(rewards_bp, "/v1/admin/merchants", methods=["POST"], auth=Auth.ADMIN, status=201, body=NEW_MERCHANT,
       response="Merchant", responses={200: "Merchant"}, errors=(AlreadyExists, Conflict),
       admin_action="merchant.create")
def create_merchant(ctx: RequestContext) -> Any:
    """Add a merchant with its own ledger account; its owner's login gets the role merchant (again: 200)."""
    body = ctx.data
    merchant, created = bootstrap.merchants().create_merchant(ctx.caller.actor, body["name"], body["kind"],
                                                              body["owner_openid"])
    return merchant_view(merchant) if created else json_response(merchant_view(merchant), 200)


@route(rewards_bp, "/v1/admin/merchants/{merchant_id}/settle", methods=["POST"], auth=Auth.ADMIN, status=201,
       body=SETTLEMENT, idempotency="required", response="LedgerTransfer",
       errors=(NotFound, InsufficientCredits, Conflict), admin_action="merchant.settle")
def settle_merchant(ctx: RequestContext, merchant_id: str) -> dict[str, Any]:
    """The community fund buys a merchant's credits back (merchant account → pool)."""
    body = ctx.data
    return transfer_view(bootstrap.merchants().settle(ctx.caller.actor, merchant_id, body["asset"], body["amount"],
                                                      body.get("memo", ""), ctx.key))


@route(rewards_bp, "/v1/merchant/statement", auth=Auth.MERCHANT, query=STATEMENT_QUERY, response="MerchantStatement",
       errors=(Forbidden,))
def merchant_statement(ctx: RequestContext) -> dict[str, Any]:
    """The merchant account's balance and transfers, newest first."""
    cursor = decode_cursor(ctx.params.get("cursor"))
    merchant, balances, page = bootstrap.merchants().statement(ctx.caller, ctx.params.get("limit", 20), cursor)
    return {"merchant": merchant_view(merchant), "account_id": merchant.account_id,
            "balances": balances_view(balances), "items": [transfer_view(record) for record in page.items],
            "next_cursor": encode_cursor(page.next_cursor)}


@route(rewards_bp, "/v1/merchant/items", methods=["POST"], auth=Auth.MERCHANT, status=201, body=NEW_ITEM,
       idempotency="optional", response="MerchantCatalogueItem", errors=(Forbidden, NotRedeemable, Conflict))
def add_item(ctx: RequestContext) -> dict[str, Any]:
    """Offer an item in the catalogue: asset, price, stock, per-person limit, validity."""
    return item_view(bootstrap.merchants().add_item(ctx.caller, ctx.data, ctx.key), for_merchant=True)


@route(rewards_bp, "/v1/merchant/items/{item_id}", methods=["PUT"], auth=Auth.MERCHANT, body=ITEM_CHANGES,
       response="MerchantCatalogueItem", errors=(Forbidden, NotRedeemable, StockBelowOutstanding, Conflict))
def change_item(ctx: RequestContext, item_id: str) -> dict[str, Any]:
    """Change an item; only the fields given change, and stock never goes below the vouchers outstanding."""
    return item_view(bootstrap.merchants().change_item(ctx.caller, item_id, ctx.data), for_merchant=True)


@route(rewards_bp, "/v1/merchant/vouchers/redeem", methods=["POST"], auth=Auth.MERCHANT, body=CODE,
       response="Voucher", errors=(Forbidden, NotFound, AlreadyRedeemed, VoucherExpired, VoucherStateError, Conflict))
def redeem_code(ctx: RequestContext) -> dict[str, Any]:
    """核销: the voucher's hold is posted to the merchant's account, exactly once."""
    return voucher_view(bootstrap.merchants().redeem_code(ctx.caller, ctx.data["code"]))


# --- catalogue and vouchers ---------------------------------------------------------------------------

@route(rewards_bp, "/v1/rewards/items", auth=Auth.VERIFIED, paged=True, response="CatalogueItem")
def catalogue(ctx: RequestContext) -> dict[str, Any]:
    """The catalogue of every merchant, newest first."""
    items, last_key = bootstrap.merchants().catalogue(ctx.limit, ctx.cursor)
    return page_body([item_view(item) for item in items], last_key)


@route(rewards_bp, "/v1/rewards/items/{item_id}/redeem", methods=["POST"], auth=Auth.VERIFIED, status=201,
       body=REDEMPTION, idempotency="required", response="Voucher",
       errors=(OutOfStock, InsufficientCredits, LimitExceeded, NotRedeemable, AgeRestricted, Conflict))
def redeem(ctx: RequestContext, item_id: str) -> dict[str, Any]:
    """Redeem an item: the price is held on the payer and a voucher with a code is issued."""
    return voucher_view(bootstrap.merchants().redeem(ctx.caller, item_id, ctx.data.get("from") == "resident", ctx.key))


@route(rewards_bp, "/v1/vouchers/mine", auth=Auth.VERIFIED, paged=True, response="Voucher")
def my_vouchers(ctx: RequestContext) -> dict[str, Any]:
    """The caller's vouchers, newest first: issued, redeemed, cancelled or expired."""
    vouchers, last_key = bootstrap.merchants().mine(ctx.caller, ctx.limit, ctx.cursor)
    return page_body([voucher_view(voucher) for voucher in vouchers], last_key)


@route(rewards_bp, "/v1/vouchers/{voucher_id}/cancel", methods=["POST"], auth=Auth.VERIFIED, response="Voucher",
       errors=(VoucherStateError,))
def cancel_voucher(ctx: RequestContext, voucher_id: str) -> dict[str, Any]:
    """The holder cancels an issued voucher: the hold is voided and the stock comes back."""
    return voucher_view(bootstrap.merchants().cancel(ctx.caller, voucher_id))


# --- 志愿汇 --------------------------------------------------------------------------------------------

@route(rewards_bp, "/v1/exchanges/zyh", methods=["POST"], auth=Auth.VERIFIED, status=202, body=EXCHANGE,
       idempotency="required", response="ZyhExchange",
       errors=(InsufficientCredits, ExchangeUnavailable, IdempotencyMismatch, Conflict))
def request_exchange(ctx: RequestContext) -> dict[str, Any]:
    """Exchange credits for 志愿汇 coins: held to the clearing account until the partner answers."""
    body = ctx.data
    return exchange_view(bootstrap.exchanges().request(ctx.caller, body["asset"], body["amount"], body["zyh_user_id"],
                                                       body.get("from") == "resident", ctx.key))


@route(rewards_bp, "/v1/exchanges/{exchange_id}", auth=Auth.VERIFIED_OR_ADMIN, response="ZyhExchange")
def get_exchange(ctx: RequestContext, exchange_id: str) -> dict[str, Any]:
    """An exchange, to its owner or an admin: pending, then confirmed or failed."""
    return exchange_view(bootstrap.exchanges().get(ctx.caller, exchange_id))


@route(rewards_bp, "/v1/admin/exchanges/reconcile", auth=Auth.ADMIN, query=RECONCILE_QUERY,
       response="ZyhReconciliation", errors=(UpstreamError,), admin_action="exchanges.reconcile")
def reconcile_exchanges(ctx: RequestContext) -> dict[str, Any]:
    """One day (Asia/Shanghai) of our clearing account against the partner's statement: every mismatch."""
    return bootstrap.exchanges().reconcile(ctx.params["date"].isoformat())


@route(rewards_bp, ANSWERS_PATH, methods=["POST"], auth=Auth.PUBLIC, body=PARTNER_ANSWER, response="ZyhAnswerEffect",
       errors=(Unauthenticated, Conflict))
def partner_answer(ctx: RequestContext) -> dict[str, Any]:
    """志愿汇's notification of an answer (signed): applied once, recorded whenever it comes."""
    from functions.rewards.zyh import verify

    verify(bootstrap.zyh_key()(), ctx.headers, "POST", ANSWERS_PATH, ctx.raw_body(), time.time())
    effect = bootstrap.exchanges().apply_answer(answer_from_message(ctx.data))
    return {"exchange_id": ctx.data["exchange_id"], "effect": effect}


# --- schedules and the queue ---------------------------------------------------------------------------

@rewards_bp.schedule(Cron(10, 16, "*", "*", "?", "*"), name="expire-points")
def expire_points(event: Any) -> dict[str, Any]:
    """Daily at 00:10 Beijing time: the credits that expire today go back to issuance."""
    return bootstrap.points().expire_due()


@rewards_bp.schedule(Rate(10, unit=Rate.MINUTES), name="expire-vouchers")
def expire_vouchers(event: Any) -> dict[str, Any]:
    """Unredeemed vouchers past their validity: the hold is voided and the stock comes back."""
    return {"expired": bootstrap.merchants().expire_vouchers()}


@rewards_bp.schedule(Rate(1, unit=Rate.MINUTES), name="expire-exchanges")
def expire_exchanges(event: Any) -> dict[str, Any]:
    """Exchanges 志愿汇 has not answered within the timeout fail: the credits come back."""
    return {"failed": bootstrap.exchanges().expire_due()}


@rewards_bp.on_sqs_message(queue=ZYH_EXCHANGES.name, batch_size=ZYH_EXCHANGES.batch_size, name="zyh-exchanges")
def zyh_exchanges(event: Any) -> dict[str, Any]:
    """Requested exchanges → ask 志愿汇 (idempotent by exchange id) and apply its answer."""
    from functions.core.queue_consumer import process_queue_batch

    service = bootstrap.exchanges()
    return process_queue_batch(event.to_dict(), event.context, ZYH_EXCHANGES.logical_name,
                               lambda message: service.process(parse_event(message)))
