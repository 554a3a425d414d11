"""Reminders before services: every few minutes, each participant of an accepted service that
starts within the lead time gets ONE reminder.

"Never twice" rests on ``NotificationService.deliver_once`` with the key
``reminder#<request>#<resident>``: the claim is a conditional put made before sending, so a
schedule that fires twice, overlaps itself or is retried cannot send a second one. A crash
between claim and send loses that reminder (we err towards at most once); a transient WeChat
failure releases the claim, so the next run, still inside the lead time, tries again.
Each run first reads which reminders were claimed already (one batch read) so that the
services inside the window cost no writes on the runs after their reminders went out.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from functions.core import clock
from functions.core.observability import logger
from functions.notifications.model import REMINDER, DeliveryOutcome
from functions.notifications.ports import Contacts, UpcomingServices
from functions.notifications.service import NotificationService
from functions.requests import model as lc
from functions.requests.model import ServiceRequest

DEFAULT_LEAD = timedelta(minutes=60)
DETAIL_PAGE = "pages/requests/detail?id={request_id}"
REQUESTER, VOLUNTEER = "requester", "volunteer"
NOTES = {REQUESTER: "您发布的需求即将开始服务", VOLUNTEER: "您接下的服务即将开始，请准时到达"}


@dataclass(frozen=True)
class Participant:
    request: ServiceRequest
    resident_id: str
    household_id: str | None
    role: str

    @property
    def key(self) -> str:
        return reminder_key(self.request.id, self.resident_id)


def reminder_key(request_id: str, resident_id: str) -> str:
    return f"reminder#{request_id}#{resident_id}"


def participants(request: ServiceRequest) -> list[Participant]:
    """The requester and the volunteer (a dependant beneficiary has no phone: the requester is told)."""
    people = [Participant(request, request.requester_id, request.household_id, REQUESTER)]
    if request.volunteer_id:
        people.append(Participant(request, request.volunteer_id, request.volunteer_household_id, VOLUNTEER))
    return people


class ReminderService:
    def __init__(self, upcoming: UpcomingServices, contacts: Contacts, notifications: NotificationService,
                 lead: timedelta = DEFAULT_LEAD, now: Callable[[], datetime] = clock.now):
        self.upcoming, self.contacts, self.notifications = upcoming, contacts, notifications
        self.lead, self.now = lead, now

    def run(self) -> dict[str, int]:
        now = self.now()
        due = [p for request in self.upcoming.starting_between(now, now + self.lead)
               if request.status == lc.ACCEPTED for p in participants(request)]
        done = self.notifications.already_claimed(p.key for p in due)
        counts: dict[str, int] = {"services": len({p.request.id for p in due}), "already": len(done)}
        for participant in due:
            if participant.key in done:
                continue
            outcome = self._remind(participant)
            counts[outcome] = counts.get(outcome, 0) + 1
        logger.info("reminders run", extra={"counts": counts})
        return counts

    def _remind(self, participant: Participant) -> str:
        openid = self.contacts.openid_of(participant.resident_id, participant.household_id)
        if openid is None:
            logger.warning("reminder recipient unknown", extra={"request_id": participant.request.id,
                                                                "role": participant.role})
            return "no_contact"
        request = participant.request
        outcome = self.notifications.deliver_once(
            participant.key, openid=openid, template=REMINDER, data=reminder_message(request, participant.role),
            page=DETAIL_PAGE.format(request_id=request.id), recipient_id=participant.resident_id,
            request_id=request.id)
        return outcome.value if outcome is not DeliveryOutcome.DUPLICATE else "already"


def reminder_message(request: ServiceRequest, role: str) -> dict[str, str]:
    return {"title": request.title,
            "start_at": request.start_at.astimezone(clock.CHINA_TZ).strftime("%Y-%m-%d %H:%M"),
            "note": NOTES[role]}
