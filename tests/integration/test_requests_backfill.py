"""The one-off backfill of issue 14's sparse index keys (functions/requests/backfill.py)."""
from __future__ import annotations

from datetime import datetime, timedelta

from functions.core.clock import CHINA_TZ
from functions.requests.backfill import backfill_requests
from functions.volunteers.backfill import backfill_candidates

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=CHINA_TZ)


def old_request(request_id: str, status: str, due: bool):
    from functions.requests.dynamo import RequestItem

    # As the code before issue 14 wrote it: no feed, feed_category or due_shard.
    RequestItem(request_id, status=status, category="pet", title="t", description="d",
                start_at=NOW.isoformat(), duration_minutes=30, requester_id="res_r", household_id="hh_r",
                payer_account="household:hh_r", hold_transfer_id="tr", credits_held=30,
                created_at=NOW.isoformat(), created_key=f"20261201T010000.000000#{request_id}", content_hash="h",
                due_at=(NOW + timedelta(hours=1)).isoformat() if due else None).save()


def test_old_items_join_the_feed_and_due_indexes_once(aws):
    from functions.requests.dynamo import DynamoRequestStore

    old_request("req_open", "open", due=True)
    old_request("req_done", "settled", due=False)
    store = DynamoRequestStore(timedelta(hours=48))
    assert store.feed(None, 10, None, None)[0] == []
    assert backfill_requests() == {"read": 2, "updated": 2, "moved_meanwhile": 0}
    assert [r.id for r in store.by_status("settled", 10, None)[0]] == ["req_done"]
    assert [r.id for r in store.by_status("open", 10, None)[0]] == ["req_open"]
    assert [r.id for r in store.feed("pet", 10, None, None)[0]] == ["req_open"]
    assert [r.id for r in store.due("open", NOW + timedelta(hours=2))] == ["req_open"]
    assert backfill_requests()["updated"] == 0  # re-running changes nothing


def test_old_candidate_items_get_their_place(aws):
    from functions.volunteers.dynamo import DynamoVolunteerStore, VolunteerCategoryItem
    from tests.integration.test_matching_store import profile

    store = DynamoVolunteerStore()
    store.save_profile(profile("res_old", building="5"), None)
    for item in VolunteerCategoryItem.scan():  # as written before issue 14
        item.update(actions=[VolunteerCategoryItem.spot.remove(), VolunteerCategoryItem.place.remove()])
    assert store.candidates("pet", building="5", turn="x") == []
    assert backfill_candidates()["updated"] == 2
    assert [c.resident_id for c in store.candidates("pet", building="5", turn="x")] == ["res_old"]
