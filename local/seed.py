"""Demo data for the local community, written only through the product's own code paths:
the category catalogue's seeding and, for residents, the HTTP API exactly as the mini-program
and an admin would call it. Every step checks before it writes, so seeding twice is harmless.
"""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("local.seed")

@dataclass(frozen=True)
class DemoResident:
    openid: str
    name: str
    phone: str
    building: str
    unit: str
    room: str
    birth_year: int


# Invented people at invented addresses: two households, so a demo has a requester and a helper.
DEMO_RESIDENTS = (
    DemoResident("demo-resident-a", "演示居民甲", "13800000001", "1", "1", "101", 1965),
    DemoResident("demo-resident-b", "演示居民乙", "13800000002", "2", "1", "202", 1990),
)


# 通存通兑: the district's second community has one verified demo household: a parent of
# 演示居民甲's household, and 演示居民乙 who moved there (same phone: sending to oneself works).
EAST_RESIDENTS = (
    DemoResident("demo-east-resident", "演示东居民", "13900000001", "3", "1", "301", 1948),
    DemoResident("demo-east-mover", "演示居民乙", "13800000002", "3", "1", "301", 1990),
)
DEMO_RESIDENTS_BY_COMMUNITY = {"demo": DEMO_RESIDENTS, "demo-east": EAST_RESIDENTS}


def demo_residents_of(community_id: str) -> tuple[DemoResident, ...]:
    return DEMO_RESIDENTS_BY_COMMUNITY.get(community_id, DEMO_RESIDENTS)


