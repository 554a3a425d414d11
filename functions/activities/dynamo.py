"""DynamoDB adapters of activities.

- ``activities``  one item per activity; ``signed_up`` is the places taken, changed only by a
  transaction that also writes the participant, on the condition ``signed_up < capacity`` (and
  the activity open): 30 residents racing for 29 places leave exactly one refused. Index
  ``by-status`` (status + ``<start UTC>#<id>``): the lists and the reminder schedule are Queries.
- ``activity-participants``  (activity_id, resident_id): one Query lists an activity's
  participants (a close, a reminder run); the award of a close is written on the item in the
  award's own ledger transaction.

Sign-ups of one activity all touch its item, so DynamoDB cancels concurrent ones with
``TransactionConflict``; nothing was written then, and the same transaction is sent again
(with jittered backoff) until its condition decides.
"""
from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model

from functions.activities import model as am
from functions.activities.model import (Activity, ActivityFull, AlreadySignedUp, Award, CloseResult, Participant)
from functions.adapters.dynamo import (checked_cursor, condition_failed, dt, index_meta, iso, make_meta,
                                       new_transaction, only_conflicts, table)
from functions.core import clock
from functions.core.errors import Conflict, InvalidState, NotFound
from functions.core.validation import MAX_ID_LENGTH

SIGNUP_ATTEMPTS = 8


def start_key(at: datetime, activity_id: str = "") -> str:
    return f"{at.astimezone(timezone.utc):%Y%m%dT%H%M%S}#{activity_id}"


class ActivityByStatus(GlobalSecondaryIndex):
    Meta = index_meta("by-status")
    status = UnicodeAttribute(hash_key=True)
    start_key = UnicodeAttribute(range_key=True)


@table
class ActivityItem(Model):
    Meta = make_meta("activities")
    activity_id = UnicodeAttribute(hash_key=True)
    title = UnicodeAttribute()
    description = UnicodeAttribute()
    place = UnicodeAttribute()
    start_at = UnicodeAttribute()
    end_at = UnicodeAttribute()
    start_key = UnicodeAttribute()
    capacity = NumberAttribute()
    signed_up = NumberAttribute(default=0)
    asset = UnicodeAttribute()
    award_mode = UnicodeAttribute()
    award_minutes = NumberAttribute()
    requires_insurance = BooleanAttribute(default=False)
    status = UnicodeAttribute()
    closing = BooleanAttribute(null=True)
    created_at = UnicodeAttribute()
    created_by = UnicodeAttribute()
    content_hash = UnicodeAttribute()
    awarded = NumberAttribute(null=True)
    minutes_total = NumberAttribute(null=True)
    closed_at = UnicodeAttribute(null=True)
    closed_by = UnicodeAttribute(null=True)

    by_status = ActivityByStatus()


@table
class ParticipantItem(Model):
    Meta = make_meta("activity-participants")
    activity_id = UnicodeAttribute(hash_key=True)
    resident_id = UnicodeAttribute(range_key=True)
    household_id = UnicodeAttribute()
    openid = UnicodeAttribute()
    status = UnicodeAttribute()
    seq = NumberAttribute()
    signed_up_at = UnicodeAttribute()
    checked_in_at = UnicodeAttribute(null=True)
    checked_out_at = UnicodeAttribute(null=True)
    award_minutes = NumberAttribute(null=True)
    award_transfer_id = UnicodeAttribute(null=True)


def _activity(item: ActivityItem) -> Activity:
    return Activity(
        id=item.activity_id, title=item.title, description=item.description, place=item.place,
        start_at=clock.parse_iso(item.start_at), end_at=clock.parse_iso(item.end_at), capacity=int(item.capacity),
        asset=item.asset, award=Award(item.award_mode, int(item.award_minutes)),
        requires_insurance=bool(item.requires_insurance), status=item.status,
        created_at=clock.parse_iso(item.created_at), created_by=item.created_by, content_hash=item.content_hash,
        signed_up=int(item.signed_up or 0), closing=bool(item.closing),
        awarded=None if item.awarded is None else int(item.awarded),
        minutes_total=None if item.minutes_total is None else int(item.minutes_total),
        closed_at=dt(item.closed_at), closed_by=item.closed_by)


def _participant(item: ParticipantItem) -> Participant:
    return Participant(
        activity_id=item.activity_id, resident_id=item.resident_id, household_id=item.household_id,
        openid=item.openid, status=item.status, seq=int(item.seq), signed_up_at=clock.parse_iso(item.signed_up_at),
        checked_in_at=dt(item.checked_in_at), checked_out_at=dt(item.checked_out_at),
        award_minutes=None if item.award_minutes is None else int(item.award_minutes),
        award_transfer_id=item.award_transfer_id)


