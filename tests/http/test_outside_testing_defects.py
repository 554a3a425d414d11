"""What outside testing found (issue 9), one test per defect: each failed before its fix."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import pytest

from functions import bootstrap
from functions.core.caller import Caller
from functions.core.clock import CHINA_TZ
from functions.core import clock
from tests.helpers import admin_headers, as_json, json_headers, verified_resident
from tests.queues import drain

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=CHINA_TZ)


@pytest.fixture
def world(client, app):
    clock.set_clock(lambda: NOW)
    requester, req = verified_resident(client, "d-req", building="3", unit="1", room="502")
    volunteer, vol = verified_resident(client, "d-vol", building="3", unit="2", room="101")
    return {"client": client, "app": app, "requester": requester, "req": req, "volunteer": volunteer, "vol": vol}


def post(world, key="need", category="tutoring", minutes=60, start=None, **extra):
    body = {"category": category, "title": "辅导数学", "description": "", "duration_minutes": minutes,
            "start_at": (start or NOW + timedelta(hours=3)).isoformat(), **extra}
    return world["client"].http.post("/v1/requests", body=as_json(body), headers=json_headers(world["requester"], key))


def act(world, request_id, action, who="volunteer", body=None):
    headers = world[who] if isinstance(who, str) else who
    return world["client"].http.post(f"/v1/requests/{request_id}/{action}", headers=headers,
                                     body=as_json(body or {}))


def serialized_moto(monkeypatch):
    """moto is not thread-safe: racing threads take turns at each AWS call."""
    import botocore.client

    lock = threading.RLock()
    original = botocore.client.BaseClient._make_api_call

    def call(self, operation, params):
        with lock:
            return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)


# --- 7. concurrent cancels with different reasons -------------------------------------------------

def test_concurrent_cancels_with_other_reasons_lose_with_invalid_state_not_an_idempotency_mismatch(
        world, monkeypatch):
    from functions.core.errors import TimebankError
    from functions.requests.dynamo import DynamoRequestStore

    need = post(world).json_body
    admins = [Caller("admin-test", None, None, None, frozenset({"admin"})) for _ in range(5)]
    serialized_moto(monkeypatch)
    barrier = threading.Barrier(len(admins), timeout=30)
    seen = threading.local()
    original_get = DynamoRequestStore.get

    def get_then_wait(self, request_id):
        result = original_get(self, request_id)
        if not getattr(seen, "waited", False):
            seen.waited = True
            barrier.wait()  # every canceller has read the open request before anyone writes
        return result

    monkeypatch.setattr(DynamoRequestStore, "get", get_then_wait)
    service, results = bootstrap.requests(), []

    def cancel(number, caller):
        try:
            service.cancel(caller, need["id"], f"原因 {number}")
            results.append(200)
        except TimebankError as error:
            results.append((error.status, error.code))

    threads = [threading.Thread(target=cancel, args=(n, c)) for n, c in enumerate(admins)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    monkeypatch.undo()
    assert sorted(results, key=str) == sorted([200] + [(409, "INVALID_STATE")] * 4, key=str)


# --- 10. only verified residents receive credits ------------------------------------------------

def test_credits_cannot_go_to_a_pending_claimant_of_ones_own_address(world):
    from tests.helpers import register

    client = world["client"]
    _, claimant = register(client, "d-claimant", building="3", unit="1", room="502")  # the requester's flat
    assert claimant["status"] == "pending" and claimant["household_id"] == world["req"]["household_id"]
    response = client.http.post("/v1/transfers", body=as_json({"to": {"resident_id": claimant["id"]}, "amount": 30}),
                                headers=json_headers(world["requester"], "to-claimant"))
    assert response.status_code == 422 and response.json_body["code"] == "RECEIVER_NOT_VERIFIED"
    assert bootstrap.ledger().balances(f"resident:{claimant['id']}") == {}


# --- 11. a taken request is seen by its parties only --------------------------------------------

def test_a_taken_request_is_visible_to_its_parties_their_households_and_admins_only(world):
    from tests.helpers import verified_resident as resident

    client = world["client"]
    stranger, _ = resident(client, "d-stranger", building="9", unit="1", room="901")
    volunteer_spouse, _ = resident(client, "d-vol-spouse", building="3", unit="2", room="101")
    need = post(world).json_body
    assert client.http.get(f"/v1/requests/{need['id']}", headers=stranger).status_code == 200  # open: the feed
    assert act(world, need["id"], "accept").status_code == 200
    for viewer in (world["requester"], world["volunteer"], volunteer_spouse, admin_headers(client)):
        assert client.http.get(f"/v1/requests/{need['id']}", headers=viewer).status_code == 200
    hidden = client.http.get(f"/v1/requests/{need['id']}", headers=stranger)
    assert hidden.status_code == 404 and hidden.json_body["code"] == "NOT_FOUND"


# --- 2. lone surrogates, 3. deep nesting ---------------------------------------------------------

@pytest.mark.parametrize("field", ["title", "description"])
def test_a_lone_surrogate_in_any_text_is_a_400_naming_the_field(world, field):
    body = {"category": "tutoring", "title": "辅导", "description": "", "duration_minutes": 60,
            "start_at": (NOW + timedelta(hours=3)).isoformat(), field: "数学\ud800"}
    response = world["client"].http.post("/v1/requests", body=json.dumps(body),  # ASCII escapes: \\ud800
                                         headers=json_headers(world["requester"], "surrogate"))
    assert response.status_code == 400 and response.json_body["code"] == "VALIDATION_ERROR"
    assert field in response.json_body["details"]["fields"]


def test_surrogates_in_reasons_names_and_memos_too(world):
    client = world["client"]
    need = post(world).json_body
    cancel = client.http.post(f"/v1/requests/{need['id']}/cancel", headers=world["requester"],
                              body=json.dumps({"reason": "\udfff"}))
    assert cancel.status_code == 400 and "reason" in cancel.json_body["details"]["fields"]
    # The same character unescaped: the body is not Unicode at all.
    raw = act(world, need["id"], "cancel", "requester", {"reason": "\udfff"})
    assert raw.status_code == 400 and raw.json_body["details"]["fields"] == {"body": "含有无法识别的字符"}
    member = client.http.post("/v1/households/mine/members", headers=world["requester"],
                              body=json.dumps({"name": "\ud83d", "birth_year": 1950, "relation": "parent"}))
    assert member.status_code == 400 and "name" in member.json_body["details"]["fields"]
    memo = client.http.post("/v1/transfers", headers=json_headers(world["requester"], "memo"),
                            body=json.dumps({"to": {"pool": True}, "amount": 1, "memo": "\ud800"}))
    assert memo.status_code == 400 and "memo" in memo.json_body["details"]["fields"]


def test_an_unknown_field_named_with_a_lone_surrogate_is_echoed_encodably(world):
    response = world["client"].http.post("/v1/transfers", headers=json_headers(world["requester"], "k"),
                                         body='{"to": {"pool": true}, "amount": 1, "\\ud800": 1}')
    assert response.status_code == 400
    json.loads(response.body.decode("utf-8"))  # the error body itself encodes


def test_nesting_deeper_than_the_stack_is_a_400(world):
    deep = "[" * 50_000 + "]" * 50_000
    response = world["client"].http.post("/v1/transfers", headers=json_headers(world["requester"], "deep"),
                                         body='{"to": ' + deep + ', "amount": 1}')
    assert response.status_code == 400 and response.json_body["code"] == "VALIDATION_ERROR"


# --- 6. limits checked before writing, passed by concurrency --------------------------------------

def race(monkeypatch, method_owner, method, workers, work):
    """Run ``work(i)`` in ``workers`` threads that all reach ``method`` before any runs it."""
    from functions.core.errors import TimebankError

    serialized_moto(monkeypatch)
    barrier = threading.Barrier(workers, timeout=60)
    original = getattr(method_owner, method)

    def waiting(self, *args, **kwargs):
        barrier.wait()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(method_owner, method, waiting)
    outcomes: list = []

    def run(number):
        try:
            work(number)
            outcomes.append("ok")
        except TimebankError as error:
            outcomes.append(error.code)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    monkeypatch.undo()
    return outcomes


def test_thirty_parallel_dependants_store_exactly_the_limit(world, monkeypatch):
    from functions.identity.dynamo import DynamoIdentityStore
    from functions.identity.service import MAX_DEPENDANTS_PER_HOUSEHOLD

    service = bootstrap.identity()
    caller = service.caller_from(service.login_state("d-req"))
    outcomes = race(monkeypatch, DynamoIdentityStore, "create_dependant", 30, lambda n: service.add_dependant(
        caller, name=f"孩子{n}", birth_year=2015, relation="child", idempotency_key=None))
    assert outcomes.count("ok") == MAX_DEPENDANTS_PER_HOUSEHOLD
    assert outcomes.count("LIMIT_EXCEEDED") == 30 - MAX_DEPENDANTS_PER_HOUSEHOLD
    members = service.store.list_members(world["req"]["household_id"])
    assert len([m for m in members if m.__class__.__name__ == "Dependant"]) == MAX_DEPENDANTS_PER_HOUSEHOLD


def test_parallel_relative_declarations_store_exactly_the_limit(world, monkeypatch):
    from functions.identity.dynamo import DynamoIdentityStore
    from functions.identity.service import MAX_RELATIVE_DECLARATIONS

    service = bootstrap.identity()
    caller = service.caller_from(service.login_state("d-req"))
    outcomes = race(monkeypatch, DynamoIdentityStore, "put_declaration", 25,
                    lambda n: service.declare_relative(caller, f"hh_other{n:02d}", "sibling"))
    assert outcomes.count("ok") == MAX_RELATIVE_DECLARATIONS and outcomes.count("LIMIT_EXCEEDED") == 5
    assert len(service.store.declarations_by(world["req"]["household_id"])) == MAX_RELATIVE_DECLARATIONS


# --- 8. household ids are not derivable from an address ----------------------------------------

def test_household_ids_are_random_and_strangers_cannot_tell_registered_ones(world):
    from functions.core.ids import derived_id

    client = world["client"]
    household_id = world["req"]["household_id"]
    assert household_id != derived_id("hh", "test", "3", "1", "502")  # what the old scheme gave
    stranger, _ = verified_resident(client, "d-probe", building="8", unit="1", room="801")
    answers = []
    for target in (household_id, "hh_not_registered_anywhere"):
        response = client.http.post("/v1/transfers", body=as_json({"to": {"household_id": target}, "amount": 1}),
                                    headers=json_headers(stranger, f"probe-{target}"))
        answers.append((response.status_code, response.json_body["code"]))
    assert answers == [(422, "NOT_RELATIVE")] * 2


# --- 4. claims are bounded ----------------------------------------------------------------------

@pytest.fixture
def limits(monkeypatch):
    """The product's own time limits (the test community widens them for the other tests)."""
    for name in ("TIMEBANK_CHECKIN_EARLY_MINUTES", "TIMEBANK_CLAIM_TOLERANCE_MINUTES"):
        monkeypatch.delenv(name)
    bootstrap.reset()
    yield
    bootstrap.reset()


