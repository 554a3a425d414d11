"""Community activities (社群活动) as plain rules: the activity and its participants, who may
sign up, check in and out when, what each participant is awarded, and the events other
domains learn from (insurance).

Lifecycle of an activity: ``published`` → (closing) → ``closed``. Closing starts with a mark on
the activity (``closing``) that stops every further check-in, check-out and sign-up (their
writes are conditional on the activity being published and not closing), so the set of
participants a close pays is fixed before the first payment; the payments then go out in
batches of transactions (``AWARD_BATCH`` participants each), every batch idempotent through
transfer ids derived from (activity, participant), and the result is written on the activity
last. A second close — sequential or concurrent — computes the same batches and finds each
already paid.

A participant: ``signed_up`` → ``checked_in`` → ``checked_out``; a cancelled sign-up is kept as
``cancelled`` (and may sign up again: its ``seq`` counts the sign-ups, so each one is its own
insurance record and its own event).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from functions.core.errors import BusinessRuleViolation, Conflict, InvalidState
from functions.core.events import DomainEvent, new_event
from functions.core.ids import derived_id

PUBLISHED, CLOSED = "published", "closed"
ACTIVITY_STATUSES = (PUBLISHED, CLOSED)
UPCOMING, ONGOING, ENDED = "upcoming", "ongoing", "ended"
PHASES = (UPCOMING, ONGOING, ENDED, CLOSED)

NONE, SIGNED_UP, CHECKED_IN, CHECKED_OUT, CANCELLED = "none", "signed_up", "checked_in", "checked_out", "cancelled"
ACTIVE = frozenset({SIGNED_UP, CHECKED_IN, CHECKED_OUT})

PER_HOUR, FIXED = "per_hour", "fixed"
AWARD_MODES = (PER_HOUR, FIXED)
DEFAULT_ASSET = "volunteer"
AWARD_KIND = "activity_award"

CHECK_IN_EARLY = timedelta(minutes=30)     # participants may check in this long before the start
CHECK_OUT_GRACE = timedelta(hours=2)       # and check out until this long after the end
MAX_DURATION = timedelta(hours=24)
MAX_CAPACITY = 10_000
# Participants paid per transaction: each costs a transfer, its balance item and its
# participant item (3 items), the issuance shards they draw on at most one each: with 20,
# 60 + at most 20 = 80 items, under DynamoDB's 100 whatever the number of ledger shards.
AWARD_BATCH = 20

# Rounding of the attended time under per_hour, as the design's tariffs round (a band is
# (up to this many minutes of the last hour, credited as this many)): ≤ 15 min → 0,
# ≤ 45 → half an hour, ≤ 60 → one hour. ``AssetRules`` may give an asset its own.
DEFAULT_ROUNDING: tuple[tuple[int, int], ...] = ((15, 0), (45, 30), (60, 60))

SIGNED_UP_EVENT, SIGNUP_CANCELLED_EVENT = "activity.signed_up", "activity.signup_cancelled"


class ActivityFull(Conflict):
    code = "ACTIVITY_FULL"
    default_message = "活动名额已满"


class AlreadySignedUp(Conflict):
    code = "ALREADY_SIGNED_UP"
    default_message = "您已报名该活动"


class InvalidCode(BusinessRuleViolation):
    code = "INVALID_CODE"
    default_message = "现场签到码错误或已过期"


class Backdated(BusinessRuleViolation):
    code = "BACKDATED"
    default_message = "时间早于允许补录的期限"


@dataclass(frozen=True)
class Award:
    mode: str        # per_hour: ``minutes`` per hour attended; fixed: ``minutes`` for attending
    minutes: int


@dataclass(frozen=True)
class Activity:
    id: str
    title: str
    description: str
    place: str
    start_at: datetime
    end_at: datetime
    capacity: int
    asset: str
    award: Award
    requires_insurance: bool
    status: str
    created_at: datetime
    created_by: str
    content_hash: str
    signed_up: int = 0
    closing: bool = False
    awarded: int | None = None
    minutes_total: int | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None

    def phase(self, now: datetime) -> str:
        if self.status == CLOSED:
            return CLOSED
        if now < self.start_at:
            return UPCOMING
        return ONGOING if now < self.end_at else ENDED

    @property
    def open_for_changes(self) -> bool:
        return self.status == PUBLISHED and not self.closing


@dataclass(frozen=True)
class Participant:
    activity_id: str
    resident_id: str
    household_id: str
    openid: str
    status: str
    seq: int
    signed_up_at: datetime
    checked_in_at: datetime | None = None
    checked_out_at: datetime | None = None
    award_minutes: int | None = None
    award_transfer_id: str | None = None

    @property
    def subject(self) -> str:
        """This sign-up (the n-th of the resident for the activity): the insurance record's key."""
        return insured_subject(self.activity_id, self.resident_id, self.seq)


def insured_subject(activity_id: str, resident_id: str, seq: int) -> str:
    return f"{activity_id}.{resident_id}.{seq}"


@dataclass(frozen=True)
class CloseResult:
    awarded: int
    minutes_total: int


# --- the rules ---------------------------------------------------------------------------------