def _open() -> Any:
    return (ActivityItem.status == am.PUBLISHED) & ActivityItem.closing.does_not_exist()


class AwardWrite:
    """A participant's award, written in the award batch's ledger transaction."""

    def __init__(self, activity_id: str, resident_id: str, minutes: int, transfer_id: str):
        self.activity_id, self.resident_id, self.minutes, self.transfer_id = activity_id, resident_id, minutes, transfer_id

    def add_to(self, transaction: Any) -> None:
        transaction.update(ParticipantItem(self.activity_id, self.resident_id),
                           actions=[ParticipantItem.award_minutes.set(self.minutes),
                                    ParticipantItem.award_transfer_id.set(self.transfer_id)],
                           condition=ParticipantItem.status == am.CHECKED_OUT)


class DynamoActivityStore:
    # --- activities ---
    def create(self, activity: Activity) -> bool:
        item = ActivityItem(
            activity.id, title=activity.title, description=activity.description, place=activity.place,
            start_at=iso(activity.start_at), end_at=iso(activity.end_at),
            start_key=start_key(activity.start_at, activity.id), capacity=activity.capacity, signed_up=0,
            asset=activity.asset, award_mode=activity.award.mode, award_minutes=activity.award.minutes,
            requires_insurance=activity.requires_insurance, status=activity.status,
            created_at=iso(activity.created_at), created_by=activity.created_by, content_hash=activity.content_hash)
        try:
            item.save(condition=ActivityItem.activity_id.does_not_exist())
        except PutError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def get(self, activity_id: str) -> Activity:
        if not activity_id or len(activity_id) > MAX_ID_LENGTH:
            raise NotFound("没有这个活动", {"activity_id": activity_id[:MAX_ID_LENGTH]})
        try:
            return _activity(ActivityItem.get(activity_id, consistent_read=True))
        except DoesNotExist:
            raise NotFound("没有这个活动", {"activity_id": activity_id}) from None

    def page(self, phase: str, now: datetime, limit: int,
             cursor: dict | None) -> tuple[list[Activity], dict | None]:
        status = am.CLOSED if phase == am.CLOSED else am.PUBLISHED
        last_key = checked_cursor(cursor, ("activity_id", "status", "start_key"), fixed={"status": status})
        now_key, now_iso = start_key(now), iso(now)
        if phase == am.UPCOMING:
            key, forward, keep = ActivityItem.start_key > now_key, True, None
        elif phase == am.ONGOING:
            key, forward, keep = ActivityItem.start_key <= now_key + "~", False, ActivityItem.end_at > now_iso
        elif phase == am.ENDED:
            key, forward, keep = ActivityItem.start_key <= now_key + "~", False, ActivityItem.end_at <= now_iso
        else:
            key, forward, keep = None, False, None
        items: list[Activity] = []
        while len(items) < limit:
            query = ActivityItem.by_status.query(status, range_key_condition=key, filter_condition=keep,
                                                 scan_index_forward=forward, limit=limit - len(items),
                                                 last_evaluated_key=last_key)
            items.extend(_activity(i) for i in query)
            last_key = query.last_evaluated_key
            if not last_key:
                break
        return items, last_key

    def starting_between(self, start: datetime, end: datetime, status: str = am.PUBLISHED) -> Iterable[Activity]:
        condition = ActivityItem.start_key.between(start_key(start), start_key(end) + "~")
        return [_activity(i) for i in ActivityItem.by_status.query(status, range_key_condition=condition)]

    # --- participants ---
    def participant(self, activity_id: str, resident_id: str | None) -> Participant | None:
        if not resident_id:
            return None
        try:
            return _participant(ParticipantItem.get(activity_id, resident_id, consistent_read=True))
        except DoesNotExist:
            return None

    def participants(self, activity_id: str) -> list[Participant]:
        return [_participant(i) for i in ParticipantItem.query(activity_id, consistent_read=True)]

    def sign_up(self, activity: Activity, participant: Participant, previous: Participant | None,
                also: Sequence[Any]) -> None:
        def write() -> None:
            with new_transaction() as transaction:
                if previous is None:
                    transaction.save(ParticipantItem(
                        participant.activity_id, participant.resident_id, household_id=participant.household_id,
                        openid=participant.openid, status=am.SIGNED_UP, seq=participant.seq,
                        signed_up_at=iso(participant.signed_up_at)),
                        condition=ParticipantItem.resident_id.does_not_exist())
                else:
                    transaction.update(ParticipantItem(participant.activity_id, participant.resident_id), actions=[
                        ParticipantItem.status.set(am.SIGNED_UP), ParticipantItem.seq.set(participant.seq),
                        ParticipantItem.signed_up_at.set(iso(participant.signed_up_at)),
                        ParticipantItem.openid.set(participant.openid),
                        ParticipantItem.household_id.set(participant.household_id),
                        ParticipantItem.checked_in_at.remove(), ParticipantItem.checked_out_at.remove()],
                        condition=ParticipantItem.status == am.CANCELLED)
                transaction.update(ActivityItem(activity.id), actions=[ActivityItem.signed_up.add(1)],
                                   condition=_open() & (ActivityItem.signed_up < ActivityItem.capacity))
                for extra in also:
                    extra.add_to(transaction)

        self._transact(write, lambda: self._signup_refusal(activity.id, participant.resident_id))

    def _signup_refusal(self, activity_id: str, resident_id: str) -> Exception:
        activity = self.get(activity_id)
        current = self.participant(activity_id, resident_id)
        if current is not None and current.status in am.ACTIVE:
            return AlreadySignedUp()
        if not activity.open_for_changes:
            return InvalidState("活动已结束结算，不能再报名", {"status": activity.status})
        if activity.signed_up >= activity.capacity:
            return ActivityFull(details={"capacity": activity.capacity})
        return Conflict("报名人数变化，请重试")

    def cancel_signup(self, activity: Activity, participant: Participant, also: Sequence[Any]) -> None:
        def write() -> None:
            with new_transaction() as transaction:
                transaction.update(ParticipantItem(participant.activity_id, participant.resident_id),
                                   actions=[ParticipantItem.status.set(am.CANCELLED)],
                                   condition=ParticipantItem.status == am.SIGNED_UP)
                transaction.update(ActivityItem(activity.id), actions=[ActivityItem.signed_up.add(-1)],
                                   condition=_open())
                for extra in also:
                    extra.add_to(transaction)

        self._transact(write, lambda: InvalidState("报名状态已变化，请刷新后重试", {"activity_id": activity.id}))

    def check(self, activity: Activity, participant: Participant, changes: Mapping[str, Any]) -> Participant:
        actions = [getattr(ParticipantItem, name).set(iso(value) if isinstance(value, datetime) else value)
                   for name, value in changes.items()]

        def write() -> None:
            with new_transaction() as transaction:
                transaction.condition_check(ActivityItem, activity.id, condition=_open())
                transaction.update(ParticipantItem(participant.activity_id, participant.resident_id),
                                   actions=actions, condition=ParticipantItem.status == participant.status)

        self._transact(write, lambda: InvalidState("活动或签到状态已变化，请刷新后重试",
                                                   {"activity_id": activity.id}))
        from dataclasses import replace

        return replace(participant, **changes)

    # --- closing ---
    def mark_closing(self, activity: Activity) -> Activity:
        try:
            ActivityItem(activity.id).update(actions=[ActivityItem.closing.set(True)],
                                             condition=ActivityItem.status == am.PUBLISHED)
        except UpdateError as error:
            if not condition_failed(error):
                raise
        return self.get(activity.id)

    def award_write(self, activity_id: str, resident_id: str, minutes: int, transfer_id: str) -> AwardWrite:
        return AwardWrite(activity_id, resident_id, minutes, transfer_id)

    def mark_closed(self, activity: Activity, result: CloseResult, actor: str, at: datetime) -> Activity:
        try:
            ActivityItem(activity.id).update(actions=[
                ActivityItem.status.set(am.CLOSED), ActivityItem.closing.remove(),
                ActivityItem.awarded.set(result.awarded), ActivityItem.minutes_total.set(result.minutes_total),
                ActivityItem.closed_at.set(iso(at)), ActivityItem.closed_by.set(actor)],
                condition=ActivityItem.status == am.PUBLISHED)
        except UpdateError as error:
            if not condition_failed(error):
                raise
        return self.get(activity.id)

    # --- plumbing ---
    @staticmethod
    def _transact(write: Any, refusal: Any) -> None:
        for attempt in range(SIGNUP_ATTEMPTS):
            try:
                write()
                return
            except TransactWriteError as error:
                if only_conflicts(error) and attempt < SIGNUP_ATTEMPTS - 1:
                    time.sleep(random.uniform(0, 0.01 * 2 ** attempt))
                    continue
                if only_conflicts(error):
                    raise Conflict("操作冲突，请重试") from error
                raise refusal() from None
