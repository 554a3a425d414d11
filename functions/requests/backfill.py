"""One-off backfill after issue 14's index changes (infra/README.md "Upgrading past issue 14"):
``python -m functions.requests.backfill`` against a stack's tables, once, after the last index
step is ACTIVE.

Items written before the change lack the sparse keys the new indexes are built on: an open
request has no ``feed``/``feed_category`` (so it is missing from the feed), a due one no
``due_shard`` (so the schedules miss it). This pages through the requests table once (a
Scan: a migration, never a request path or a schedule) and sets what each item lacks, with a
condition on the status it read, so a request that moved meanwhile (the new code already
wrote its keys) is left alone. Re-running it changes nothing.
"""
from __future__ import annotations

import sys

from pynamodb.exceptions import UpdateError

from functions.requests import model as lc


def backfill_requests() -> dict[str, int]:
    from functions.requests.dynamo import RequestItem, due_shard

    counts = {"read": 0, "updated": 0, "moved_meanwhile": 0}
    for record in RequestItem.scan():
        counts["read"] += 1
        actions = []
        if record.status == lc.OPEN and (record.feed is None or record.feed_category is None):
            actions += [RequestItem.feed.set(lc.OPEN), RequestItem.feed_category.set(record.category)]
        if record.due_at and not record.due_shard:
            actions.append(RequestItem.due_shard.set(due_shard(record.request_id, record.status)))
        if not actions:
            continue
        try:
            record.update(actions=actions, condition=RequestItem.status == record.status)
            counts["updated"] += 1
        except UpdateError:
            counts["moved_meanwhile"] += 1
    return counts


def backfill_candidates() -> dict[str, int]:
    """``volunteer-categories`` items without the keys of ``by-place``/``by-spot``."""
    from functions.volunteers.dynamo import VolunteerCategoryItem, VolunteerItem, place_of, profile_from, spot_of

    counts = {"read": 0, "updated": 0}
    for record in VolunteerCategoryItem.scan():
        counts["read"] += 1
        if record.spot and record.place:
            continue
        try:
            owner = VolunteerItem.get(record.resident_id, consistent_read=True)
        except VolunteerItem.DoesNotExist:
            continue
        profile = profile_from(owner.resident_id, owner.body, int(owner.version))
        record.update(actions=[VolunteerCategoryItem.spot.set(spot_of(record.resident_id)),
                               VolunteerCategoryItem.place.set(place_of(profile.building, record.resident_id))])
        counts["updated"] += 1
    return counts


def main() -> int:
    import functions.app  # noqa: F401 — registers every table of this community

    print({"requests": backfill_requests(), "volunteer-categories": backfill_candidates()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
