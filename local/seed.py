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


# The staff dashboard's demo data: a few orders of 演示居民乙's household served by 演示居民甲
# (their credits go to 甲's personal account, so 甲's household keeps its 300), one resident
# left pending verification and one open dispute. Two services are paid (by an admin's
# resolution, for the booked hour: a seed cannot wait out a real service) because the demo
# community allows two a day between one pair of households; parcels are not credit items there.
DASHBOARD_PENDING = DemoResident("demo-pending", "待审核居民", "13800000009", "5", "2", "503", 1978)
DASHBOARD_ORDERS = (
    # key, category, title, minutes booked, how far it goes
    ("dash-tutoring-1", "tutoring", "辅导三年级数学", 60, "paid"),
    ("dash-volunteer-1", "volunteer", "陪老人散步", 60, "paid"),
    ("dash-parcel-1", "parcel", "帮忙取快递", 20, "completed"),
    ("dash-parcel-2", "parcel", "取一个大件快递", 30, "disputed"),
    ("dash-tutoring-2", "tutoring", "英语口语陪练", 30, "accepted"),
    ("dash-tutoring-3", "tutoring", "周末作业辅导", 30, "cancelled"),
    ("dash-volunteer-2", "volunteer", "帮忙修自行车", 30, "open"),
)
# Each goal's steps: (the status it starts from, action, who acts, body).
_STEPS = {
    "accept": ("open", "accept", "helper", None),
    "check-in": ("accepted", "check-in", "helper", {}),
    "complete": ("in_service", "complete", "helper", {"minutes": 15}),
    "dispute": ("completed", "dispute", "payer", {"reason": "服务时长有出入（演示）"}),
    "resolve": ("in_service", "resolve", "admin", {"outcome": "pay", "reason": "按预约时长结算（演示）"}),
    "cancel": ("open", "cancel", "payer", {"reason": "时间冲突（演示）"}),
}
_GOALS = {"open": (), "accepted": ("accept",), "completed": ("accept", "check-in", "complete"),
          "disputed": ("accept", "check-in", "complete", "dispute"), "paid": ("accept", "check-in", "resolve"),
          "cancelled": ("cancel",)}


def seed_dashboard_data(base_url: str, admin_openid: str, community_id: str,
                        requester: DemoResident = DEMO_RESIDENTS[1], volunteer: DemoResident = DEMO_RESIDENTS[0]) -> str:
    """Activity for the staff dashboard's charts and queues, through the HTTP API, in the demo
    community only. Orders are keyed (Idempotency-Key) and each is taken only as far as it has
    not gone yet, so a second run in the same world changes nothing."""
    from datetime import datetime, timedelta, timezone

    if community_id != "demo":
        return "dashboard data: only for the demo community, skipped"
    pending = login(base_url, DASHBOARD_PENDING.openid)
    if pending.get("resident") is None:
        call_api(base_url, "POST", "/v1/residents", {
            "name": DASHBOARD_PENDING.name, "phone": DASHBOARD_PENDING.phone, "building": DASHBOARD_PENDING.building,
            "unit": DASHBOARD_PENDING.unit, "room": DASHBOARD_PENDING.room,
            "birth_year": DASHBOARD_PENDING.birth_year}, token=pending["token"])
    payer, helper = login(base_url, requester.openid), login(base_url, volunteer.openid)
    if not all(s.get("resident") and s["resident"]["status"] == "verified" for s in (payer, helper)):
        return "dashboard data: demo residents not verified, skipped"
    tokens = {"payer": payer["token"], "helper": helper["token"], "admin": login(base_url, admin_openid)["token"]}
    # Within check-in's window (two hours before the start), on the hour: a second run within
    # the hour replays the same bodies.
    china = timezone(timedelta(hours=8))
    start = (datetime.now(china) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    outcomes = []
    for key, category, title, minutes, goal in DASHBOARD_ORDERS:
        body = {"category": category, "title": title, "description": "演示数据", "duration_minutes": minutes,
                "start_at": start.isoformat()}
        try:
            need = call_api(base_url, "POST", "/v1/requests", body, token=tokens["payer"], idempotency_key=key)
        except ApiError as exc:
            if exc.status == 409:   # posted by an earlier run, at another hour
                outcomes.append(f"{key}=kept")
                continue
            raise
        status = need["status"]
        for step in _GOALS[goal]:
            starts_from, action, who, payload = _STEPS[step]
            if status == starts_from:
                path = f"/v1/admin/requests/{need['id']}/resolve" if action == "resolve" \
                    else f"/v1/requests/{need['id']}/{action}"
                status = call_api(base_url, "POST", path, payload, token=tokens[who])["status"]
        outcomes.append(f"{key}={status}")
    return "dashboard data: pending " + DASHBOARD_PENDING.openid + ", " + ", ".join(outcomes)
