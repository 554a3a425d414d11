"""DynamoDB cost of each business operation, driven as a client drives it.

HTTP operations go through ``chalice.test.Client`` with a real bearer token, so their counts
include authentication; ``hold`` and ``post`` call the ledger API other domains use
(``functions.ledger.service.bootstrap.ledger()``). Everything runs on an in-process moto with the
resources and categories ``make run`` provisions (``local.provision``, ``local.seed``).
"""
from __future__ import annotations

import json
import logging
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from bench.ddb_counter import DynamoDBCounter, Tally, counting_dynamodb, forget_cached_clients
from bench.environment import BENCH_ADMIN


@dataclass
class Measured:
    operation: str
    tally: Tally
    outcome: str = "ok"


@dataclass
class Scenario:
    client: Any
    counter: DynamoDBCounter
    results: list[Measured] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    log: TextIO | None = None

    def measure(self, operation: str, action: Callable[[], Any],
                check: Callable[[Any], str | None] | None = None) -> Any:
        """Counts ``action``; ``check`` (not counted) may name what the result lacks."""
        with self.counter.measure() as spent:
            try:
                value = action()
                outcome = "ok"
            except HttpFailure as failure:
                value, outcome = None, str(failure)
            except Exception as exc:  # noqa: BLE001 — a missing piece must not hide the rest
                value, outcome = None, f"error: {type(exc).__name__}: {exc}"[:120]
                traceback.print_exc(file=self.log)
        if outcome == "ok" and check is not None:
            try:
                problem = check(value)
            except Exception as exc:  # noqa: BLE001
                problem = f"check failed: {type(exc).__name__}: {exc}"[:120]
            if problem:
                value, outcome = None, problem
        self.results.append(Measured(operation, spent, outcome))
        return value

    # HTTP, as the mini-program calls it --------------------------------------------------------
    def http(self, method: str, path: str, openid: str | None, body: Any = None,
             idempotency_key: str | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if openid is not None:
            headers["Authorization"] = f"Bearer {self.token(openid)}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        response = self.client.http.request(method, path, headers=headers,
                                            body=json.dumps(body or {}).encode())
        if response.status_code >= 300:
            raise HttpFailure(method, path, response.status_code, response.json_body)
        return response.json_body

    def login(self, openid: str) -> dict[str, Any]:
        session = self.http("POST", "/v1/auth/wechat", None, {"code": f"dev-{openid}"})
        self.tokens[openid] = session["token"]
        return session

    def token(self, openid: str) -> str:
        if openid not in self.tokens:
            self.login(openid)
        return self.tokens[openid]


class HttpFailure(Exception):
    def __init__(self, method: str, path: str, status: int, body: Any):
        code = body.get("code") if isinstance(body, dict) else None
        super().__init__(f"HTTP {status} {code or ''} on {method} {path}".replace("  ", " "))


def resident_body(name: str, room: str) -> dict[str, Any]:
    return {"name": name, "phone": "13800000000", "building": "9", "unit": "1", "room": room,
            "birth_year": 1980}


def run_scenario(scenario: Scenario) -> None:
    s = scenario
    s.login(BENCH_ADMIN)  # the admin's token, outside any measurement

    s.measure("login (POST /v1/auth/wechat, new user)", lambda: s.login("bench-payer"))
    payer = s.measure("register (POST /v1/residents)",
                      lambda: s.http("POST", "/v1/residents", "bench-payer", resident_body("付款人", "901")))
    s.measure("login (registered user)", lambda: s.login("bench-payer"))
    if payer:
        s.measure("verify (admin, incl. starting credits)", lambda: s.http(
            "POST", f"/v1/admin/residents/{payer['id']}/verify", BENCH_ADMIN))
    s.login("bench-relative")
    relative = s.measure("register (same address: existing household)", lambda: s.http(
        "POST", "/v1/residents", "bench-relative", resident_body("家人", "901")))
    if relative:
        s.measure("verify (household already credited)", lambda: s.http(
            "POST", f"/v1/admin/residents/{relative['id']}/verify", BENCH_ADMIN))
    s.login("bench-payer")  # a fresh token after verification (the role/status may be cached)

    donation = {"to": {"pool": True}, "asset": "service", "amount": 10, "memo": "bench"}
    s.measure("transfer (POST /v1/transfers, to the pool)", lambda: s.http(
        "POST", "/v1/transfers", "bench-payer", donation, idempotency_key="bench-transfer-1"))
    s.measure("transfer replay (same Idempotency-Key)", lambda: s.http(
        "POST", "/v1/transfers", "bench-payer", donation, idempotency_key="bench-transfer-1"))
    if relative:
        to_relative = {"to": {"resident_id": relative["id"]}, "asset": "service", "amount": 5,
                       "memo": "bench"}
        s.measure("transfer (to a household member)", lambda: s.http(
            "POST", "/v1/transfers", "bench-payer", to_relative, idempotency_key="bench-transfer-2"))
    s.measure("balances (GET /v1/accounts/me)", lambda: s.http("GET", "/v1/accounts/me", "bench-payer"))
    need = {"category": "tutoring", "title": "bench", "description": "", "duration_minutes": 60,
            "start_at": (datetime.now(timezone(timedelta(hours=8))) + timedelta(days=2))
            .replace(microsecond=0).isoformat()}
    s.measure("post a need (POST /v1/requests, incl. hold)", lambda: s.http(
        "POST", "/v1/requests", "bench-payer", need, idempotency_key="bench-need-1"))

    if payer:
        run_ledger_operations(s, payer["household_id"])


