"""The risk limits hold under concurrency because they are conditions of the settlement's own
transaction: two confirmations racing for a volunteer's last service of the day both plan
(a barrier before any commits), and only one settles; the other is LIMIT_EXCEEDED with nothing
written. moto calls are serialized (it is not thread-safe)."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta

import botocore.client

from functions.core import clock
from functions.core.caller import Caller
from functions.core.clock import CHINA_TZ
from functions.core.errors import TimebankError
from functions.ledger.model import CommitHooks
from functions.requests.service import NewRequest
from tests.property.ledger_support import BarrierHooks

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=CHINA_TZ)


def resident(openid: str, room: str) -> Caller:
    from functions import bootstrap

    registered = bootstrap.identity().register(Caller(openid=openid), name="居民", phone="13900005555",
                                                 building="7", unit="1", room=room, birth_year=1980)
    bootstrap.identity().verify("admin-test", registered.id)
    return Caller(openid, registered.id, registered.household_id, "verified", frozenset({"resident"}))


def test_two_settlements_racing_for_the_last_service_of_the_day(aws, monkeypatch):
    from functions import bootstrap

    monkeypatch.setenv("TIMEBANK_RISK_DAILY_SERVICES", "1")
    bootstrap.reset()
    clock.set_clock(lambda: NOW)
    volunteer, first, second = resident("race-vol", "1"), resident("race-a", "2"), resident("race-b", "3")
    service = bootstrap.requests()
    needs = []
    for n, requester in enumerate((first, second)):
        need = service.post(requester, NewRequest("tutoring", "辅导", "", NOW + timedelta(hours=2), 60), f"k{n}")
        service.accept(volunteer, need.id)
        service.check_in(volunteer, need.id, None)
        service.complete(volunteer, need.id, 60, None)
        needs.append((requester, need.id))

    lock = threading.RLock()
    original = botocore.client.BaseClient._make_api_call

    def serialized(self, operation, params):
        with lock:
            return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", serialized)
    store = bootstrap.ledger().store
    store.hooks = BarrierHooks(2)
    results = []

    def confirm(requester, need_id):
        try:
            results.append(("ok", service.confirm(requester, need_id, None, None).status))
        except TimebankError as error:
            results.append((error.code, error.details.get("limit")))

    threads = [threading.Thread(target=confirm, args=pair) for pair in needs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    store.hooks = CommitHooks()
    monkeypatch.undo()
    assert sorted(results) == [("LIMIT_EXCEEDED", "daily_services"), ("ok", "settled")]
    statuses = sorted(bootstrap.request_store().get(need_id).status for _, need_id in needs)
    assert statuses == ["completed", "settled"]
    assert bootstrap.risk().counters.get(f"vol#{volunteer.resident_id}#2026-12-01").services == 1
    assert bootstrap.ledger().check()["ok"]
