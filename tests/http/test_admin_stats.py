"""Statistics over HTTP (API.md "Administration and data"): a generated month of activity made
through the real endpoints, its events taken off the ``stats`` queue and delivered to the real
consumer twice and shuffled; ``GET /v1/admin/stats`` must show the figures this test computes
from what it did. Also: open data with k ≥ 5, suggestions of high-frequency needs, bad input
and forbidden callers."""
from __future__ import annotations

import json
import math
import random
import uuid
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta

import boto3
import pytest

from functions.core import clock
from functions.core.clock import CHINA_TZ
from functions.core.messaging import queue_name
from tests.helpers import admin_headers, as_json, assert_error, db_snapshot, json_headers, login, verified_resident
from tests.queues import drain

STATS = "/v1/admin/stats"
CATEGORIES = ("tutoring", "parcel", "volunteer")
STARTING = 300


@pytest.fixture
def world(client, app, monkeypatch):
    from functions import bootstrap

    # Random pairs may meet more than twice a day: the pair limit is not what this file tests.
    monkeypatch.setenv("TIMEBANK_RISK_PAIR_DAILY", "0")
    bootstrap.reset()
    times = {"now": datetime(2026, 11, 30, 9, 0, tzinfo=CHINA_TZ)}
    clock.set_clock(lambda: times["now"])
    return {"client": client, "app": app, "times": times}


def day_of(at: datetime) -> str:
    return at.astimezone(CHINA_TZ).date().isoformat()


