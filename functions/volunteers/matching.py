"""Matching with no waiting: when a need is posted, rank the volunteers who can help and notify
the best few at once.

``rank`` is a pure function. Who is a candidate:
  a verified resident with a saved volunteer profile that is accepting and is matchable for the
  request's category (declared it; for 志愿帮 has an approved skill) — and NEVER a member of
  the requester's household.
How candidates are ordered:
  1. same building as the requester first (a tier, not a weight: a neighbour in the building
     is always preferred, everything else orders within the tier);
  2. within a tier, a score: a weekly availability window covering the service start (more if
     it covers the whole service), reliability (completion rate and ratings, both smoothed so a
     newcomer starts in the middle rather than at the bottom), a 志愿帮 skill named in the
     request, minus a penalty per service accepted in the last 7 days (fairness of load);
  3. ties broken by a hash of (request, volunteer): deterministic, yet not always favouring the
     same person the way ordering by id would.

``Matcher.handle`` is the queue use case; see its docstring for what a duplicate delivery does.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Mapping, Protocol

from functions.core import clock
from functions.core.events import DomainEvent
from functions.core.messaging import PoisonMessage
from functions.core.observability import count, logger
from functions.requests import model as lc
from functions.requests.model import ServiceRequest
from functions.volunteers.model import VOLUNTEER_CATEGORY, Match, VolunteerProfile, skill_key
from functions.volunteers.ports import CandidateSource, MatchStore, Notify, Places, RequestSource

MATCH_TEMPLATE = "match"   # the notifications domain's logical template
RETRY = "retry"            # the delivery outcome that asks for the message to be retried

AVAILABLE_AT_START = 300
AVAILABLE_THROUGHOUT = 100
RELIABILITY_MAX = 200
RATING_MAX = 100
SKILL_NAMED = 150
LOAD_PENALTY = 60
LOAD_PENALTY_CAP = 6          # services; beyond that a volunteer is simply "busy"
RATING_PRIOR, RATING_PRIOR_WEIGHT = 4, 2   # a newcomer is rated as if twice 4★

DEFAULT_NOTIFY_COUNT = 3
MATCH_RETENTION = timedelta(days=7)   # after the service start a suggestion is pointless
DETAIL_PAGE = "pages/requests/detail?id={request_id}"


@dataclass(frozen=True)
class MatchRequest:
    """What ranking needs to know about a posted request."""
    id: str
    category: str
    household_id: str
    building: str | None
    start_at: datetime
    duration_minutes: int
    text: str = ""

    @classmethod
    def of(cls, request: ServiceRequest, building: str | None) -> "MatchRequest":
        return cls(id=request.id, category=request.category, household_id=request.household_id,
                   building=building, start_at=request.start_at, duration_minutes=request.duration_minutes,
                   text=f"{request.title} {request.description}")


@dataclass(frozen=True)
class Scored:
    volunteer: VolunteerProfile
    same_building: bool
    score: int
    tie_break: str

    @property
    def sort_key(self) -> tuple[int, int, str]:
        return (0 if self.same_building else 1, -self.score, self.tie_break)


def eligible(volunteer: VolunteerProfile, request: MatchRequest) -> bool:
    return (request.category in volunteer.matchable_categories()
            and volunteer.household_id is not None
            and volunteer.household_id != request.household_id)


def score(volunteer: VolunteerProfile, request: MatchRequest, now: datetime) -> Scored:
    points = 0
    if any(w.covers(request.start_at) for w in volunteer.availability):
        points += AVAILABLE_AT_START
        if any(w.covers_span(request.start_at, request.duration_minutes) for w in volunteer.availability):
            points += AVAILABLE_THROUGHOUT
    stats = volunteer.stats
    points += RELIABILITY_MAX * (stats.completed + 1) // (stats.completed + stats.failed + 2)
    weight = stats.rating_count + RATING_PRIOR_WEIGHT
    rating_total = stats.rating_sum + RATING_PRIOR * RATING_PRIOR_WEIGHT
    points += RATING_MAX * (rating_total - weight) // (4 * weight)   # mean 1★ → 0, 5★ → RATING_MAX
    if request.category == VOLUNTEER_CATEGORY and _skill_named(volunteer.skills, request.text):
        points += SKILL_NAMED
    points -= LOAD_PENALTY * min(stats.load(now), LOAD_PENALTY_CAP)
    same_building = volunteer.building is not None and volunteer.building == request.building
    tie = hashlib.sha256(f"{request.id}\x1f{volunteer.resident_id}".encode()).hexdigest()
    return Scored(volunteer, same_building, points, tie)


def _skill_named(skills: Iterable[str], text: str) -> bool:
    haystack = skill_key(text)
    return any(skill_key(name) and skill_key(name) in haystack for name in skills)


def rank(request: MatchRequest, candidates: Iterable[VolunteerProfile], now: datetime,
         limit: int | None = None) -> list[Scored]:
    """Eligible candidates, best first (each volunteer once)."""
    unique = {c.resident_id: c for c in candidates}
    scored = sorted((score(c, request, now) for c in unique.values() if eligible(c, request)),
                    key=lambda s: s.sort_key)
    return scored if limit is None else scored[:limit]


# --- the queue use case --------------------------------------------------------------------

class RetryLater(RuntimeError):
    """Some notifications failed transiently; the message is retried (sent ones are not resent)."""


@dataclass(frozen=True)
class MatchReport:
    request_id: str
    outcome: str                 # matched / duplicate / closed / no_candidates
    notified: Mapping[str, int]  # delivery outcome → count


class Matcher:
    def __init__(self, requests: RequestSource, places: Places, volunteers: CandidateSource,
                 matches: MatchStore, notifications: Notify,
                 category_name: Callable[[str], str], notify_count: int = DEFAULT_NOTIFY_COUNT,
                 now: Callable[[], datetime] = clock.now):
        self.requests, self.places, self.volunteers, self.matches = requests, places, volunteers, matches
        self.notifications, self.category_name = notifications, category_name
        self.notify_count, self.now = max(1, notify_count), now

    def handle(self, event: DomainEvent) -> MatchReport:
        """Match one ``request.posted`` message.

        A duplicate delivery has one effect: the chosen volunteers are written all at once and
        only if the request was never matched; a duplicate works on the recorded ones (even if
        a fresh ranking would now choose others), and every notification goes through
        ``deliver_once`` with a key per (request, volunteer), so nobody is notified twice —
        while a first attempt that crashed between recording and notifying is completed by the
        retry.
        """
        if event.type != lc.POSTED_EVENT:
            raise PoisonMessage(f"matching does not handle {event.type}")
        request_id = event.subject
        # The message follows the commit by SQS's latency: an eventually consistent read nearly
        # always sees it; only a miss pays for a consistent one.
        request = self.requests.find(request_id, consistent=False) or self.requests.find(request_id)
        if request is None:
            raise PoisonMessage(f"request {request_id} does not exist")
        if request.status != lc.OPEN:
            return MatchReport(request_id, "closed", {})
        now = self.now()
        building = self.places.building_of(request.household_id)
        candidates = self.volunteers.candidates(request.category, building=building, turn=request.id)
        ranked = rank(MatchRequest.of(request, building), candidates, now, self.notify_count)
        if not ranked:
            logger.info("no candidates for request", extra={"request_id": request_id, "category": request.category})
            return MatchReport(request_id, "no_candidates", {})
        chosen = [Match(request_id=request_id, volunteer_id=s.volunteer.resident_id, openid=s.volunteer.openid or "",
                        rank=i + 1, score=s.score, same_building=s.same_building, category=request.category,
                        matched_at=now, expires_at=request.start_at + MATCH_RETENTION)
                  for i, s in enumerate(ranked)]
        outcome = "matched"
        if not self.matches.record_matches(chosen):
            chosen, outcome = sorted(self.matches.matches_for(request_id), key=lambda m: m.rank), "duplicate"
        counts = self._notify(request, chosen)
        logger.info("request matched", extra={"request_id": request_id, "outcome": outcome,
                                              "candidates": len(chosen), "notified": counts})
        if counts.get("sent"):
            count("VolunteersNotified", counts["sent"])
        if counts.get(RETRY):
            raise RetryLater(f"{counts[RETRY]} notification(s) to retry")
        return MatchReport(request_id, outcome, counts)

    def _notify(self, request: ServiceRequest, matches: list[Match]) -> dict[str, int]:
        counts: dict[str, int] = {}
        category_name = self.category_name(request.category)
        for match in matches:
            note = "您所在楼栋的邻居需要帮助" if match.same_building else "附近邻居需要帮助，期待您接单"
            outcome = self.notifications.deliver_once(
                f"match#{request.id}#{match.volunteer_id}", openid=match.openid, template=MATCH_TEMPLATE,
                data=match_message(request, category_name, note),
                page=DETAIL_PAGE.format(request_id=request.id), recipient_id=match.volunteer_id,
                request_id=request.id)
            counts[outcome.value] = counts.get(outcome.value, 0) + 1
        return counts


def match_message(request: ServiceRequest, category_name: str, note: str) -> dict[str, str]:
    return {"category": category_name, "title": request.title,
            "start_at": request.start_at.astimezone(clock.CHINA_TZ).strftime("%Y-%m-%d %H:%M"), "note": note}

