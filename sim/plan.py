"""The seeded plan of ten months of a community: who lives where, who volunteers for what, and
every order's time, category, length and fate. A plan is a pure function of (seed, scale): it
does not depend on how many processes run it, so the counts it promises do not either.

Figures at scale 1.0 (the pilot, issue 14): 1,876 registered residents of a community of
~2,000 flats, 16,430 settled orders over 10 months (300 days). The fates of posted orders are
drawn with ``FATES``' weights, so about 16,430 / 0.892 ≈ 18,400 orders are posted. The other
traffic (activities, vouchers, family transfers, conversions, 志愿汇 exchanges, donations,
reads) is given per month at scale 1.0 and scales linearly.

Households are grouped by building; a shard (one process, one moto world) simulates whole
buildings, and every order's requester lives in its shard (the volunteer is drawn from the
shard's volunteers when the order is run).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

CHINA_TZ = timezone(timedelta(hours=8))
START = datetime(2026, 1, 5, 0, 0, tzinfo=CHINA_TZ)   # a Monday
DAYS = 300
PILOT_RESIDENTS = 1876
PILOT_FLATS = 2000
PILOT_SETTLED = 16430
BUILDINGS = 40

# Share of posted orders by category (the 6 built-ins + 志愿帮), and booked minutes per order.
CATEGORIES = {
    "pickup": (0.22, (30, 45, 60)),
    "childcare": (0.14, (60, 90, 120, 180)),
    "tutoring": (0.20, (60, 90, 120)),
    "parcel": (0.16, (15, 20, 30)),
    "companion": (0.12, (60, 90, 120, 180)),
    "pet": (0.08, (30, 60, 90)),
    "volunteer": (0.08, (60, 90, 120)),
}
# What becomes of a posted order.
FATES = {
    "confirm": 0.800,          # the requester confirms (settled)
    "auto_confirm": 0.080,     # nobody confirms: the auto-confirm schedule settles it after 48 h
    "dispute_pay": 0.012,      # disputed, an admin resolves it "pay" (settled)
    "dispute_refund": 0.006,   # disputed, an admin resolves it "refund" (cancelled)
    "cancel_open": 0.040,      # the requester cancels before anyone accepts
    "cancel_accepted": 0.022,  # the requester cancels after acceptance, before check-in
    "expire": 0.040,           # nobody accepts: the expire-requests schedule releases the hold
}
SETTLED_FATES = ("confirm", "auto_confirm", "dispute_pay")
SETTLED_SHARE = sum(FATES[f] for f in SETTLED_FATES)

# Other traffic per month at scale 1.0.
PER_MONTH = {
    "activity": 8,             # community activities published, each with sign-ups, check-in/out, close
    "voucher": 150,            # vouchers issued (redeemed 85 %, cancelled 5 %, left to expire 10 %)
    "family_transfer": 300,    # a volunteer moves earned minutes into the household
    "conversion": 100,         # 志愿时 → 服务时
    "exchange": 40,            # 志愿时 → 志愿汇 coins
    "donation": 30,            # minutes given to the community pool
    "statement": 600,          # a resident reads their statement
    "stats_read": 8,           # an admin opens the dashboard's statistics
}
ACTIVITY_CAPACITY = 30
VOLUNTEER_SHARE = 0.42         # residents who declare categories and accept orders


@dataclass(frozen=True)
class Resident:
    index: int
    openid: str
    household: int             # flat index
    building: str
    unit: str
    room: str
    birth_year: int
    joins_day: int             # day of registration
    volunteer_categories: tuple[str, ...]


@dataclass(frozen=True)
class Order:
    index: int
    posted_at: datetime
    category: str
    minutes: int
    lead_minutes: int          # from posting to the booked start
    fate: str
    household: int             # the requester's flat
    accept_after: int          # minutes after posting (for fates that are accepted)
    confirm_after: int         # minutes after completion
    served_delta: int          # minutes served minus booked


@dataclass(frozen=True)
class Event:
    """One piece of the other traffic: ``kind`` from PER_MONTH, at ``at``, by a draw ``pick``."""
    index: int
    kind: str
    at: datetime
    pick: float


@dataclass
class Plan:
    seed: int
    scale: float
    residents: list[Resident] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def building_shard(self, building: str, shards: int) -> int:
        return (int(building) - 1) % shards

    def shard(self, index: int, shards: int) -> "Plan":
        """The residents, orders and events of shard ``index`` of ``shards`` (whole buildings)."""
        buildings = {r.household: r.building for r in self.residents}
        mine = {h for h, b in buildings.items() if self.building_shard(b, shards) == index}
        part = Plan(self.seed, self.scale)
        part.residents = [r for r in self.residents if r.household in mine]
        part.orders = [o for o in self.orders if o.household in mine]
        # Community-wide traffic (activities, vouchers, ...) goes round-robin over the shards.
        part.events = [e for e in self.events if e.index % shards == index]
        return part


def _when(rng: random.Random, day: int) -> datetime:
    """A moment of ``day`` with the day's rhythm: most traffic between 07:00 and 21:00."""
    hour = rng.choice((7, 8, 8, 9, 9, 10, 10, 11, 12, 14, 15, 16, 17, 18, 18, 19, 19, 20, 20, 21))
    return START + timedelta(days=day, hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60))