def at(moment):
    clock.set_clock(lambda: moment)


def accepted(world, **need):
    request = post(world, **need).json_body
    assert act(world, request["id"], "accept").status_code == 200
    return request


def test_start_at_is_at_most_the_horizon_ahead(world, limits):
    far = post(world, key="far", start=NOW + timedelta(days=91))
    assert far.status_code == 400 and "start_at" in far.json_body["details"]["fields"]
    assert post(world, key="near", start=NOW + timedelta(days=89)).status_code == 201
    year_9999 = world["client"].http.post("/v1/requests", headers=json_headers(world["requester"], "9999"), body=as_json(
        {"category": "tutoring", "title": "x", "description": "", "duration_minutes": 60,
         "start_at": "9999-12-31T23:00:00+08:00"}))
    assert year_9999.status_code == 400


def test_check_in_only_within_its_window_around_the_start(world, limits):
    start = NOW + timedelta(days=3)
    request = accepted(world, start=start)
    early = act(world, request["id"], "check-in")  # 400 days early was accepted before
    assert early.status_code == 422 and early.json_body["code"] == "CHECK_IN_TOO_EARLY"
    at(start + timedelta(hours=49))
    late = act(world, request["id"], "check-in")
    assert late.status_code == 422 and late.json_body["code"] == "BACKDATED"
    assert late.json_body["details"]["limit"] == "backdating_window"
    at(start - timedelta(minutes=90))
    assert act(world, request["id"], "check-in").status_code == 200


