"""What leaves rewards over HTTP. No openid, phone or 志愿汇 user id is shown: merchants are
shown by name, exchanges by amounts and references."""
from __future__ import annotations

from typing import Any

from functions.core import clock
from functions.ledger.model import PointKind
from functions.rewards.model import CatalogueItem, Conversion, Exchange, Merchant, Voucher


def asset_view(kind: PointKind) -> dict[str, Any]:
    return {
        "id": kind.code,
        "name": kind.name_zh,
        "unit": kind.unit,
        "transferable": kind.transferable,
        "redeemable": kind.redeemable,
        "expires_after_days": kind.expires_after_days,
        "convertible_to": {target: {"rate_num": num, "rate_den": den} for target, num, den in kind.convertible_to},
    }


def conversion_view(conversion: Conversion) -> dict[str, Any]:
    return {
        "id": conversion.id,
        "account": conversion.account,
        "from_asset": conversion.from_asset,
        "to_asset": conversion.to_asset,
        "debited": conversion.debited,
        "credited": conversion.credited,
        "transfer_ids": list(conversion.transfer_ids),
    }


def merchant_view(merchant: Merchant) -> dict[str, Any]:
    return {"id": merchant.id, "name": merchant.name, "kind": merchant.kind, "account_id": merchant.account_id,
            "created_at": clock.isoformat(merchant.created_at)}


def item_view(item: CatalogueItem, for_merchant: bool = False) -> dict[str, Any]:
    view = {
        "id": item.id,
        "merchant_id": item.merchant_id,
        "merchant_name": item.merchant_name,
        "title": item.title,
        "description": item.description,
        "asset": item.asset,
        "price": item.price,
        "stock_left": item.stock_left,
        "per_person_limit": item.per_person_limit,
        "valid_days": item.valid_days,
    }
    if for_merchant:
        view.update(stock=item.stock, outstanding=item.outstanding, redeemed=item.redeemed,
                    created_at=clock.isoformat(item.created_at))
    return view


def voucher_view(voucher: Voucher) -> dict[str, Any]:
    return {
        "id": voucher.id,
        "code": voucher.code,
        "status": voucher.status,
        "item_id": voucher.item_id,
        "merchant_id": voucher.merchant_id,
        "title": voucher.title,
        "asset": voucher.asset,
        "price": voucher.price,
        "created_at": clock.isoformat(voucher.created_at),
        "expires_at": clock.isoformat(voucher.expires_at),
        "closed_at": clock.isoformat(voucher.closed_at) if voucher.closed_at else None,
    }


def exchange_view(exchange: Exchange) -> dict[str, Any]:
    return {
        "id": exchange.id,
        "status": exchange.status,
        "asset": exchange.asset,
        "amount": exchange.amount,
        "coins": exchange.coins,
        "partner_ref": exchange.partner_ref,
        "failure_reason": exchange.failure_reason,
        "created_at": clock.isoformat(exchange.created_at),
        "resolved_at": clock.isoformat(exchange.resolved_at) if exchange.resolved_at else None,
    }