def seed_categories() -> str:
    from functions import bootstrap

    return f"categories: {bootstrap.catalog().seed()} written"


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def call_api(base_url: str, method: str, path: str, body: Any = None,
             token: str | None = None, timeout: float = 30, idempotency_key: str | None = None,
             headers: dict[str, str] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if idempotency_key:
        request.add_header("Idempotency-Key", idempotency_key)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        raise ApiError(exc.code, parsed) from None
    return json.loads(raw) if raw else None


def login(base_url: str, openid: str) -> dict[str, Any]:
    """The local stage's fake WeChat accepts ``dev-<openid>``."""
    return call_api(base_url, "POST", "/v1/auth/wechat", {"code": f"dev-{openid}"})


def seed_demo_residents(base_url: str, admin_openid: str,
                        residents: tuple[DemoResident, ...] = DEMO_RESIDENTS) -> str:
    try:
        admin_token = login(base_url, admin_openid)["token"]
    except ApiError as exc:
        return f"demo residents: login not available yet ({exc.status}), skipped"
    states = []
    for person in residents:
        session = login(base_url, person.openid)
        resident = session.get("resident")
        if resident is None:
            resident = call_api(base_url, "POST", "/v1/residents", {
                "name": person.name, "phone": person.phone, "building": person.building,
                "unit": person.unit, "room": person.room, "birth_year": person.birth_year,
            }, token=session["token"])
        if resident["status"] == "pending":
            resident = call_api(base_url, "POST", f"/v1/admin/residents/{resident['id']}/verify",
                                {}, token=admin_token)
        states.append(f"{person.openid}={resident['status']}")
    return "demo residents: " + ", ".join(states)


# The staff dashboard's verification queue (/admin/) needs someone waiting in it: registered,
# never verified by the seed (an admin verifying them in the dashboard is the demo).
DEMO_PENDING_RESIDENT = DemoResident("demo-resident-pending", "演示居民丙", "13800000003", "5", "2", "502", 1978)


def seed_pending_resident(base_url: str, person: DemoResident = DEMO_PENDING_RESIDENT) -> str:
    """Registers ``person`` through the API and leaves them as they are (pending, unless an
    admin already decided)."""
    session = login(base_url, person.openid)
    resident = session.get("resident")
    if resident is None:
        resident = call_api(base_url, "POST", "/v1/residents", {
            "name": person.name, "phone": person.phone, "building": person.building,
            "unit": person.unit, "room": person.room, "birth_year": person.birth_year,
        }, token=session["token"])
    return f"pending resident: {person.openid}={resident['status']}"


# The demo merchant of API.md: its owner logs in with ``dev-merchant-demo``.
DEMO_MERCHANT = {"name": "示范便民超市", "kind": "supermarket", "owner_openid": "merchant-demo"}
DEMO_ITEMS = (
    ("demo-item-bag", {"title": "环保购物袋", "description": "可重复使用的帆布袋", "asset": "service", "price": 30,
                       "stock": 50, "per_person_limit": 2, "valid_days": 30}),
    ("demo-item-detergent", {"title": "洗衣液一瓶", "description": "绿色生活积分兑换", "asset": "green", "price": 200,
                             "stock": 20, "per_person_limit": 1, "valid_days": 14}),
)
# Points for the first demo resident to convert, redeem and exchange with (志愿时, 绿色生活).
DEMO_POINTS = (("volunteer", 120), ("green", 500))


def seed_demo_merchant(base_url: str, admin_openid: str) -> str:
    """The merchant and its two catalogue items, through the HTTP API (idempotent: the merchant
    is keyed by its owner, the items by their Idempotency-Keys)."""
    admin_token = login(base_url, admin_openid)["token"]
    merchant = call_api(base_url, "POST", "/v1/admin/merchants", DEMO_MERCHANT, token=admin_token)
    owner_token = login(base_url, DEMO_MERCHANT["owner_openid"])["token"]
    titles = []
    for key, item in DEMO_ITEMS:
        titles.append(call_api(base_url, "POST", "/v1/merchant/items", item, token=owner_token,
                               idempotency_key=key)["title"])
    return f"demo merchant: {merchant['name']} (owner {DEMO_MERCHANT['owner_openid']}), items: {', '.join(titles)}"


def seed_demo_points(base_url: str, resident: DemoResident = DEMO_RESIDENTS[0]) -> str:
    """Issuance grants to a demo resident's personal account, through the ledger (ids derived
    from the resident: granted once however often this runs)."""
    from functions import bootstrap
    from functions.core.ids import derived_id
    from functions.ledger.accounts import ISSUANCE, resident_account

    me = login(base_url, resident.openid).get("resident")
    if me is None or me.get("status") != "verified":
        return "demo points: skipped (no verified demo resident)"
    account = resident_account(me["id"])
    for asset, amount in DEMO_POINTS:
        bootstrap.ledger().transfer(derived_id("tr", "demo-points", account, asset), ISSUANCE, account, asset, amount,
                                    kind="grant", memo="演示积分")
    return f"demo points: {resident.openid} " + ", ".join(f"{asset} {amount}" for asset, amount in DEMO_POINTS)


DEMO_ACTIVITY_TITLE = "社区环境清洁日（演示）"


def seed_demo_activity(base_url: str, admin_openid: str) -> str:
    """One published community activity (tomorrow 09:00–11:00, 志愿时 per hour attended, insured),
    through the admin API; skipped while an upcoming one of that title exists."""
    from datetime import datetime, timedelta, timezone

    try:
        admin_token = login(base_url, admin_openid)["token"]
    except ApiError as exc:
        return f"demo activity: login not available yet ({exc.status}), skipped"
    upcoming = call_api(base_url, "GET", "/v1/activities?status=upcoming&limit=100", token=admin_token)["items"]
    existing = next((a for a in upcoming if a["title"] == DEMO_ACTIVITY_TITLE), None)
    if existing is not None:
        return f"demo activity: {existing['id']} (already published)"
    china = timezone(timedelta(hours=8))
    day = (datetime.now(china) + timedelta(days=1)).date()
    start = datetime(day.year, day.month, day.day, 9, 0, tzinfo=china)
    body = {"title": DEMO_ACTIVITY_TITLE, "description": "清理楼道与绿地，工具由物业提供", "place": "社区中心广场",
            "start_at": start.isoformat(), "end_at": (start + timedelta(hours=2)).isoformat(), "capacity": 30,
            "asset": "volunteer", "award": {"mode": "per_hour", "minutes": 60}, "requires_insurance": True}
    created = call_api(base_url, "POST", "/v1/admin/activities", body, token=admin_token,
                       headers={"Idempotency-Key": f"demo-activity-{day.isoformat()}"})
    return f"demo activity: {created['id']} published"


def seed_district_relatives(urls: dict[str, str]) -> str:
    """The first demo household of each community declares the first of every other one
    relatives (each side in its own community, as API.md asks); declaring again is a no-op."""
    households: dict[str, tuple[str, str]] = {}
    for community, url in urls.items():
        first = demo_residents_of(community)[0]
        session = login(url, first.openid)
        if session.get("resident") is None:
            return f"district relatives: {first.openid} not registered in {community}, skipped"
        households[community] = (session["token"], session["resident"]["household_id"])
    pairs = []
    for community, (token, household_id) in households.items():
        for other, (_, other_household) in households.items():
            if other == community:
                continue
            call_api(urls[community], "POST", "/v1/households/mine/relatives",
                     {"household_id": other_household, "community": other}, token=token)
            pairs.append(f"{community}:{household_id}->{other}:{other_household}")
    return "district relatives: " + ", ".join(pairs)
