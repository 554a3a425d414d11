"""Every admin route writes an audit entry (issue 12, "What it must show").

The routes come from the served ``GET /openapi.json``, not from a list kept here: a new admin
route is called too. Each is called once, successfully, in a community seeded for it, by an admin
of its own (``audit-sweeper``) whose entries are counted before and after the call. A route this
file has no recipe for is still called when it is a GET without required parameters; any other is
a failure that says to add its recipe below.

Self-contained, whatever ran before in the process (xdist, other files): the fixture sets its own
admin list and district settings, and rebuilds settings and the composition root from them.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

import pytest

from functions.core import clock
from tests.activity_support import NOW, Clock, activity_body
from tests.helpers import as_json, json_headers, login, phone_for, register, verified_resident
from tests.queues import drain

SWEEPER = "audit-sweeper"


class FakeDistrict:
    def reconcile(self) -> dict[str, Any]:
        return {"ok": True, "community": "test", "clearing": {}, "hub": {}, "in_flight": []}


class FakeExchanges:
    def reconcile(self, day: str) -> dict[str, Any]:
        return {"date": day, "ok": True, "mismatches": []}


@pytest.fixture
def world(client, app, monkeypatch):
    from functions import bootstrap
    from functions.core.settings import reset_settings

    monkeypatch.setenv("TIMEBANK_ADMIN_OPENIDS", f"admin-test,{SWEEPER}")
    monkeypatch.setenv("TIMEBANK_DISTRICT", "test-district")
    reset_settings()
    bootstrap.reset()
    # The two routes that talk to another system (the hub, 志愿汇) get a stand-in: what is tested
    # here is the audit entry, not the partner.
    bootstrap.use("district", FakeDistrict())
    bootstrap.use("exchanges", FakeExchanges())
    times = Clock(NOW)
    admin = login(client, "admin-test")
    ann_h, ann = verified_resident(client, "sweep-ann", building="1", room="101")
    ben_h, ben = verified_resident(client, "sweep-ben", building="2", room="201")
    cal_h, _ = verified_resident(client, "sweep-cal", building="5", room="501")
    _, pending_a = register(client, "sweep-cat", building="3", room="301")
    _, pending_b = register(client, "sweep-dan", building="4", room="401")

    def serve(requester, volunteer, key, confirm=True):
        body = {"category": "tutoring", "title": "辅导", "description": "", "duration_minutes": 60,
                "start_at": (clock.now() + timedelta(hours=2)).isoformat()}
        posted = client.http.post("/v1/requests", body=as_json(body), headers=json_headers(requester, key))
        assert posted.status_code == 201, posted.body
        need = posted.json_body["id"]
        for step, payload in (("accept", None), ("check-in", "{}"), ("complete", as_json({"minutes": 60}))):
            response = client.http.post(f"/v1/requests/{need}/{step}", headers=volunteer, body=payload)
            assert response.status_code == 200, response.body
        if confirm:
            assert client.http.post(f"/v1/requests/{need}/confirm", headers=requester, body="{}").status_code == 200
        return need

    settled = serve(ann_h, ben_h, "sweep-1")
    times.advance(hours=3)
    serve(ben_h, ann_h, "sweep-2")            # B served A, then A served B: a rapid cycle
    drain(app, "risk-flags")
    flags = client.http.get("/v1/admin/risk/flags?status=open", headers=admin).json_body["items"]
    times.advance(hours=3)
    disputed = serve(ann_h, cal_h, "sweep-3", confirm=False)
    assert client.http.post(f"/v1/requests/{disputed}/dispute", headers=ann_h,
                            body=as_json({"reason": "时间不对"})).status_code == 200
    activity = client.http.post("/v1/admin/activities", body=as_json(activity_body(
        start_at=(clock.now() + timedelta(hours=1)).isoformat(),
        end_at=(clock.now() + timedelta(hours=2)).isoformat())), headers=admin).json_body
    skills = [client.http.post("/v1/volunteers/me/skills", headers=ben_h,
                               body=as_json({"name": name, "description": "可以帮忙"})).json_body
              for name in ("摄影", "修电脑")]
    merchant = client.http.post("/v1/admin/merchants", headers=admin,
                                body=as_json({"name": "便民超市", "kind": "supermarket",
                                              "owner_openid": "sweep-shop"})).json_body
    from functions.ledger.accounts import ISSUANCE

    bootstrap.ledger().transfer("grant-sweep-shop", ISSUANCE, merchant["account_id"], "service", 30, kind="grant")
    # a need that is not a credit item, posted often: the weekly run suggests it to the admins
    for n in range(3):
        body = {"category": "volunteer", "title": "帮忙修自行车", "description": "", "duration_minutes": 15,
                "start_at": (clock.now() + timedelta(hours=4 + n)).isoformat()}
        response = client.http.post("/v1/requests", body=as_json(body), headers=json_headers(ann_h, f"sweep-s{n}"))
        assert response.status_code == 201, response.body
    drain(app, "stats")
    from local.lambda_events import scheduled_event

    app.handler_map["stats-suggestions"](scheduled_event("timebank-test-stats-suggestions", "cn-north-1"), None)
    suggestions = client.http.get("/v1/admin/suggestions", headers=admin).json_body["items"]
    settlement = bootstrap.request_store().get(settled).settlement_transfer_id
    return {"client": client, "times": times, "ann": ann, "ben": ben, "pending": [pending_a, pending_b],
            "flag": flags[0]["id"] if flags else None, "disputed": disputed, "settled": settled,
            "payout": f"{settlement}.pay", "activity": activity["id"], "skills": [s["id"] for s in skills],
            "merchant": merchant["id"], "suggestion": suggestions[0]["id"]}


Call = tuple[str, Any, dict[str, str]]   # path, JSON body (None: no body; bytes: sent as is), extra headers
ROSTER = "姓名,手机,楼栋,单元,房号,出生年份\r\n审计导入,13311112299,98,1,101,1960\r\n".encode()

RECIPES: dict[tuple[str, str], Callable[[dict[str, Any]], Call]] = {
    ("GET", "/v1/admin/residents"): lambda w: ("/v1/admin/residents?status=pending", None, {}),
    ("GET", "/v1/admin/residents/{resident_id}"): lambda w: (f"/v1/admin/residents/{w['ann']['id']}", None, {}),
    ("PUT", "/v1/admin/residents/{resident_id}/roles"):
        lambda w: (f"/v1/admin/residents/{w['ben']['id']}/roles", {"roles": ["resident"]}, {}),
    ("POST", "/v1/admin/residents/{resident_id}/verify"):
        lambda w: (f"/v1/admin/residents/{w['pending'][0]['id']}/verify", None, {}),
    ("POST", "/v1/admin/residents/{resident_id}/reject"):
        lambda w: (f"/v1/admin/residents/{w['pending'][1]['id']}/reject", {"reason": "查无此人"}, {}),
    ("GET", "/v1/admin/requests"): lambda w: ("/v1/admin/requests?status=disputed", None, {}),
    ("POST", "/v1/admin/requests/{request_id}/resolve"):
        lambda w: (f"/v1/admin/requests/{w['disputed']}/resolve",
                   {"outcome": "pay", "minutes": 30, "reason": "核实后半小时"}, {}),
    ("GET", "/v1/admin/requests/{request_id}/evidence/access-log"):
        lambda w: (f"/v1/admin/requests/{w['settled']}/evidence/access-log", None, {}),
    ("PUT", "/v1/admin/categories/{category_id}"): lambda w: ("/v1/admin/categories/pet", {"multiplier": 2}, {}),
    ("GET", "/v1/admin/risk/flags"): lambda w: ("/v1/admin/risk/flags", None, {}),
    ("POST", "/v1/admin/risk/flags/{flag_id}/resolve"):
        lambda w: (f"/v1/admin/risk/flags/{w['flag']}/resolve", {"outcome": "ok", "reason": "亲属互助"}, {}),
    ("POST", "/v1/admin/activities"): lambda w: ("/v1/admin/activities", activity_body(
        start_at=(clock.now() + timedelta(days=1)).isoformat(),
        end_at=(clock.now() + timedelta(days=1, hours=1)).isoformat()), {}),
    ("GET", "/v1/admin/activities/{activity_id}/code"):
        lambda w: (f"/v1/admin/activities/{w['activity']}/code", None, {}),
    ("POST", "/v1/admin/activities/{activity_id}/close"):
        lambda w: (w["times"].advance(hours=4), f"/v1/admin/activities/{w['activity']}/close", None, {})[1:],
    ("POST", "/v1/admin/merchants"):
        lambda w: ("/v1/admin/merchants", {"name": "理发店", "kind": "shop", "owner_openid": "sweep-barber"}, {}),
    ("POST", "/v1/admin/merchants/{merchant_id}/settle"):
        lambda w: (f"/v1/admin/merchants/{w['merchant']}/settle", {"asset": "service", "amount": 10},
                   {"Idempotency-Key": "sweep-buy"}),
    ("GET", "/v1/admin/exchanges/reconcile"): lambda w: ("/v1/admin/exchanges/reconcile?date=2026-12-01", None, {}),
    ("GET", "/v1/admin/insurance-records"):
        lambda w: ("/v1/admin/insurance-records?from=2026-11-01&to=2026-12-31", None, {}),
    ("POST", "/v1/admin/skills/{skill_id}/approve"):
        lambda w: (f"/v1/admin/skills/{w['skills'][0]}/approve", None, {}),
    ("POST", "/v1/admin/skills/{skill_id}/reject"):
        lambda w: (f"/v1/admin/skills/{w['skills'][1]}/reject", {"reason": "不再提供"}, {}),
    ("POST", "/v1/admin/transfers/{transfer_id}/reverse"):
        lambda w: (f"/v1/admin/transfers/{w['payout']}/reverse", {"reason": "误操作"}, {}),
    ("GET", "/v1/admin/exports/volunteer-records"):
        lambda w: ("/v1/admin/exports/volunteer-records?from=2026-11-01&to=2026-12-31&format=csv", None, {}),
    ("POST", "/v1/admin/imports/residents"):
        lambda w: ("/v1/admin/imports/residents", ROSTER, {"Content-Type": "text/csv"}),
    ("POST", "/v1/admin/suggestions/{suggestion_id}/accept"):
        lambda w: (f"/v1/admin/suggestions/{w['suggestion']}/accept", None, {}),
}


def admin_operations(client) -> list[tuple[str, str, dict[str, Any]]]:
    document = client.http.get("/openapi.json").json_body
    return [(method.upper(), path, operation) for path, operations in document["paths"].items()
            if path.startswith("/v1/admin/") for method, operation in operations.items()]


def _needs_input(operation: dict[str, Any]) -> bool:
    return "requestBody" in operation or any(p.get("required") for p in operation.get("parameters", []))


def entries_by(actor: str) -> int:
    from functions import bootstrap

    return len(bootstrap.audit_queries().for_admin(actor=actor, action=None, start=None, end=None,
                                                   limit=100, before=None).items)


def sweep(world: dict[str, Any], operations: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """Call each operation once as the sweeper; what went wrong, one line per operation."""
    client = world["client"]
    sweeper = login(client, SWEEPER)
    problems = []
    for method, path, operation in operations:
        recipe = RECIPES.get((method, path))
        if recipe is None:
            if method != "GET" or _needs_input(operation):
                problems.append(f"{method} {path}: no recipe in {__name__}.RECIPES (how to call it successfully)")
                continue
            call: Call = (path, None, {})
        else:
            call = recipe(world)
        url, body, extra = call
        before = entries_by(SWEEPER)
        response = getattr(client.http, method.lower())(
            url, headers={**sweeper, **extra}, body=body if body is None or isinstance(body, bytes) else as_json(body))
        if response.status_code >= 400:
            problems.append(f"{method} {path}: the call itself failed ({response.status_code} {response.body[:200]!r})")
            continue
        if entries_by(SWEEPER) <= before:
            problems.append(f"{method} {path}: no audit entry")
    return problems


def test_every_admin_route_of_the_openapi_document_leaves_an_audit_entry(world):
    from functions import bootstrap

    operations = admin_operations(world["client"])
    assert len(operations) >= 20
    problems = sweep(world, operations)
    assert problems == [], "\n".join(problems)
    # ids and choices only: no phone number or name of anyone seeded
    entries = bootstrap.audit_queries().for_admin(actor=SWEEPER, action=None, start=None, end=None,
                                                  limit=100, before=None).items
    text = repr([(e.target, e.reason, e.details) for e in entries])
    for openid in ("sweep-ann", "sweep-ben", "sweep-cal", "sweep-cat", "sweep-dan"):
        assert phone_for(openid) not in text and phone_for(openid)[-4:] not in text
    assert "测试居民" not in text


def test_the_sweep_fails_on_a_route_that_leaves_no_entry(world):
    """The sweep can fail: with the audit log switched off, an admin route is reported."""
    from functions.core import web

    operation = next(op for op in admin_operations(world["client"]) if op[:2] == ("GET", "/v1/admin/risk/flags"))
    web.use_audit_log(None)
    try:
        assert sweep(world, [operation]) == ["GET /v1/admin/risk/flags: no audit entry"]
    finally:
        from functions import bootstrap

        web.use_audit_log(bootstrap.audit_log)


def test_the_sweep_covers_every_recipe(world):
    """A recipe for a route that no longer exists is a sign the sweep lost track of it."""
    served = {(method, path) for method, path, _ in admin_operations(world["client"])}
    assert set(RECIPES) - served == set()