def take_messages(logical_queue: str) -> list[dict]:
    """Everything waiting on a queue, received and deleted (the test delivers it itself)."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name(logical_queue))["QueueUrl"]
    taken = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                    AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
        if not batch:
            return taken
        taken += batch
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(batch)])


def deliver(app, messages: list[dict]) -> None:
    """Hand messages to the real ``stats-aggregates`` handler in SQS-sized batches, each copy with
    its own message id (as SQS redelivers)."""
    from local.lambda_events import sqs_event

    arn = f"arn:aws-cn:sqs:cn-north-1:123456789012:{queue_name('stats')}"
    handler = app.handler_map["stats-aggregates"]
    for start in range(0, len(messages), 10):
        copies = [{**m, "MessageId": str(uuid.uuid4()), "ReceiptHandle": f"rh-{n}"}
                  for n, m in enumerate(messages[start:start + 10])]
        result = handler(sqs_event(copies, arn, "cn-north-1"), None)
        assert result["batchItemFailures"] == []


class Month:
    """What the test did, and the figures it expects from it (computed here, not by the product)."""

    def __init__(self):
        self.counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
        self.accept_minutes: dict[str, list[int]] = defaultdict(list)
        self.active: dict[str, set[str]] = defaultdict(set)
        self.active_households: dict[str, set[str]] = defaultdict(set)
        self.credits: dict[str, Counter] = defaultdict(Counter)
        self.events = 0

    def saw(self, at: datetime, category: str, counter: str, amount: int = 1) -> None:
        self.counts[(day_of(at), category)][counter] += amount

    def was_active(self, at: datetime, *people: dict) -> None:
        for person in people:
            self.active[day_of(at)].add(person["id"])
            self.active_households[day_of(at)].add(person["household_id"])

    def expected(self, start: str, end: str, residents: int) -> dict:
        days = [d for d in sorted({d for d, _ in self.counts}) if start <= d <= end]
        by_day = [{"date": d, "category": c, **{n: self.counts[(d, c)][n] for n in
                                                ("posted", "accepted", "completed", "cancelled", "minutes_credited")}}
                  for d in days for c in sorted(c for dd, c in self.counts if dd == d)]
        accepts = sorted(m for d, values in self.accept_minutes.items() if start <= d <= end for m in values)

        def nearest_rank(q):
            return accepts[math.ceil(q * len(accepts) / 100) - 1] if accepts else None

        in_range = [d for d in self.active if start <= d <= end]
        minutes = Counter()
        for d, by_volunteer in self.credits.items():
            if start <= d <= end:
                minutes.update(by_volunteer)
        end_day = date.fromisoformat(end)
        last30 = (end_day - timedelta(days=29)).isoformat()
        first90 = (end_day - timedelta(days=89)).isoformat()
        window = Counter()
        for d, by_volunteer in self.credits.items():
            if last30 <= d <= end:
                window.update(by_volunteer)
        credited_30 = sum(c["minutes_credited"] for (d, _), c in self.counts.items() if last30 <= d <= end)
        ranked = sorted(window.values(), reverse=True)
        top = ranked[:max(1, math.ceil(len(ranked) / 10))]
        recent = set().union(*(p for d, p in self.active.items() if last30 <= d <= end))
        earlier = set().union(*(p for d, p in self.active.items() if first90 <= d < last30))
        outstanding = residents * STARTING
        return {
            "by_day": by_day,
            "accept_minutes": {"p50": nearest_rank(50), "p90": nearest_rank(90)},
            "active_residents": len(set().union(*(self.active[d] for d in in_range))),
            "active_households": len(set().union(*(self.active_households[d] for d in in_range))),
            "top_volunteers": [{"resident_id": r, "minutes": m}
                               for r, m in sorted(minutes.items(), key=lambda kv: (-kv[1], kv[0]))[:10]],
            "ledger": {"outstanding": {"service": outstanding},
                       "velocity_30d": round(credited_30 / outstanding, 4),
                       "top10_share": round(sum(top) / sum(ranked), 4) if ranked else 0.0,
                       "dormant_accounts": len(earlier - recent)},
        }


def generate_month(world, residents, seed=12) -> Month:
    """About 50 orders over December 2026: posted at varied hours (some late at night, accepted
    after midnight), then settled, cancelled before or after acceptance, or left open/accepted."""
    client, times, rng, month = world["client"], world["times"], random.Random(seed), Month()
    n = 0
    for day in range(1, 31):
        if day % 5 == 1:  # tokens last 7 days on the test's clock
            times["now"] = datetime(2026, 12, day, 0, 0, tzinfo=CHINA_TZ)
            for person in residents:
                person["headers"] = login(client, person["openid"])
        for _ in range(rng.choice((0, 1, 2, 3))):
            requester = residents[n % len(residents)]
            volunteer = residents[(n + 1 + rng.randrange(len(residents) - 1)) % len(residents)]
            category, minutes = rng.choice(CATEGORIES), rng.choice((30, 45, 60))
            posted_at = datetime(2026, 12, day, rng.choice((8, 13, 19, 23)), rng.randrange(50), tzinfo=CHINA_TZ)
            outcome = rng.choice(("settled", "settled", "settled", "cancel_open", "cancel_accepted", "open",
                                  "accepted"))
            n += 1
            times["now"] = posted_at
            body = {"category": category, "title": f"需要帮忙 {n}", "description": "",
                    "duration_minutes": minutes, "start_at": (posted_at + timedelta(hours=3)).isoformat()}
            posted = client.http.post("/v1/requests", body=as_json(body),
                                      headers=json_headers(requester["headers"], f"m-{n}"))
            assert posted.status_code == 201, posted.body
            need = posted.json_body["id"]
            month.saw(posted_at, category, "posted")
            month.was_active(posted_at, requester)
            if outcome == "cancel_open":
                times["now"] = posted_at + timedelta(minutes=rng.randrange(5, 90))
                cancelled = client.http.post(f"/v1/requests/{need}/cancel", headers=requester["headers"],
                                             body=as_json({"reason": "不需要了"}))
                assert cancelled.status_code == 200, cancelled.body
                month.saw(times["now"], category, "cancelled")
                continue
            if outcome == "open":
                continue
            accepted_at = posted_at + timedelta(minutes=rng.randrange(1, 120), seconds=rng.randrange(60))
            times["now"] = accepted_at
            accepted = client.http.post(f"/v1/requests/{need}/accept", headers=volunteer["headers"])
            assert accepted.status_code == 200, accepted.body
            month.saw(accepted_at, category, "accepted")
            month.accept_minutes[day_of(accepted_at)].append(int((accepted_at - posted_at).total_seconds() // 60))
            month.was_active(accepted_at, volunteer)
            if outcome == "accepted":
                continue
            if outcome == "cancel_accepted":
                times["now"] = accepted_at + timedelta(minutes=10)
                cancelled = client.http.post(f"/v1/requests/{need}/cancel", headers=requester["headers"],
                                             body=as_json({"reason": "改时间了"}))
                assert cancelled.status_code == 200, cancelled.body
                month.saw(times["now"], category, "cancelled")
                continue
            times["now"] = accepted_at + timedelta(minutes=20)
            assert client.http.post(f"/v1/requests/{need}/check-in", headers=volunteer["headers"],
                                    body="{}").status_code == 200
            times["now"] += timedelta(minutes=minutes)
            done = client.http.post(f"/v1/requests/{need}/complete", headers=volunteer["headers"],
                                    body=as_json({"minutes": minutes}))
            assert done.status_code == 200, done.body
            times["now"] += timedelta(minutes=rng.randrange(1, 300))
            confirmed = client.http.post(f"/v1/requests/{need}/confirm", headers=requester["headers"], body="{}")
            assert confirmed.status_code == 200, confirmed.body
            paid = confirmed.json_body["credits_paid"]
            month.saw(times["now"], category, "completed")
            month.saw(times["now"], category, "minutes_credited", paid)
            month.was_active(times["now"], volunteer, requester)
            if paid:
                month.credits[day_of(times["now"])][volunteer["id"]] += paid
    return month


def make_residents(client, count: int) -> list[dict]:
    people = []
    for i in range(count):
        headers, resident = verified_resident(client, f"stats-{i}", building=str(i % 4 + 1), room=f"{i + 1}01",
                                              name=f"居民{i}")
        people.append({"headers": headers, "openid": f"stats-{i}", "id": resident["id"], "household_id": resident["household_id"],
                       "name": f"居民{i}"})
    return people


def with_names(expected: dict, residents: list[dict]) -> dict:
    names = {r["id"]: r["name"] for r in residents}
    expected["top_volunteers"] = [{**t, "name": names[t["resident_id"]]} for t in expected["top_volunteers"]]
    return expected


def test_a_month_of_activity_delivered_twice_and_shuffled_gives_the_computed_figures(world):
    client, app = world["client"], world["app"]
    residents = make_residents(client, 8)
    month = generate_month(world, residents)
    messages = take_messages("stats")
    bodies = [json.loads(m["Body"]) for m in messages]
    assert len({b["event_id"] for b in bodies}) == len(bodies) == sum(
        c[n] for c in month.counts.values() for n in ("posted", "accepted", "completed", "cancelled"))
    assert {b["type"] for b in bodies} == {"request.posted", "request.accepted", "request.settled",
                                           "request.cancelled"}

    redelivered = messages + messages
    random.Random(3).shuffle(redelivered)
    deliver(app, redelivered)

    admin = admin_headers(client)
    for start, end in (("2026-12-01", "2026-12-31"), ("2026-12-10", "2026-12-16")):
        got = client.http.get(f"{STATS}?from={start}&to={end}", headers=admin)
        assert got.status_code == 200, got.body
        assert got.json_body == with_names(month.expected(start, end, len(residents)), residents)
    whole = client.http.get(f"{STATS}?from=2026-12-01&to=2026-12-31", headers=admin).json_body
    assert sum(d["posted"] for d in whole["by_day"]) >= 40 and whole["top_volunteers"]

    # Delivered once more in yet another order, nothing changes.
    random.Random(4).shuffle(messages)
    deliver(app, messages)
    assert client.http.get(f"{STATS}?from=2026-12-01&to=2026-12-31", headers=admin).json_body == whole


def test_the_consumer_on_the_queue_applies_each_event_once(world):
    client, app, times = world["client"], world["app"], world["times"]
    (requester, volunteer) = make_residents(client, 2)
    times["now"] = datetime(2026, 12, 5, 10, 0, tzinfo=CHINA_TZ)
    body = {"category": "tutoring", "title": "辅导", "description": "", "duration_minutes": 60,
            "start_at": (times["now"] + timedelta(hours=2)).isoformat()}
    need = client.http.post("/v1/requests", body=as_json(body), headers=json_headers(requester["headers"], "q1"))
    need_id = need.json_body["id"]
    times["now"] += timedelta(minutes=12)
    for step, payload in (("accept", None), ("check-in", "{}"), ("complete", as_json({"minutes": 60}))):
        assert client.http.post(f"/v1/requests/{need_id}/{step}", headers=volunteer["headers"],
                                body=payload).status_code == 200
    assert client.http.post(f"/v1/requests/{need_id}/confirm", headers=requester["headers"],
                            body="{}").status_code == 200
    assert drain(app, "stats") == 3
    got = client.http.get(f"{STATS}?from=2026-12-05&to=2026-12-05", headers=admin_headers(client)).json_body
    assert got["by_day"] == [{"date": "2026-12-05", "category": "tutoring", "posted": 1, "accepted": 1,
                              "completed": 1, "cancelled": 0, "minutes_credited": 60}]
    assert got["accept_minutes"] == {"p50": 12, "p90": 12}
    assert got["active_residents"] == 2 and got["active_households"] == 2
    assert got["top_volunteers"] == [{"resident_id": volunteer["id"], "name": volunteer["name"], "minutes": 60}]
    assert got["ledger"]["outstanding"] == {"service": 600}


def test_an_empty_range_has_zero_figures(world):
    got = world["client"].http.get(f"{STATS}?from=2026-12-01&to=2026-12-30", headers=admin_headers(world["client"]))
    assert got.status_code == 200
    assert got.json_body == {"by_day": [], "accept_minutes": {"p50": None, "p90": None}, "active_residents": 0,
                             "active_households": 0, "top_volunteers": [],
                             "ledger": {"outstanding": {}, "velocity_30d": 0.0, "top10_share": 0.0,
                                        "dormant_accounts": 0}}


@pytest.mark.parametrize("query, field", [
    ("from=2026-13-01&to=2026-12-31", "from"),
    ("from=2026-12-01&to=yesterday", "to"),
    ("from=2026-12-31&to=2026-12-01", "from"),
    ("from=2026-01-01&to=2026-12-31", "to"),
    ("from=2026-02-30&to=2026-03-01", "from"),
])
def test_bad_ranges_are_refused(world, query, field):
    client = world["client"]
    admin = admin_headers(client)
    before = db_snapshot()
    body = assert_error(client.http.get(f"{STATS}?{query}", headers=admin), 400, "VALIDATION_ERROR")
    assert field in json.dumps(body["details"])
    assert db_snapshot() == before


def test_only_admins_read_statistics(world):
    client = world["client"]
    headers, _ = verified_resident(client, "stats-nosy")
    assert_error(client.http.get(f"{STATS}?from=2026-12-01&to=2026-12-31"), 401, "UNAUTHENTICATED")
    assert_error(client.http.get(f"{STATS}?from=2026-12-01&to=2026-12-31", headers=headers), 403, "FORBIDDEN")
    assert_error(client.http.get("/v1/admin/suggestions", headers=headers), 403, "FORBIDDEN")
    assert_error(client.http.get("/v1/admin/suggestions"), 401, "UNAUTHENTICATED")
    assert_error(client.http.post("/v1/admin/suggestions/sug_x/accept", headers=headers), 403, "FORBIDDEN")


# --- open data ---------------------------------------------------------------------------------

def test_open_data_merges_buildings_of_fewer_than_five_residents(world):
    client, app, times = world["client"], world["app"], world["times"]
    times["now"] = datetime(2026, 12, 3, 9, 0, tzinfo=CHINA_TZ)
    layout = {"1": 5, "2": 6, "3": 2, "4": 3}
    people = []
    for building, count in layout.items():
        for i in range(count):
            headers, resident = verified_resident(client, f"od-{building}-{i}", building=building,
                                                  room=f"{i + 1}02", name=f"楼{building}居民{i}")
            people.append((building, headers, resident))
    for n, (building, headers, _) in enumerate(people):
        body = {"category": "parcel", "title": "取快递", "description": "", "duration_minutes": 30,
                "start_at": (times["now"] + timedelta(hours=2)).isoformat()}
        assert client.http.post("/v1/requests", body=as_json(body),
                                headers=json_headers(headers, f"od-{n}")).status_code == 201
    # One service in building 3 (whose residents are merged into 其他): the requester in 1.
    volunteer = next(h for b, h, _ in people if b == "3")
    requester = next(h for b, h, _ in people if b == "1")
    body = {"category": "tutoring", "title": "辅导", "description": "", "duration_minutes": 60,
            "start_at": (times["now"] + timedelta(hours=2)).isoformat()}
    need_id = client.http.post("/v1/requests", body=as_json(body),
                               headers=json_headers(requester, "od-served")).json_body["id"]
    for step, payload in (("accept", None), ("check-in", "{}"), ("complete", as_json({"minutes": 60}))):
        assert client.http.post(f"/v1/requests/{need_id}/{step}", headers=volunteer, body=payload).status_code == 200
    assert client.http.post(f"/v1/requests/{need_id}/confirm", headers=requester, body="{}").status_code == 200
    drain(app, "stats")

    got = client.http.get("/v1/open-data/stats?month=2026-12")   # anyone: no token
    assert got.status_code == 200, got.body
    data = got.json_body
    assert data["groups"] == [
        {"group": "1", "active_residents": 5, "services": 0, "minutes_credited": 0},
        {"group": "2", "active_residents": 6, "services": 0, "minutes_credited": 0},
        {"group": "其他", "active_residents": 5, "services": 1, "minutes_credited": 60},
    ]
    assert all(g["active_residents"] >= 5 for g in data["groups"])
    assert data["active_residents"] == 16
    assert data["totals"] == {"posted": 17, "accepted": 1, "completed": 1, "cancelled": 0, "minutes_credited": 60}
    text = got.body.decode() if isinstance(got.body, bytes) else str(got.body)
    for _, _, resident in people:
        assert resident["id"] not in text and resident["household_id"] not in text and resident["name"] not in text
    assert "res_" not in text and "hh_" not in text
    assert client.http.get("/v1/open-data/stats?month=2026-11").json_body["groups"] == []


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "december", ""])
def test_open_data_refuses_bad_months(world, month):
    assert_error(world["client"].http.get(f"/v1/open-data/stats?month={month}"), 400, "VALIDATION_ERROR")


# --- suggestions -------------------------------------------------------------------------------

def run_weekly(app):
    from local.lambda_events import scheduled_event

    return app.handler_map["stats-suggestions"](scheduled_event("timebank-test-stats-suggestions", "cn-north-1"),
                                                None)


def test_frequent_needs_become_suggestions_an_admin_accepts_once(world):
    client, app, times = world["client"], world["app"], world["times"]
    times["now"] = datetime(2026, 12, 7, 9, 0, tzinfo=CHINA_TZ)
    headers, _ = verified_resident(client, "sug-a", building="5", room="501")
    titles = ["帮忙修自行车", "帮忙修自行车！", "帮 忙 修自行车", "帮忙修理自行车", "陪我下象棋"]
    for n, title in enumerate(titles):
        times["now"] += timedelta(hours=5)
        body = {"category": "volunteer", "title": title, "description": "", "duration_minutes": 30,
                "start_at": (times["now"] + timedelta(hours=2)).isoformat()}
        assert client.http.post("/v1/requests", body=as_json(body),
                                headers=json_headers(headers, f"sug-{n}")).status_code == 201
    # A credit item's title is not a need text: it never reaches the suggestions.
    body = {"category": "tutoring", "title": "帮忙修自行车", "description": "", "duration_minutes": 30,
            "start_at": (times["now"] + timedelta(hours=2)).isoformat()}
    assert client.http.post("/v1/requests", body=as_json(body),
                            headers=json_headers(headers, "sug-tutoring")).status_code == 201
    drain(app, "stats")
    admin = admin_headers(client)
    assert client.http.get("/v1/admin/suggestions", headers=admin).json_body == {"items": []}
    assert run_weekly(app) == {"suggestions": 1}
    items = client.http.get("/v1/admin/suggestions", headers=admin).json_body["items"]
    assert [(i["text"], i["category"], i["count"], i["window_days"], i["status"]) for i in items] == [
        ("帮忙修自行车", "volunteer", 4, 28, "open")]
    suggestion_id = items[0]["id"]

    accepted = client.http.post(f"/v1/admin/suggestions/{suggestion_id}/accept", headers=admin)
    assert accepted.status_code == 200, accepted.body
    assert accepted.json_body["status"] == "accepted"
    category_id = accepted.json_body["accepted_as"]
    categories = {c["id"]: c for c in client.http.get("/v1/categories", headers=headers).json_body["items"]}
    assert categories[category_id]["name"] == "帮忙修自行车" and categories[category_id]["credit_eligible"] is True
    body = {"category": category_id, "title": "修车", "description": "", "duration_minutes": 60,
            "start_at": (times["now"] + timedelta(hours=2)).isoformat()}
    new_need = client.http.post("/v1/requests", body=as_json(body), headers=json_headers(headers, "sug-new"))
    assert new_need.status_code == 201 and new_need.json_body["credits_held"] == 60

    before = db_snapshot()
    assert_error(client.http.post(f"/v1/admin/suggestions/{suggestion_id}/accept", headers=admin), 409,
                 "ALREADY_ACCEPTED")
    assert_error(client.http.post("/v1/admin/suggestions/sug_unknown/accept", headers=admin), 404, "NOT_FOUND")
    assert db_snapshot() == before
    run_weekly(app)   # the next weekly run leaves the accepted one accepted
    items = client.http.get("/v1/admin/suggestions", headers=admin).json_body["items"]
    assert [(i["id"], i["status"]) for i in items] == [(suggestion_id, "accepted")]

