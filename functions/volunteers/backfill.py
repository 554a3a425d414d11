"""One-off backfill after issue 14 (infra/README.md "Upgrading past issue 14"):
``python -m functions.volunteers.backfill``, once, after ``by-place`` and ``by-spot`` are ACTIVE.

``volunteer-categories`` items written before the change lack ``spot`` and ``place``, the keys of
the bounded candidate read; this pages through the table once (a Scan: a migration, never a
request path or a schedule) and sets them from each volunteer's profile. Re-running it
changes nothing.
"""
from __future__ import annotations

import sys


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

    print({"volunteer-categories": backfill_candidates()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
