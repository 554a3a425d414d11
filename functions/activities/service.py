"""Activity use cases: publish, list and read, sign up and cancel, the on-site code, check-in and
check-out, and the close that awards everyone who attended, from issuance, exactly once."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from functions.activities import model as am
from functions.activities.codes import OnSiteCodes, ShownCode
from functions.activities.model import (AWARD_KIND, Activity, CloseResult, InvalidCode, NewActivity, Participant,
                                        award_for, award_transfer_id, batches, signed_up_event,
                                        signup_cancelled_event)
from functions.activities.ports import ActivityStore, AssetRules, AwardLedger
from functions.core import clock
from functions.core.caller import Caller
from functions.core.errors import IdempotencyMismatch, InvalidState
from functions.core.events import DomainEvent, EventRelay, Outbox
from functions.core.ids import content_hash, derived_id, new_id
from functions.core.observability import count, logger
from functions.core.validation import field_error
from functions.ledger.accounts import ISSUANCE, resident_account
from functions.ledger.model import Transfer


class ActivityService:
    def __init__(self, store: ActivityStore, ledger: AwardLedger, codes: OnSiteCodes, outbox: Outbox,
                 relay: EventRelay, assets: AssetRules, now: Callable[[], datetime] = clock.now,
                 backdating_window_hours: int = 48):
        self.store, self.ledger, self.codes = store, ledger, codes
        self.outbox, self.relay, self.assets, self.now = outbox, relay, assets, now
        self.backdating_window = timedelta(hours=backdating_window_hours)

    # --- publishing -----------------------------------------------------------------------------
    def publish(self, caller: Caller, new: NewActivity, idempotency_key: str | None) -> tuple[Activity, bool]:
        """(activity, created). With an Idempotency-Key a replay returns the first activity."""
        now = self.now()
        # An activity older than the community's back-dating window is the risk control's
        # refusal (the same stable code as a back-dated service), not a malformed body.
        if new.start_at < now - self.backdating_window:
            raise am.Backdated(details={"limit": "backdating_window",
                                        "window_hours": int(self.backdating_window.total_seconds() // 3600)})
        if new.start_at <= now:
            raise field_error("start_at", "活动开始时间须晚于现在")
        if new.end_at <= new.start_at:
            raise field_error("end_at", "结束时间须晚于开始时间")
        if new.end_at - new.start_at > am.MAX_DURATION:
            raise field_error("end_at", "单次活动最长 24 小时")
        fingerprint = content_hash(new.title, new.description, new.place, clock.isoformat(new.start_at),
                                   clock.isoformat(new.end_at), new.capacity, new.asset, new.award.mode,
                                   new.award.minutes, new.requires_insurance)
        activity_id = derived_id("act", caller.openid, idempotency_key) if idempotency_key else new_id("act")
        activity = Activity(
            id=activity_id, title=new.title, description=new.description, place=new.place,
            start_at=new.start_at, end_at=new.end_at, capacity=new.capacity, asset=new.asset, award=new.award,
            requires_insurance=new.requires_insurance, status=am.PUBLISHED, created_at=now,
            created_by=caller.actor, content_hash=fingerprint)
        if self.store.create(activity):
            count("ActivityPublished")
            return activity, True
        existing = self.store.get(activity_id)
        if existing.content_hash != fingerprint:
            raise IdempotencyMismatch()
        return existing, False

    # --- reading --------------------------------------------------------------------------------
    def get(self, activity_id: str) -> Activity:
        return self.store.get(activity_id)

    def page(self, phase: str, limit: int, cursor: dict | None):
        return self.store.page(phase, self.now(), limit, cursor)

    def mine(self, caller: Caller, activity_id: str) -> tuple[Activity, Participant | None]:
        activity = self.store.get(activity_id)
        return activity, self.store.participant(activity_id, caller.resident_id) if caller.resident_id else None

    # --- sign-up --------------------------------------------------------------------------------
    def sign_up(self, caller: Caller, activity_id: str) -> Participant:
        activity = self.store.get(activity_id)
        previous = self.store.participant(activity_id, caller.resident_id)
        now = self.now()
        am.may_sign_up(activity, previous, now)
        participant = Participant(activity_id=activity.id, resident_id=caller.resident_id,
                                  household_id=caller.household_id, openid=caller.openid, status=am.SIGNED_UP,
                                  seq=(previous.seq + 1) if previous else 1, signed_up_at=now)
        event = signed_up_event(activity, participant)
        self.store.sign_up(activity, participant, previous, also=[self.outbox.write(event)])
        self._published([event], "ActivitySignedUp")
        return participant

    def cancel_signup(self, caller: Caller, activity_id: str) -> None:
        activity = self.store.get(activity_id)
        participant = self.store.participant(activity_id, caller.resident_id)
        now = self.now()
        am.may_cancel_signup(activity, participant, now)
        event = signup_cancelled_event(activity, participant, now)
        self.store.cancel_signup(activity, participant, also=[self.outbox.write(event)])
        self._published([event], "ActivitySignupCancelled")

    # --- on site ---------------------------------------------------------------------------------
    def code(self, activity_id: str) -> ShownCode:
        activity = self.store.get(activity_id)
        if not activity.open_for_changes:
            raise InvalidState("活动已结算，无需签到码", {"status": activity.status})
        return self.codes.current(activity.id, self.now())

    def check_in(self, caller: Caller, activity_id: str, code: str) -> Participant:
        return self._check(caller, activity_id, code, am.CHECKED_IN)

    def check_out(self, caller: Caller, activity_id: str, code: str) -> Participant:
        return self._check(caller, activity_id, code, am.CHECKED_OUT)

    def _check(self, caller: Caller, activity_id: str, code: str, to: str) -> Participant:
        activity = self.store.get(activity_id)
        participant = self.store.participant(activity_id, caller.resident_id)
        now = self.now()
        (am.may_check_in if to == am.CHECKED_IN else am.may_check_out)(activity, participant, now)
        if participant.status == to:
            return participant  # a retried tap: the first time stands
        if not self.codes.accepts(activity.id, code, now):
            raise InvalidCode()
        changes = {"status": to, "checked_in_at" if to == am.CHECKED_IN else "checked_out_at": now}
        return self.store.check(activity, participant, changes)

    # --- closing ----------------------------------------------------------------------------------
    def close(self, caller: Caller, activity_id: str) -> CloseResult:
        """Pay everyone checked in and out, from issuance to their personal account, in batches
        of ``AWARD_BATCH`` participants per transaction; then mark the activity closed. Every
        step is idempotent, so a second (or concurrent) close pays nothing more and returns the
        same result."""
        activity = self.store.get(activity_id)
        if activity.status == am.CLOSED:
            return CloseResult(activity.awarded or 0, activity.minutes_total or 0)
        now = self.now()
        am.may_close(activity, now)
        activity = self.store.mark_closing(activity)
        bands = self.assets.rounding(activity.asset)
        awards = [(p, award_for(activity, p, bands)) for p in self.store.participants(activity.id)]
        paid = [(p, minutes) for p, minutes in awards if minutes > 0]
        memo = f"社区活动：{activity.title}"[:200]
        for batch in batches(paid):
            commands, writes = [], []
            for participant, minutes in batch:
                transfer_id = award_transfer_id(activity.id, participant.resident_id)
                commands.append(Transfer(transfer_id, ISSUANCE, resident_account(participant.resident_id),
                                         activity.asset, minutes, AWARD_KIND, memo, caller.actor))
                writes.append(self.store.award_write(activity.id, participant.resident_id, minutes, transfer_id))
            self.ledger.execute(commands, also=writes)
        result = CloseResult(len(paid), sum(minutes for _, minutes in paid))
        closed = self.store.mark_closed(activity, result, caller.actor, now)
        logger.info("activity closed", extra={"activity_id": activity.id, "awarded": closed.awarded,
                                              "batches": len(batches(paid))})
        count("ActivityClosed")
        return CloseResult(closed.awarded or 0, closed.minutes_total or 0)

    def _published(self, events: list[DomainEvent], metric: str) -> None:
        self.relay.dispatch(events)
        count(metric)
