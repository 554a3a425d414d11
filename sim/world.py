"""One shard of the simulation: its buildings' residents and orders, run through the real app
(``functions.app``) on an in-process moto, on a fake clock.

HTTP goes through ``chalice.test.Client`` with real bearer tokens (logins through the local
stage's WeChat fake, again when a token expires on the simulated clock). After every operation
the queues it published to are drained into the real ``@app.on_sqs_message`` handlers
(``local.consumers``; the drainers' own Receive/Delete calls are the event source mapping's,
counted apart as ``receives``). Schedules are fired through their real handlers on the
simulated clock: every sweep whose real period is an hour or less once per simulated hour,
daily jobs daily, the weekly one weekly (see ``SCHEDULES``; ``sim/report.py`` extrapolates
their idle runs to the real rate).

The simulation keeps its own counts of what it did (per category: posted, accepted, settled,
cancelled, minutes credited) and at the end compares them with the statistics the product
computed (GET /v1/admin/stats), runs the ledger's own check, and reconciles the 志愿汇
exchanges of every day that had one.
"""
from __future__ import annotations

import heapq
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from sim.environment import ADMIN, MERCHANT_OWNER
from sim.meter import CHECK, Meter
from sim.plan import CHINA_TZ, DAYS, START, Event, Order, Plan, Resident

PHOTO = b"\xff\xd8\xff\xe0" + b"\x00" * 1020   # the photo's bytes stay small in moto; see report
EVIDENCE = {"pickup", "childcare", "companion", "pet"}
TICK = timedelta(hours=1)
# Firing every schedule at its real rate (relay-events every minute: 432,000 runs in ten months)
# would make schedules most of the simulation's time, so (see sim/README.md):
# - a sweep whose work the simulation's timeline makes due is fired in the simulated hour the
#   work falls due (``Shard.due``): expiry at a need's start, auto-confirmation 48 h after
#   completion, reminders two hours before a start, voucher expiry;
# - every schedule also runs once a simulated week (Monday 03:00), doing whatever is left, but
#   the ledger check (a full read of the ledger) every fourth week;
# - the report adds, for every schedule, its real rate's remaining runs at the measured cost of
#   an idle run, and the ledger check at its daily rate from its measured average run.
SCHEDULES = ("relay-events", "expire-exchanges", "send-reminders", "activity-reminders", "district-sweep",
             "expire-vouchers", "expire-requests", "watch-services", "evidence-uploads", "auto-confirm",
             "ledger-check", "district-reconcile", "expire-points", "evidence-retention", "stats-suggestions")
AUTO_CONFIRM_AFTER = timedelta(hours=48, minutes=30)
REMINDER_LEAD = timedelta(minutes=120)


class SimulationError(Exception):
    pass


@dataclass
class Own:
    """The simulation's own counts, per category."""
    posted: Counter = field(default_factory=Counter)
    accepted: Counter = field(default_factory=Counter)
    completed: Counter = field(default_factory=Counter)
    cancelled: Counter = field(default_factory=Counter)
    minutes: Counter = field(default_factory=Counter)
    other: Counter = field(default_factory=Counter)    # activities, vouchers, ... done
    problems: list[str] = field(default_factory=list)  # what did not go as planned (and why)

    def to_json(self) -> dict[str, Any]:
        return {name: dict(getattr(self, name)) for name in
                ("posted", "accepted", "completed", "cancelled", "minutes", "other")} | {"problems": self.problems}


class HttpError(Exception):
    def __init__(self, method: str, path: str, status: int, body: Any):
        self.status, self.body = status, body
        self.code = body.get("code") if isinstance(body, dict) else None
        super().__init__(f"HTTP {status} {self.code} on {method} {path.split('?')[0]}")


