"""Activity reminders: every few minutes, each participant of an activity that starts within
the lead time (``reminder_lead_minutes``) gets ONE reminder, if they consented.

The same rules as the service reminders (``functions/notifications/reminders.py``): the
channel is notifications' ``deliver_once`` with the key ``reminder#<activity>#<resident>``, a
conditional claim made before sending, so a schedule that fires twice, overlaps itself or is
retried sends nothing twice; a one-time consent is used per message and without one nothing is
sent (recorded as skipped). Each run first reads which keys were claimed (one batch read per
100), so participants reminded already cost no writes on the next runs.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from functions.activities import model as am
from functions.activities.model import Activity, Participant
from functions.activities.ports import ActivityStore, ReminderChannel
from functions.core import clock
from functions.core.observability import logger

DETAIL_PAGE = "pages/activities/detail?id={activity_id}"
NOTE = "您报名的社区活动即将开始"


def reminder_key(activity_id: str, resident_id: str) -> str:
    return f"reminder#{activity_id}#{resident_id}"


def reminder_message(activity: Activity) -> dict[str, str]:
    return {"title": activity.title,
            "start_at": activity.start_at.astimezone(clock.CHINA_TZ).strftime("%Y-%m-%d %H:%M"),
            "note": f"{NOTE}：{activity.place}"}


class ActivityReminders:
    def __init__(self, store: ActivityStore, channel: ReminderChannel, lead: timedelta,
                 now: Callable[[], datetime] = clock.now):
        self.store, self.channel, self.lead, self.now = store, channel, lead, now

    def run(self) -> dict[str, int]:
        now = self.now()
        due: list[tuple[Activity, Participant]] = []
        for activity in self.store.starting_between(now, now + self.lead):
            if activity.status != am.PUBLISHED or activity.start_at <= now:
                continue
            due += [(activity, p) for p in self.store.participants(activity.id) if p.status == am.SIGNED_UP]
        keys = [reminder_key(a.id, p.resident_id) for a, p in due]
        done = self.channel.already_sent(keys)
        counts: dict[str, int] = {"activities": len({a.id for a, _ in due}), "already": len(done & set(keys))}
        for (activity, participant), key in zip(due, keys):
            if key in done:
                continue
            outcome = self.channel.remind(key, participant, reminder_message(activity),
                                          DETAIL_PAGE.format(activity_id=activity.id))
            counts[outcome] = counts.get(outcome, 0) + 1
        logger.info("activity reminders run", extra={"counts": counts})
        return counts