def _require_open(activity: Activity) -> None:
    if not activity.open_for_changes:
        raise InvalidState("活动已结束结算，不能再报名或签到", {"status": activity.status,
                                                       "closing": activity.closing})


def may_sign_up(activity: Activity, current: Participant | None, now: datetime) -> None:
    _require_open(activity)
    if now >= activity.end_at:
        raise InvalidState("活动已结束", {"end_at": activity.end_at.isoformat()})
    if current is not None and current.status in ACTIVE:
        raise AlreadySignedUp()
    if activity.signed_up >= activity.capacity:
        raise ActivityFull(details={"capacity": activity.capacity})


def may_cancel_signup(activity: Activity, current: Participant | None, now: datetime) -> None:
    from functions.core.errors import NotFound

    if current is None or current.status not in ACTIVE:
        raise NotFound("您未报名该活动", {"activity_id": activity.id})
    _require_open(activity)
    if now >= activity.start_at or current.status != SIGNED_UP:
        raise InvalidState("活动开始后不能取消报名", {"start_at": activity.start_at.isoformat()})


def may_check_in(activity: Activity, participant: Participant | None, now: datetime) -> None:
    _require_participant(participant)
    _require_open(activity)
    if not activity.start_at - CHECK_IN_EARLY <= now < activity.end_at:
        raise InvalidState("不在活动签到时间内", {"start_at": activity.start_at.isoformat(),
                                             "end_at": activity.end_at.isoformat()})
    if participant.status == CHECKED_OUT:
        raise InvalidState("已签退", {"status": participant.status})


def may_check_out(activity: Activity, participant: Participant | None, now: datetime) -> None:
    _require_participant(participant)
    _require_open(activity)
    if participant.status == SIGNED_UP:
        raise InvalidState("请先签到", {"status": participant.status})
    if participant.status == CHECKED_IN and now > activity.end_at + CHECK_OUT_GRACE:
        raise InvalidState("已过签退时间", {"end_at": activity.end_at.isoformat()})


def _require_participant(participant: Participant | None) -> None:
    from functions.core.errors import Forbidden

    if participant is None or participant.status not in ACTIVE:
        raise Forbidden("只有已报名的居民可以签到签退")


def may_close(activity: Activity, now: datetime) -> None:
    if activity.status == PUBLISHED and now < activity.start_at:
        raise InvalidState("活动尚未开始，不能结算", {"start_at": activity.start_at.isoformat()})


def attended_minutes(activity: Activity, participant: Participant) -> int:
    """Whole minutes of the activity the participant was there for: check-in to check-out,
    within the activity's own start and end."""
    if participant.checked_in_at is None or participant.checked_out_at is None:
        return 0
    start = max(participant.checked_in_at, activity.start_at)
    end = min(participant.checked_out_at, activity.end_at)
    return max(0, int((end - start).total_seconds() // 60))


def rounded(minutes: int, bands: tuple[tuple[int, int], ...]) -> int:
    whole, rest = divmod(minutes, 60)
    if rest and bands:
        rest = next((credit for top, credit in bands if rest <= top), rest)
    return whole * 60 + rest


def award_for(activity: Activity, participant: Participant,
              bands: tuple[tuple[int, int], ...] = DEFAULT_ROUNDING) -> int:
    """What closing pays the participant: nothing unless checked in and out; fixed: the stated
    amount; per_hour: the attended time under the asset's rounding × the rate per hour, rounded
    down (in the community's favour)."""
    if participant.status != CHECKED_OUT:
        return 0
    if activity.award.mode == FIXED:
        return activity.award.minutes
    return int(Fraction(rounded(attended_minutes(activity, participant), bands) * activity.award.minutes, 60))


def award_transfer_id(activity_id: str, resident_id: str) -> str:
    """One award per (activity, participant), forever: the id every close derives."""
    return derived_id("tr", "activity-award", activity_id, resident_id)


def batches(items: list[Any], size: int = AWARD_BATCH) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# --- events --------------------------------------------------------------------------------------

def _iso(value: datetime) -> str:
    return value.isoformat()


def signed_up_event(activity: Activity, participant: Participant) -> DomainEvent:
    """Insurance writes a record for it when the activity requires insurance; statistics count the
    participant active (ids and times only)."""
    return new_event(SIGNED_UP_EVENT, activity.id, participant.signed_up_at, {
        "resident_id": participant.resident_id, "household_id": participant.household_id, "seq": participant.seq,
        "subject": participant.subject, "start_at": _iso(activity.start_at), "end_at": _iso(activity.end_at),
        "requires_insurance": activity.requires_insurance, "title": activity.title},
        discriminator=participant.subject)


def signup_cancelled_event(activity: Activity, participant: Participant, at: datetime) -> DomainEvent:
    return new_event(SIGNUP_CANCELLED_EVENT, activity.id, at, {
        "resident_id": participant.resident_id, "seq": participant.seq, "subject": participant.subject,
        "requires_insurance": activity.requires_insurance}, discriminator=participant.subject)


@dataclass(frozen=True)
class NewActivity:
    title: str
    description: str
    place: str
    start_at: datetime
    end_at: datetime
    capacity: int
    asset: str
    award: Award
    requires_insurance: bool = False
