"""One-off backfill after issue 14's index changes (infra/README.md "Upgrading past issue 14"):
``python -m functions.requests.backfill`` against a stack's tables, once, after the last index
step is ACTIVE.

Items written before the change lack the sparse keys the new indexes are built on: an open
request has no ``feed``/``feed_category`` (so it is missing from the feed), a due one no
``due_shard`` (so the schedules miss it), any other no ``listed_status`` (the admin list). This pages through the requests table once (a
Scan: a migration, never a request path or a schedule) and sets what each item lacks, with a
condition on the status it read, so a request that moved meanwhile (the new code already
wrote its keys) is left alone. Re-running it changes nothing. The candidate items of matching
have their own: ``python -m functions.volunteers.backfill``.
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
        if record.status != lc.OPEN and record.listed_status is None:
            actions.append(RequestItem.listed_status.set(record.status))
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


def main() -> int:

    print({"requests": backfill_requests()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