def test_credited_minutes_are_bounded_by_the_checked_in_time_and_the_category(world, limits):
    start = NOW + timedelta(hours=1)
    parcel = accepted(world, key="parcel", category="parcel", minutes=20, start=start)
    at(start)
    assert act(world, parcel["id"], "check-in").status_code == 200
    at(start + timedelta(minutes=20))
    whole_day = act(world, parcel["id"], "complete", body={"minutes": 1440})
    assert whole_day.status_code == 422 and whole_day.json_body["code"] == "LIMIT_EXCEEDED"
    assert whole_day.json_body["details"] == {"limit": "max_minutes", "max": 60}
    over = act(world, parcel["id"], "complete", body={"minutes": 50})  # 20 served + 15 tolerance
    assert over.status_code == 422 and over.json_body["details"] == {"limit": "checked_in_minutes", "max": 35}
    assert act(world, parcel["id"], "complete", body={"minutes": 30}).status_code == 200


# --- 1. every non-final state has an exit --------------------------------------------------------

def fire(world, schedule):
    from pathlib import Path

    event = json.loads((Path(__file__).resolve().parents[2] / "events" / f"{schedule}.json").read_text())
    return world["app"].handler_map[schedule](event, None)


def balances(world, who="requester"):
    return world["client"].http.get("/v1/accounts/me", headers=world[who]).json_body["household"]["balances"]["service"]


