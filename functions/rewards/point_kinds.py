"""The point kinds (assets) of the time bank.

Every ledger amount names one of these. Amounts are integer minutes for the time assets and
integer points for the others; the ledger treats both as integers of their own asset and
never converts between assets inside a transfer.
"""
from __future__ import annotations

from dataclasses import dataclass


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
