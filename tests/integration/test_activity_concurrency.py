"""Activities under concurrency, on moto: 30 residents signing up at once for 29 places, and two
admins closing the same activity at once.

moto is not thread-safe, so every botocore call is serialized by a lock; that alone would let
the threads run one after another, so a barrier forces the interleaving under test — every
sign-up has read the activity (29 places free) before any writes; both closes have planned
each award batch before either commits it. Only the conditional writes stand between them and
a 30th place or a second payment.
"""
from __future__ import annotations

import threading
from datetime import timedelta

import botocore.client
import pytest

from functions.activities.dynamo import DynamoActivityStore
from functions.activities.model import Award, NewActivity, award_transfer_id
from functions.core.caller import Caller
from functions.core.errors import TimebankError
from functions.ledger.accounts import resident_account
from functions.ledger.model import CommitHooks
from tests.activity_support import END_OFFSET, START, Clock
from tests.property.ledger_support import BarrierHooks

ADMIN = Caller("admin-test", roles=frozenset({"admin"}))


@pytest.fixture
def serialized(monkeypatch):
    lock = threading.RLock()
    original = botocore.client.BaseClient._make_api_call

    def call(self, operation, params):
        with lock:
            return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)
    return monkeypatch


def residents(count: int, prefix: str) -> list[Caller]:
    from functions import bootstrap

    identity, out = bootstrap.identity(), []
    for n in range(count):
        registered = identity.register(Caller(openid=f"{prefix}-{n}"), name="居民", phone="13900003333",
                                       building="8", unit="1", room=f"{prefix}{n}", birth_year=1980)
        identity.verify("admin-test", registered.id)
        out.append(Caller(f"{prefix}-{n}", registered.id, registered.household_id, "verified",
                          frozenset({"resident"})))
    return out


def publish(capacity: int, **award) -> str:
    from functions import bootstrap

    new = NewActivity(title="义务植树", description="", place="北门绿地", start_at=START, end_at=START + END_OFFSET,
                      capacity=capacity, asset="volunteer", award=Award(**(award or {"mode": "fixed", "minutes": 30})))
    return bootstrap.activities().publish(ADMIN, new, None)[0].id


def race(attempts):
    results = []

    def run(attempt):
        try:
            results.append(("ok", attempt()))
        except TimebankError as error:
            results.append((error.status, error.code))

    threads = [threading.Thread(target=run, args=(a,)) for a in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == len(attempts), "a racer hung"
    return results


def test_thirty_residents_for_twenty_nine_places_leave_exactly_one_refused(aws, serialized):
    from functions import bootstrap

    Clock()
    people = residents(30, "race")
    activity_id = publish(capacity=29)
    barrier = threading.Barrier(30, timeout=60)
    original = DynamoActivityStore.sign_up

    def read_then_wait(self, *args, **kwargs):
        barrier.wait()   # every racer has read 29 free places and passed the rules
        return original(self, *args, **kwargs)

    serialized.setattr(DynamoActivityStore, "sign_up", read_then_wait)
    service = bootstrap.activities()
    results = race([lambda c=c: service.sign_up(c, activity_id) for c in people])
    serialized.undo()
    assert sorted(str(r[0]) for r in results).count("ok") == 29
    assert [r for r in results if r[0] != "ok"] == [(409, "ACTIVITY_FULL")]
    activity = bootstrap.activity_store().get(activity_id)
    assert activity.signed_up == 29
    assert sum(p.status == "signed_up" for p in bootstrap.activity_store().participants(activity_id)) == 29
    assert bootstrap.ledger().check()["ok"]


def test_two_closes_at_once_pay_every_participant_once(aws, serialized):
    from functions import bootstrap

    times = Clock()
    people = residents(45, "close")   # three award batches of 20, 20 and 5
    activity_id = publish(capacity=50, mode="per_hour", minutes=60)
    service = bootstrap.activities()
    for person in people:
        service.sign_up(person, activity_id)
    times.at(START)
    for person in people:
        service.check_in(person, activity_id, bootstrap.activity_codes().current(activity_id, times.now).code)
    times.at(START + timedelta(minutes=60))
    for person in people:
        service.check_out(person, activity_id, bootstrap.activity_codes().current(activity_id, times.now).code)
    times.at(START + END_OFFSET)
    store = bootstrap.ledger().store
    store.hooks = BarrierHooks(2)   # each batch: both closes planned before either commits
    try:
        results = race([lambda: service.close(ADMIN, activity_id), lambda: service.close(ADMIN, activity_id)])
    finally:
        store.hooks = CommitHooks()
    assert [r[0] for r in results] == ["ok", "ok"]
    assert results[0][1] == results[1][1] and results[0][1].awarded == 45 and results[0][1].minutes_total == 45 * 60
    ledger = bootstrap.ledger()
    for person in people:
        assert ledger.balances(resident_account(person.resident_id))["volunteer"].available == 60
        assert ledger.get_transfer(award_transfer_id(activity_id, person.resident_id)).amount == 60
    awards = [t for t in store.scan_transfers() if t.kind == "activity_award"]
    assert len(awards) == 45
    batches = {t.linked for t in awards}
    assert sorted(len(b) for b in batches) == [5, 20, 20]   # three transactions, each under 100 items
    assert ledger.check()["ok"]
    # and a third close, later, changes nothing
    assert service.close(ADMIN, activity_id) == results[0][1]
    assert len([t for t in store.scan_transfers() if t.kind == "activity_award"]) == 45