def test_an_admin_resolves_a_service_in_progress(world):
    request = accepted(world)
    assert act(world, request["id"], "check-in").status_code == 200
    resolved = world["client"].http.post(f"/v1/admin/requests/{request['id']}/resolve", headers=admin_headers(
        world["client"]), body=as_json({"outcome": "pay", "reason": "志愿者已服务，忘了点完成"}))
    assert resolved.status_code == 200 and resolved.json_body["status"] == "settled"
    assert resolved.json_body["credits_paid"] == 60  # the booked hour (the test community's tutoring is ×1)
    assert balances(world)["pending"] == 0


@pytest.mark.parametrize("action", ["release", "cancel"])
def test_an_accepted_service_nobody_checks_in_to_is_released_or_cancelled(world, monkeypatch, action):
    from functions.safety.dynamo import InsuranceRecordItem

    monkeypatch.setenv("TIMEBANK_NO_SHOW_ACTION", action)
    bootstrap.reset()
    start = NOW + timedelta(hours=2)
    request = accepted(world, start=start)
    drain(world["app"], "volunteer-stats")
    at(start + timedelta(minutes=20))
    assert fire(world, "watch-services")["released"] == 0  # not yet
    at(start + timedelta(minutes=31))
    result = fire(world, "watch-services")
    stored = world["client"].http.get(f"/v1/requests/{request['id']}", headers=world["requester"]).json_body
    if action == "release":
        assert result["released"] == 1
        assert (stored["status"], stored["volunteer_id"], stored["no_shows"]) == ("open", None, 1)
        assert balances(world)["pending"] == stored["credits_held"]  # still held for the next volunteer
        # The released need no longer says it is insured: the next acceptance brings its own record.
        assert bootstrap.request_store().get(request["id"]).insured is None
        other, _ = verified_resident(world["client"], "d-other", building="6", unit="1", room="601")
        assert act(world, request["id"], "accept", other).status_code == 200  # open to others until its end
        assert bootstrap.request_store().get(request["id"]).insured is True
    else:
        assert result["cancelled"] == 1 and stored["status"] == "cancelled" and balances(world)["pending"] == 0
    drain(world["app"], "insurance")
    drain(world["app"], "volunteer-stats")
    stats = bootstrap.volunteer_store().get_profile(world["vol"]["id"]).stats
    assert (stats.accepted, stats.failed) == (1, 1)  # the no-show counts against the volunteer
    first = [r for r in InsuranceRecordItem.scan() if r.volunteer_id == world["vol"]["id"]]
    assert action == "release" or [r.status for r in first] == ["cancelled"]
    bootstrap.reset()


@pytest.mark.parametrize("action", ["flag", "complete"])
def test_a_service_left_in_progress_is_flagged_or_completed(world, monkeypatch, action):
    monkeypatch.setenv("TIMEBANK_OVERDUE_ACTION", action)
    bootstrap.reset()
    start = NOW + timedelta(hours=1)
    request = accepted(world, start=start)
    at(start)
    assert act(world, request["id"], "check-in").status_code == 200
    at(start + timedelta(minutes=60) + timedelta(hours=11))
    assert fire(world, "watch-services")["flagged"] + fire(world, "watch-services")["completed"] == 0
    at(start + timedelta(minutes=60) + timedelta(hours=12, minutes=1))
    result = fire(world, "watch-services")
    stored = world["client"].http.get(f"/v1/requests/{request['id']}", headers=world["requester"]).json_body
    if action == "flag":
        assert result["flagged"] == 1 and stored["status"] == "in_service" and stored["overdue"] is True
        listed = world["client"].http.get("/v1/admin/requests?status=in_service",
                                          headers=admin_headers(world["client"])).json_body["items"]
        assert [r["id"] for r in listed if r["overdue"]] == [request["id"]]
        assert fire(world, "watch-services")["flagged"] == 0  # once
    else:
        assert result["completed"] == 1
        assert (stored["status"], stored["completed_minutes"]) == ("completed", 60)
    bootstrap.reset()