def make_plan(seed: int = 1, scale: float = 1.0) -> Plan:
    rng = random.Random(seed)
    plan = Plan(seed, scale)
    flats = max(4, round(PILOT_FLATS * scale))
    residents = max(4, round(PILOT_RESIDENTS * scale))
    buildings = max(2, min(BUILDINGS, flats // 8))
    # About two thirds of the registered residents are alone in their household on the app;
    # the rest share it with one or two others.
    household_of: list[int] = []
    flat = 0
    while len(household_of) < residents:
        size = rng.choices((1, 2, 3), (0.68, 0.25, 0.07))[0]
        household_of.extend([flat % flats] * size)
        flat += 1
    household_of = household_of[:residents]
    for n, household in enumerate(household_of):
        building = household % buildings + 1
        unit = household // buildings % 4 + 1
        room = 101 + household // (buildings * 4)
        # 60 % register in the first month, the rest over the next eight.
        joins = rng.randrange(30) if rng.random() < 0.6 else rng.randrange(30, 270)
        categories: tuple[str, ...] = ()
        if rng.random() < VOLUNTEER_SHARE:
            k = rng.choices((1, 2, 3, 6), (0.45, 0.3, 0.2, 0.05))[0]
            categories = tuple(sorted(rng.sample(sorted(CATEGORIES), k)))
        plan.residents.append(Resident(n, f"sim-{n:05d}", household, str(building), str(unit), str(room),
                                       rng.randrange(1940, 2006), joins, categories))
    joined_by_household: dict[int, int] = {}
    for r in plan.residents:
        joined_by_household[r.household] = min(joined_by_household.get(r.household, DAYS), r.joins_day)

    posted = max(1, round(PILOT_SETTLED * scale / SETTLED_SHARE))
    names, weights = list(CATEGORIES), [CATEGORIES[c][0] for c in CATEGORIES]
    fates, fate_weights = list(FATES), list(FATES.values())
    households = sorted(joined_by_household)
    # Demand grows over the first months as residents join; a day's orders come from households
    # that joined at least a day before.
    day_weights = [min(1.0, 0.35 + d / 90) for d in range(DAYS)]
    days = sorted(rng.choices(range(DAYS), day_weights, k=posted))
    for n, day in enumerate(days):
        category = rng.choices(names, weights)[0]
        eligible = [h for h in households if joined_by_household[h] < day] or households[:1]
        plan.orders.append(Order(
            index=n, posted_at=_when(rng, day), category=category,
            minutes=rng.choice(CATEGORIES[category][1]),
            lead_minutes=rng.choice((180, 240, 360, 720, 1440, 1440, 2880, 4320)),
            fate=rng.choices(fates, fate_weights)[0], household=rng.choice(eligible),
            accept_after=min(150, 5 + int(rng.expovariate(1 / 40))),
            confirm_after=rng.choice((10, 30, 60, 120, 240, 600, 1200)),
            served_delta=rng.choice((0, 0, 0, 0, -10, -5, 5, 10))))
    plan.orders.sort(key=lambda o: o.posted_at)
    months = DAYS / 30
    n = 0
    for kind, per_month in PER_MONTH.items():
        for _ in range(max(1, round(per_month * months * scale))):
            day = rng.randrange(min(DAYS // 10, 20 if kind == "activity" else 30), max(2, DAYS - 3))
            plan.events.append(Event(n, kind, _when(rng, day), rng.random()))
            n += 1
    plan.events.sort(key=lambda e: (e.at, e.index))
    return plan