class Shard:
    def __init__(self, plan: Plan, index: int, shards: int, progress: Callable[[int], None] = lambda n: None):
        self.plan, self.index, self.shards = plan, index, shards
        self.rng = random.Random(f"{plan.seed}/{index}/{shards}")
        self.progress = progress
        self.own = Own()
        self.now = START - timedelta(days=1)
        self.heap: list[tuple[datetime, int, Callable[[], None]]] = []
        self.sequence = 0
        self.tokens: dict[str, tuple[str, int]] = {}
        self.resident_ids: dict[str, dict[str, Any]] = {}   # openid → resident body
        self.verified: dict[int, list[Resident]] = defaultdict(list)   # household → verified members
        self.volunteers: dict[str, list[Resident]] = defaultdict(list)  # category → verified volunteers
        self.load: Counter = Counter()       # (openid, day) → services accepted for that day
        self.pairs: Counter = Counter()      # (volunteer household, requester household, day)
        self.dirty: set[str] = set()
        self.ledger_runs: list[bool] = []
        self.exchange_days: set[str] = set()
        self.activities_open: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.settle_check: list[tuple[Order, str]] = []   # orders settled or cancelled by a schedule
        self.wanted: dict[datetime, set[str]] = {}        # tick → schedules with work due then

    # --- the world --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        import boto3
        from chalice.app import SQSEventConfig
        from chalice.test import Client
        from moto import mock_aws

        from bench.ddb_counter import forget_cached_clients
        from bench.lifecycle import queue_drainer
        from bench.operations import app_logs_to
        from functions import bootstrap
        from functions.adapters import sqs as sqs_adapter
        from functions.app import app
        from functions.core import clock
        from functions.core.messaging import queue_name
        from local import moto_compat
        from local.consumers import queue_name_of
        from local.provision import provision_evidence_bucket, provision_queues, provision_tables
        from local.seed import seed_categories
        from sim.meter import FastImageCounter, LogSink

        moto_compat.install_unless_disabled()
        self.app = app
        with mock_aws():
            bootstrap.reset()
            clock.set_clock(lambda: self.now)
            provision_tables(boto3.client("dynamodb"))
            provision_queues(boto3.client("sqs"))
            provision_evidence_bucket(boto3.client("s3"), "cn-north-1")
            seed_categories()
            consumed = {queue_name_of(s) for s in app.event_sources if isinstance(s, SQSEventConfig)}
            from bench.cost import community_queues

            self.drainers = {q: queue_drainer(app, q) for q in community_queues() if queue_name(q) in consumed}
            listener = self.dirty.add
            sqs_adapter.published_listeners.append(listener)
            import botocore.session

            create = botocore.session.Session.create_client
            counter = FastImageCounter(create_client=create)

            def counted(session: Any, *args: Any, **kwargs: Any) -> Any:
                return counter.attach(create(session, *args, **kwargs))

            botocore.session.Session.create_client = counted  # type: ignore[method-assign]
            self.meter = Meter(counter)
            sink = LogSink(self.meter)
            try:
                forget_cached_clients()
                with Client(app) as client, app_logs_to(sink):  # type: ignore[arg-type]
                    self.client = client
                    self.simulate()
                    result = self.finish()
            finally:
                botocore.session.Session.create_client = create  # type: ignore[method-assign]
                sqs_adapter.published_listeners.remove(listener)
                clock.set_clock(None)
                bootstrap.reset()
        return result

    # --- HTTP as the mini-program calls it --------------------------------------------------------
    def http(self, method: str, path: str, openid: str | None, body: Any = None,
             key: str | None = None, raw: bytes | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if openid is not None:
            headers["Authorization"] = f"Bearer {self.token(openid)}"
        if key:
            headers["Idempotency-Key"] = key
        self.meter.current.http += 1
        response = self.client.http.request(method, path, headers=headers,
                                            body=raw if raw is not None else json.dumps(body or {}).encode())
        if response.status_code >= 300:
            raise HttpError(method, path, response.status_code, response.json_body)
        return response.json_body

    def token(self, openid: str) -> str:
        held = self.tokens.get(openid)
        if held is None or held[1] <= self.now.timestamp() + 60:
            self.login(openid)
        return self.tokens[openid][0]

    def login(self, openid: str) -> dict[str, Any]:
        session = self.http("POST", "/v1/auth/wechat", None, {"code": f"dev-{openid}"})
        expires = datetime.fromisoformat(session["expires_at"])
        self.tokens[openid] = (session["token"], int(expires.timestamp()))
        return session

    # --- queues and schedules ---------------------------------------------------------------------
    def drain(self) -> None:
        from functions.core.messaging import QUEUES  # noqa: F401

        rounds = 0
        while self.dirty:
            rounds += 1
            if rounds > 200:
                raise SimulationError("queues never went quiet")
            queue = sorted(self.dirty)[0]
            self.dirty.discard(queue)
            drainer = self.drainers.get(queue)
            if drainer is None:
                self.own.problems.append(f"message on {queue}, which has no consumer here")
                continue
            consumer = drainer._consumer
            while True:
                before = consumer.batches_handled
                received = consumer.poll_once()
                self.meter.current.receives += 1
                if not received:
                    break
                self.meter.current.batches += consumer.batches_handled - before
                self.meter.current.messages += received

    def fire(self, name: str) -> Any:
        from local.lambda_events import lambda_context, scheduled_event

        with self.meter.op(f"schedule {name}") as figures:
            figures.schedule_runs += 1
            result = self.app.handler_map[name](scheduled_event(f"sim-{name}", "cn-north-1"),
                                                lambda_context(name, 300))
            self.drain()
        if name == "ledger-check":
            self.ledger_runs.append(bool(result.get("ok")))
        return result

    def at(self, when: datetime, action: Callable[[], None]) -> None:
        self.sequence += 1
        heapq.heappush(self.heap, (when, self.sequence, action))

    def operation(self, name: str, action: Callable[[], Any]) -> Any:
        """One business operation, then every message it caused, delivered."""
        with self.meter.op(name):
            try:
                value = action()
            except HttpError as failure:
                self.own.problems.append(f"{name}: {failure}")
                value = None
            self.drain()
        self.quiet()
        return value

    @staticmethod
    def quiet() -> None:
        from functions.core.observability import metrics

        metrics.clear_metrics()

    # --- the timeline -----------------------------------------------------------------------------
    def simulate(self) -> None:
        with self.meter.op("set-up (admin, merchant, catalogue)"):
            self.login(ADMIN)
            merchant = self.http("POST", "/v1/admin/merchants", ADMIN,
                                 {"name": f"便民超市{self.index + 1}", "kind": "supermarket", "owner_openid": MERCHANT_OWNER})
            self.login(MERCHANT_OWNER)
            for n, (title, price) in enumerate((("环保购物袋", 30), ("洗衣液一瓶", 60), ("理发券", 90))):
                self.items.append(self.http("POST", "/v1/merchant/items", MERCHANT_OWNER, {
                    "title": title, "description": "社区兑换", "asset": "service", "price": price, "stock": 100000,
                    "per_person_limit": 100, "valid_days": 14}, key=f"sim-item-{n}"))
            self.merchant = merchant
        for r in self.plan.residents:
            self.at(START + timedelta(days=r.joins_day, hours=9, minutes=r.index % 600), lambda r=r: self.join(r))
        for order in self.plan.orders:
            self.at(order.posted_at, lambda o=order: self.post(o))
        for event in self.plan.events:
            self.at(event.at, lambda e=event: self.other(e))
        tick = START
        end = START + timedelta(days=DAYS + 3)
        done = 0
        while tick < end:
            tick += TICK
            while self.heap and self.heap[0][0] <= tick:
                when, _, action = heapq.heappop(self.heap)
                self.now = max(self.now, when)
                action()
                done += 1
                if done % 200 == 0:
                    self.progress(200)
            self.now = max(self.now, tick)
            self.schedules(tick)
        self.progress(done % 200)

    def due(self, name: str, when: datetime) -> None:
        """``name`` has work at ``when``: fire it in the first simulated tick at or after it."""
        tick = START + TICK * -(-int((when - START).total_seconds()) // int(TICK.total_seconds()))
        self.wanted.setdefault(tick, set()).add(name)

    def schedules(self, tick: datetime) -> None:
        local = tick.astimezone(CHINA_TZ)
        weekly = local.weekday() == 0 and local.hour == 3
        wanted = self.wanted.pop(tick, set())
        # The ledger check reads the whole ledger each run: every fourth week is enough to
        # measure it (the report prices it at its real daily rate).
        ledger_week = weekly and (tick - START).days // 7 % 4 == 0
        for name in SCHEDULES:
            if name not in self.app.handler_map:
                continue
            if name == "ledger-check" and not (ledger_week or name in wanted):
                continue
            if weekly or name in wanted:
                self.fire(name)

    # --- residents --------------------------------------------------------------------------------
    def join(self, r: Resident) -> None:
        def register() -> None:
            body = {"name": "居民", "phone": f"139{r.index:08d}", "building": r.building, "unit": r.unit,
                    "room": r.room, "birth_year": r.birth_year}
            resident = self.http("POST", "/v1/residents", r.openid, body)
            self.http("POST", f"/v1/admin/residents/{resident['id']}/verify", ADMIN)
            self.login(r.openid)   # a fresh token after verification
            self.resident_ids[r.openid] = resident
            self.verified[r.household].append(r)

        self.operation("register + verify (login, POST /v1/residents, admin verify)", register)
        if r.volunteer_categories and r.openid in self.resident_ids:
            def declare() -> None:
                self.http("PUT", "/v1/volunteers/me", r.openid,
                          {"categories": list(r.volunteer_categories), "availability": [], "accepting": True})
                for template in ("match", "reminder"):
                    self.http("POST", "/v1/notifications/consents", r.openid, {"template": template, "accepted": True})

            self.operation("volunteer profile + consents", declare)
            for c in r.volunteer_categories:
                self.volunteers[c].append(r)

    # --- orders -----------------------------------------------------------------------------------
    def hold_estimate(self, order: Order) -> int:
        if order.category == "pickup":
            return 30
        if order.category == "parcel":
            return 0
        return int(order.minutes * (1.5 if order.category == "tutoring" else 1)) + 30

    def payer(self, order: Order) -> tuple[Resident, dict[str, Any]] | None:
        """Who posts (a verified member of the order's flat, or of another flat of the shard when it
        has no credit left) and from which account: the mini-program shows balances first."""
        need = self.hold_estimate(order)
        households = [order.household] + self.rng.sample(sorted(self.verified), min(6, len(self.verified)))
        for household in households:
            members = self.verified.get(household)
            if not members:
                continue
            member = self.rng.choice(members)
            with self.meter.op("balances (GET /v1/accounts/me)"):
                balances = self.http("GET", "/v1/accounts/me", member.openid)
            own = balances["resident"]["balances"].get("service", {}).get("available", 0)
            shared = balances["household"]["balances"].get("service", {}).get("available", 0)
            if own >= need:
                return member, {"from": "resident"}
            if shared >= need:
                return member, {}
        return None

    def post(self, order: Order) -> None:
        found = self.payer(order)
        if found is None:
            self.own.other["orders without credit (not posted)"] += 1
            return
        requester, source = found
        start = (order.posted_at + timedelta(minutes=order.lead_minutes)).replace(second=0)
        body = {"category": order.category, "title": "社区互助", "description": f"第{order.index}单",
                "duration_minutes": order.minutes, "start_at": start.isoformat(), **source}
        need = self.operation("post a need (+ matching, notifications, stats)", lambda: self.http(
            "POST", "/v1/requests", requester.openid, body, key=f"sim-order-{order.index}"))
        if not need:
            return
        self.own.posted[order.category] += 1
        state = {"need": need, "requester": requester, "start": start, "volunteer": None}
        if order.fate == "cancel_open":
            self.at(order.posted_at + timedelta(minutes=min(60, order.lead_minutes // 3)),
                    lambda: self.cancel(order, state))
        elif order.fate == "expire":
            self.settle_check.append((order, need["id"]))
            self.due("expire-requests", start + timedelta(minutes=1))
        else:
            self.at(order.posted_at + timedelta(minutes=order.accept_after), lambda: self.accept(order, state))

    def pick_volunteer(self, order: Order, state: dict[str, Any]) -> Resident | None:
        day, household = state["start"].date(), state["requester"].household

        def free(v: Resident) -> bool:
            return v.household != household and self.load[(v.openid, day)] < 3 \
                and self.pairs[(v.household, household, day)] < 1

        candidates = [v for v in self.volunteers.get(order.category, []) if free(v)]
        if not candidates:
            # A small shard may have no declared volunteer of the category: any verified neighbour
            # may accept (the feed is open to every verified resident).
            candidates = [v for members in self.verified.values() for v in members if free(v)]
        return self.rng.choice(candidates) if candidates else None

    def accept(self, order: Order, state: dict[str, Any]) -> None:
        volunteer = self.pick_volunteer(order, state)
        if volunteer is None:
            self.own.problems.append(f"order {order.index}: no volunteer in {order.category}; left to expire")
            self.settle_check.append((order, state["need"]["id"]))
            self.due("expire-requests", state["start"] + timedelta(minutes=1))
            return
        path = f"/v1/requests/{state['need']['id']}"

        def act() -> Any:
            self.http("GET", f"/v1/requests?status=open&category={order.category}", volunteer.openid)
            return self.http("POST", f"{path}/accept", volunteer.openid)

        accepted = self.operation("feed + accept (+ insurance, stats)", act)
        if not accepted:
            self.settle_check.append((order, state["need"]["id"]))
            self.due("expire-requests", state["start"] + timedelta(minutes=1))
            return
        self.due("send-reminders", state["start"] - REMINDER_LEAD)
        self.own.accepted[order.category] += 1
        day = state["start"].date()
        self.load[(volunteer.openid, day)] += 1
        self.pairs[(volunteer.household, state["requester"].household, day)] += 1
        state["volunteer"] = volunteer
        if order.fate == "cancel_accepted":
            wait = (state["start"] - self.now) / 2
            self.at(self.now + wait, lambda: self.cancel(order, state))
        else:
            self.at(state["start"] + timedelta(minutes=self.rng.randrange(0, 8)), lambda: self.check_in(order, state))

    def cancel(self, order: Order, state: dict[str, Any]) -> None:
        path = f"/v1/requests/{state['need']['id']}/cancel"
        done = self.operation("cancel (hold released)", lambda: self.http(
            "POST", path, state["requester"].openid, {"reason": "计划有变"}))
        if done and done.get("status") == "cancelled":
            self.own.cancelled[order.category] += 1

    def check_in(self, order: Order, state: dict[str, Any]) -> None:
        volunteer, path = state["volunteer"], f"/v1/requests/{state['need']['id']}"

        def act() -> Any:
            body: dict[str, Any] = {}
            if order.category in EVIDENCE:
                import requests

                upload = self.http("POST", f"{path}/evidence", volunteer.openid,
                                   {"content_type": "image/jpeg", "size": len(PHOTO)})
                requests.put(upload["upload_url"], data=PHOTO, headers=upload["headers"]).raise_for_status()
                body = {"evidence_key": upload["key"]}
            return self.http("POST", f"{path}/check-in", volunteer.openid, body)

        label = "check-in with photo (evidence URL + check-in)" if order.category in EVIDENCE else "check-in"
        if not self.operation(label, act):
            return
        served = max(5, order.minutes + order.served_delta)
        self.at(state["start"] + timedelta(minutes=served + 9), lambda: self.complete(order, state, served))

    def complete(self, order: Order, state: dict[str, Any], served: int) -> None:
        path = f"/v1/requests/{state['need']['id']}"
        done = self.operation("complete", lambda: self.http(
            "POST", f"{path}/complete", state["volunteer"].openid, {"minutes": served}))
        if not done:
            return
        later = self.now + timedelta(minutes=order.confirm_after)
        if order.fate == "confirm":
            self.at(later, lambda: self.confirm(order, state))
        elif order.fate == "auto_confirm":
            self.settle_check.append((order, state["need"]["id"]))
            self.due("auto-confirm", self.now + AUTO_CONFIRM_AFTER)
        else:
            self.at(later, lambda: self.dispute(order, state, served))

    def confirm(self, order: Order, state: dict[str, Any]) -> None:
        path = f"/v1/requests/{state['need']['id']}/confirm"
        done = self.operation("confirm (settlement + stats, reputation, risk)", lambda: self.http(
            "POST", path, state["requester"].openid, {"rating": self.rng.choice((5, 5, 5, 4)), "comment": "谢谢"}))
        if done and done.get("status") == "settled":
            self.own.completed[order.category] += 1
            self.own.minutes[order.category] += int(done.get("credits_paid") or 0)

    def dispute(self, order: Order, state: dict[str, Any], served: int) -> None:
        path = f"/v1/requests/{state['need']['id']}"
        if not self.operation("dispute", lambda: self.http(
                "POST", f"{path}/dispute", state["requester"].openid, {"reason": "时长有出入"})):
            return
        pay = order.fate == "dispute_pay"
        minutes = max(5, served - 10)

        def resolve() -> None:
            body = {"outcome": "pay", "minutes": minutes, "reason": "核实后按实际时长"} if pay else \
                {"outcome": "refund", "reason": "核实后退回"}
            done = self.operation("resolve a dispute (admin)", lambda: self.http(
                "POST", f"/v1/admin/requests/{state['need']['id']}/resolve", ADMIN, body))
            if done and done.get("status") == "settled":
                self.own.completed[order.category] += 1
                self.own.minutes[order.category] += int(done.get("credits_paid") or 0)
            elif done and done.get("status") == "cancelled":
                self.own.cancelled[order.category] += 1

        self.at(self.now + timedelta(hours=20), resolve)

    # --- the rest of a community's traffic --------------------------------------------------------
    def someone(self, pick: float, volunteers_only: bool = False) -> Resident | None:
        pool = sorted({r.openid: r for members in self.verified.values() for r in members
                       if not volunteers_only or r.volunteer_categories}.values(), key=lambda r: r.index)
        return pool[int(pick * len(pool))] if pool else None

    def balances(self, who: Resident) -> dict[str, Any]:
        return self.http("GET", "/v1/accounts/me", who.openid)

    def other(self, event: Event) -> None:
        handler = getattr(self, f"do_{event.kind}")
        handler(event)

    def do_activity(self, event: Event) -> None:
        start = (event.at + timedelta(days=3)).replace(hour=9, minute=0, second=0)
        body = {"title": "社区环境清洁日", "description": "清理楼道与绿地", "place": "社区中心广场",
                "start_at": start.isoformat(), "end_at": (start + timedelta(hours=2)).isoformat(),
                "capacity": 30, "asset": "volunteer", "award": {"mode": "per_hour", "minutes": 60},
                "requires_insurance": True}
        activity = self.operation("activity published (admin)", lambda: self.http(
            "POST", "/v1/admin/activities", ADMIN, body, key=f"sim-activity-{event.index}"))
        if not activity:
            return
        self.own.other["activities"] += 1
        rng = random.Random(f"{self.plan.seed}/activity/{event.index}")
        pool = sorted({r.openid: r for m in self.verified.values() for r in m}.values(), key=lambda r: r.index)
        people = rng.sample(pool, min(len(pool), rng.randrange(12, 29)))
        signed: list[Resident] = []
        for n, person in enumerate(people):
            def sign_up(person: Resident = person) -> Any:
                return self.http("POST", f"/v1/activities/{activity['id']}/signup", person.openid)

            self.at(event.at + timedelta(hours=1 + n), lambda person=person, f=sign_up: (
                signed.append(person) if self.operation("activity sign-up (+ insurance, stats)", f) else None))
        self.at(start, lambda: self.activity_day(activity, start, signed))
        self.due("activity-reminders", start - REMINDER_LEAD)

    def activity_day(self, activity: dict[str, Any], start: datetime, signed: list[Resident]) -> None:
        path, admin_path = f"/v1/activities/{activity['id']}", f"/v1/admin/activities/{activity['id']}"
        code = self.operation("activity code (admin)", lambda: self.http("GET", f"{admin_path}/code", ADMIN))
        if not code:
            return
        present = [p for i, p in enumerate(signed) if i % 7 != 6]   # about one in seven does not come
        for person in present:
            self.operation("activity check-in", lambda p=person: self.http(
                "POST", f"{path}/check-in", p.openid, {"code": code["code"]}))

        def leave() -> None:
            out = self.operation("activity code (admin)", lambda: self.http("GET", f"{admin_path}/code", ADMIN))
            if not out:
                return
            for person in present:
                self.operation("activity check-out", lambda p=person: self.http(
                    "POST", f"{path}/check-out", p.openid, {"code": out["code"]}))
            closed = self.operation("activity close (admin, awards)", lambda: self.http(
                "POST", f"{admin_path}/close", ADMIN))
            if closed:
                self.own.other["activity participants awarded"] += int(closed.get("awarded") or 0)

        self.at(start + timedelta(minutes=110), leave)

    def do_voucher(self, event: Event) -> None:
        who = self.someone(event.pick)
        if who is None:
            return
        item = self.items[int(event.pick * 1000) % len(self.items)]
        have = self.balances(who)["resident"]["balances"].get("service", {}).get("available", 0)
        body = {"from": "resident"} if have >= item["price"] else {}
        voucher = self.operation("voucher issued (redeem an item)", lambda: self.http(
            "POST", f"/v1/rewards/items/{item['id']}/redeem", who.openid, body, key=f"sim-voucher-{event.index}"))
        if not voucher:
            return
        self.own.other["vouchers issued"] += 1
        fate = int(event.pick * 10_000) % 20
        if fate < 17:
            self.at(self.now + timedelta(days=1 + fate % 5), lambda: self.operation(
                "voucher redeemed (merchant 核销)", lambda: self.http(
                    "POST", "/v1/merchant/vouchers/redeem", MERCHANT_OWNER, {"code": voucher["code"]})))
        elif fate == 17:
            self.at(self.now + timedelta(hours=5), lambda: self.operation("voucher cancelled", lambda: self.http(
                "POST", f"/v1/vouchers/{voucher['id']}/cancel", who.openid)))
        else:  # left to expire
            self.due("expire-vouchers", datetime.fromisoformat(voucher["expires_at"]) + timedelta(minutes=10))

    def do_family_transfer(self, event: Event) -> None:
        who = self.someone(event.pick, volunteers_only=True)
        if who is None:
            return
        have = self.balances(who)["resident"]["balances"].get("service", {}).get("available", 0)
        if have < 30:
            return
        body = {"to": {"household_id": self.resident_ids[who.openid]["household_id"]}, "asset": "service",
                "amount": min(have, 120), "from": "resident", "memo": "存入家庭"}
        if self.operation("family transfer (personal → household)", lambda: self.http(
                "POST", "/v1/transfers", who.openid, body, key=f"sim-transfer-{event.index}")):
            self.own.other["family transfers"] += 1

    def do_donation(self, event: Event) -> None:
        who = self.someone(event.pick)
        if who is None:
            return
        body = {"to": {"pool": True}, "asset": "service", "amount": 10, "memo": "捐给社区"}
        if self.operation("donation to the pool", lambda: self.http(
                "POST", "/v1/transfers", who.openid, body, key=f"sim-donation-{event.index}")):
            self.own.other["donations"] += 1

    def volunteer_minutes(self, who: Resident) -> int:
        balances = self.balances(who)
        return max(balances["resident"]["balances"].get("volunteer", {}).get("available", 0), 0)

    def do_conversion(self, event: Event) -> None:
        who = self.someone(event.pick)
        if who is None or self.volunteer_minutes(who) < 30:
            return
        body = {"from_asset": "volunteer", "to_asset": "service", "amount": 30, "from": "resident"}
        if self.operation("conversion 志愿时 → 服务时", lambda: self.http(
                "POST", "/v1/conversions", who.openid, body, key=f"sim-conversion-{event.index}")):
            self.own.other["conversions"] += 1

    def do_exchange(self, event: Event) -> None:
        who = self.someone(event.pick)
        if who is None or self.volunteer_minutes(who) < 20:
            return
        body = {"asset": "volunteer", "amount": 20, "zyh_user_id": f"zyh-{who.index}", "from": "resident"}
        if self.operation("志愿汇 exchange (+ partner call, confirmation)", lambda: self.http(
                "POST", "/v1/exchanges/zyh", who.openid, body, key=f"sim-exchange-{event.index}")):
            self.own.other["exchanges"] += 1
            self.exchange_days.add(self.now.astimezone(CHINA_TZ).date().isoformat())

    def do_statement(self, event: Event) -> None:
        who = self.someone(event.pick)
        if who is None:
            return
        account = f"resident:{self.resident_ids[who.openid]['id']}"
        self.operation("statement (GET /v1/accounts/{id}/transfers)", lambda: self.http(
            "GET", f"/v1/accounts/{account}/transfers", who.openid))

    def do_stats_read(self, event: Event) -> None:
        day = self.now.astimezone(CHINA_TZ).date()
        self.operation("statistics (admin dashboard, 30 days)", lambda: self.http(
            "GET", f"/v1/admin/stats?from={(day - timedelta(days=29)).isoformat()}&to={day.isoformat()}", ADMIN))

    # --- the end: checks ----------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        from functions import bootstrap

        with self.meter.op(CHECK):
            for order, request_id in self.settle_check:
                request = self.http("GET", f"/v1/requests/{request_id}", ADMIN)
                if request["status"] == "settled":
                    self.own.completed[order.category] += 1
                    self.own.minutes[order.category] += int(request.get("credits_paid") or 0)
                elif request["status"] in ("cancelled", "expired"):
                    self.own.cancelled[order.category] += 1
                else:
                    self.own.problems.append(f"order {order.index} ({order.fate}) ended {request['status']}")
            ledger = bootstrap.ledger().check()
            stats = Counter()
            first = START.date()
            last = (START + timedelta(days=DAYS + 3)).date()
            day = first
            while day <= last:
                end = min(last, day + timedelta(days=91))
                body = self.http("GET", f"/v1/admin/stats?from={day.isoformat()}&to={end.isoformat()}", ADMIN)
                for row in body["by_day"]:
                    for name in ("posted", "accepted", "completed", "cancelled", "minutes_credited"):
                        stats[(name, row["category"])] += row[name]
                day = end + timedelta(days=1)
            reconciliations = {}
            for date in sorted(self.exchange_days):
                report = self.http("GET", f"/v1/admin/exchanges/reconcile?date={date}", ADMIN)
                reconciliations[date] = bool(report.get("ok"))
        # Idle runs of every schedule, in a quiet world: what each of the real rate's extra runs costs.
        self.now += timedelta(days=1)
        for name in SCHEDULES:
            if name in self.app.handler_map:
                with self.meter.op(f"idle {name}") as figures:
                    from local.lambda_events import lambda_context, scheduled_event

                    figures.schedule_runs += 1
                    self.app.handler_map[name](scheduled_event(f"sim-{name}", "cn-north-1"), lambda_context(name, 300))
        stored = self.stored_bytes()
        from chalice.app import ScheduledEventConfig, SQSEventConfig

        from local.schedules import interval_seconds, schedule_expression

        declared = {"schedules": {s.name: interval_seconds(schedule_expression(s.schedule_expression))
                                  for s in self.app.event_sources if isinstance(s, ScheduledEventConfig)},
                    "sqs_mappings": sum(isinstance(s, SQSEventConfig) for s in self.app.event_sources)}
        return {"declared": declared, "shard": self.index, "own": self.own.to_json(),
                "stats": {f"{k[0]}|{k[1]}": v for k, v in stats.items()},
                "ledger": {"ok": ledger["ok"], "violations": ledger["violations"][:20],
                           "transfers": ledger.get("transfers"), "balances": ledger.get("balances")},
                "ledger_runs": self.ledger_runs, "exchange_reconciliations": reconciliations,
                "ops": {name: f.to_json() for name, f in self.meter.ops.items()},
                "stored": stored}

    def stored_bytes(self) -> dict[str, Any]:
        """Items and bytes per table at the end (DynamoDB storage is billed on these sizes, plus
        100 bytes of overhead per item), and the evidence objects in S3."""
        import boto3
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        from bench.ddb_counter import TableShape, item_size, logical_table

        tables: dict[str, dict[str, int]] = {}
        backend = dynamodb_backends[DEFAULT_ACCOUNT_ID]["cn-north-1"]
        dynamodb = boto3.client("dynamodb")
        for name, table in backend.tables.items():
            shape = TableShape.from_description(dynamodb.describe_table(TableName=name)["Table"])
            count = size = index_bytes = 0
            for item in table.all_items():
                image = item.to_json()["Attributes"]
                count += 1
                size += item_size(image) + 100
                for index in shape.indexes:
                    entry = shape.projected(index, image)
                    if entry is not None:
                        index_bytes += item_size(entry) + 100
            tables[logical_table(name)] = {"items": count, "bytes": size, "index_bytes": index_bytes}
        s3 = boto3.client("s3")
        objects = 0
        for bucket in s3.list_buckets()["Buckets"]:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
                objects += len(page.get("Contents", []))
        return {"tables": tables, "evidence_objects": objects}
