"""AWS calls of a community activity: one sign-up and one check-in over HTTP, then — with 100
participants — the close (every award paid from issuance, in batches of transactions), a
second close (pays nothing), and one reminder run over the 100.

The 100 residents are registered, verified, signed up, checked in and out and given one
"reminder" consent each outside the counts, through the services the HTTP routes call (a
pinned clock moves the activity's day along). Each row's check (not counted) confirms what the
operation did; the close's also records the largest TransactWriteItems it sent, which must stay
under DynamoDB's 100 items whatever the number of participants.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bench.operations import Scenario

PARTICIPANTS = 100
LIMIT = 100


def quiet() -> None:
    """The set-up runs outside any invocation, so nothing flushes its business metrics: drop them
    (powertools prints a full metric set, 100 values, even when metrics are disabled)."""
    from functions.core.observability import metrics

    metrics.clear_metrics()


def run_activities(s: Scenario) -> dict[str, Any]:
    from functions import bootstrap
    from functions.activities.model import Award, NewActivity
    from functions.core import clock
    from functions.core.caller import Caller

    now = datetime.now(clock.CHINA_TZ).replace(microsecond=0)
    moment = {"now": now}
    clock.set_clock(lambda: moment["now"])
    admin = Caller("admin-bench", roles=frozenset({"admin"}))
    service, identity = bootstrap.activities(), bootstrap.identity()
    start = now + timedelta(hours=3)
    try:
        activity = service.publish(admin, NewActivity(
            title="社区环境清洁日", description="bench", place="社区广场", start_at=start,
            end_at=start + timedelta(hours=2), capacity=PARTICIPANTS + 1, asset="volunteer",
            award=Award("per_hour", 60), requires_insurance=True), None)[0]
        people = []
        for n in range(PARTICIPANTS):
            openid = f"bench-activity-{n}"
            registered = identity.register(Caller(openid=openid), name="居民", phone="13800000000",
                                           building="20", unit=str(n // 50 + 1), room=str(1000 + n),
                                           birth_year=1980)
            identity.verify("admin-bench", registered.id)
            people.append(Caller(openid, registered.id, registered.household_id, "verified",
                                 frozenset({"resident"})))
            bootstrap.notifications().record_consent(openid, "reminder", accepted=True)
        for person in people:
            service.sign_up(person, activity.id)
            quiet()

        # one participant's own steps, over HTTP as the mini-program sends them
        s.login("bench-activity-http")
        walk_in = s.http("POST", "/v1/residents", "bench-activity-http",
                         {"name": "居民", "phone": "13800000001", "building": "21", "unit": "1", "room": "101",
                          "birth_year": 1980})
        s.http("POST", f"/v1/admin/residents/{walk_in['id']}/verify", "admin-bench")
        s.login("bench-activity-http")
        s.measure("activity sign-up (POST /v1/activities/{id}/signup)", lambda: s.http(
            "POST", f"/v1/activities/{activity.id}/signup", "bench-activity-http"),
            check=lambda body: None if body["status"] == "signed_up" else body)

        moment["now"] = start - timedelta(minutes=30)
        s.measure(f"reminder run over {PARTICIPANTS + 1} participants (schedule)",
                  lambda: bootstrap.activity_reminders().run(),
                  check=lambda counts: None if counts.get("sent") == PARTICIPANTS else f"counts {counts}")
        s.measure("reminder run again (all claimed: nothing sent)", lambda: bootstrap.activity_reminders().run(),
                  check=lambda counts: None if counts.get("already") == PARTICIPANTS + 1 else f"counts {counts}")

        moment["now"] = start
        code = bootstrap.activity_codes().current(activity.id, start).code
        s.measure("activity check-in (POST /v1/activities/{id}/check-in)", lambda: s.http(
            "POST", f"/v1/activities/{activity.id}/check-in", "bench-activity-http", {"code": code}))
        for person in people:
            service.check_in(person, activity.id, code)
        moment["now"] = start + timedelta(minutes=100)
        code = bootstrap.activity_codes().current(activity.id, moment["now"]).code
        for person in people:
            service.check_out(person, activity.id, code)

        moment["now"] = start + timedelta(hours=3)
        sizes = s.counter.transaction_sizes
        first = len(sizes)
        s.measure(f"activity close, {PARTICIPANTS} checked out (POST …/close)", lambda: s.http(
            "POST", f"/v1/admin/activities/{activity.id}/close", "admin-bench"),
            check=lambda body: None if body["awarded"] == PARTICIPANTS and max(sizes[first:]) < LIMIT
            else f"{body}, largest transaction {max(sizes[first:], default=0)}")
        largest = max(sizes[first:], default=0)
        batches = len(sizes) - first
        s.measure("activity close again (nothing more paid)", lambda: s.http(
            "POST", f"/v1/admin/activities/{activity.id}/close", "admin-bench"),
            check=lambda body: None if body["awarded"] == PARTICIPANTS else body)
        return {"largest_transaction": largest, "close_transactions": batches}
    finally:
        clock.set_clock(None)