def run_ledger_operations(s: Scenario, household_id: str) -> None:
    from functions.ledger.accounts import household_account
    from functions import bootstrap

    ledger = bootstrap.ledger()
    s.measure("hold (ledger.hold, 60 min)", lambda: ledger.hold(
        "bench-hold-1", debit=household_account(household_id), amount=60, actor="bench"))
    s.measure("post (ledger.post_pending, 45 of 60)", lambda: ledger.post_pending(
        "bench-post-1", "bench-hold-1", amount=45, actor="bench"))
    s.measure("hold replay (same transfer id)", lambda: ledger.hold(
        "bench-hold-1", debit=household_account(household_id), amount=60, actor="bench"))


APP_LOGGER = "timebank"  # functions.core.observability's powertools Logger


@contextmanager
def app_logs_to(stream: TextIO) -> Iterator[None]:
    """The app's structured logs go to a file, so the table stays readable."""
    handlers = [h for h in logging.getLogger(APP_LOGGER).handlers if isinstance(h, logging.StreamHandler)]
    previous = [h.setStream(stream) for h in handlers]
    try:
        yield
    finally:
        for handler, old in zip(handlers, previous):
            handler.setStream(old)


@dataclass
class BenchResults:
    operations: list[Measured]
    lifecycle: list[Measured]
    rewards: list[Measured]
    activities: list[Measured] = field(default_factory=list)
    activity_facts: dict[str, Any] = field(default_factory=dict)
    stats: list[Measured] = field(default_factory=list)


def measure_operations(log_path: Path) -> BenchResults:
    import boto3
    from chalice.test import Client
    from moto import mock_aws

    from bench.activities import run_activities
    from bench.lifecycle import queue_drainer, run_lifecycle
    from bench.rewards import run_rewards
    from bench.stats import run_stats
    from functions.app import app
    from local.provision import provision_evidence_bucket, provision_queues, provision_tables
    from local.seed import seed_categories

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with mock_aws(), open(log_path, "w", encoding="utf-8") as log, app_logs_to(log):
        # The same resources and catalogue as `make run`, before counting starts.
        provision_tables(boto3.client("dynamodb"))
        provision_queues(boto3.client("sqs"))
        provision_evidence_bucket(boto3.client("s3"), boto3.session.Session().region_name)
        seed_categories()
        # Built before counting: their ReceiveMessage/DeleteMessage are the event source
        # mapping's (Lambda's poller), not the function's, so they stay out of the counts.
        drainers = {queue: queue_drainer(app, queue) for queue in ("matching", "insurance", "zyh-exchanges")}
        with counting_dynamodb() as counter:
            forget_cached_clients()
            with Client(app) as client:
                scenario = Scenario(client, counter, log=log)
                run_scenario(scenario)
                lifecycle = Scenario(client, counter, tokens=scenario.tokens, log=log)
                run_lifecycle(lifecycle, {q: d for q, d in drainers.items() if q != "zyh-exchanges"})
                rewards = Scenario(client, counter, tokens=scenario.tokens, log=log)
                run_rewards(rewards, drainers["zyh-exchanges"])
                activities = Scenario(client, counter, tokens=scenario.tokens, log=log)
                facts = run_activities(activities)
                stats = Scenario(client, counter, tokens=scenario.tokens, log=log)
                run_stats(stats, app)
    return BenchResults(scenario.results, lifecycle.results, rewards.results, activities.results, facts,
                        stats.results)
