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
             token: str | None = None, timeout: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
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
