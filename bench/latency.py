"""Posting a need → the volunteer's match notification, in the real local runtime.

``python -m local.run`` is started as a subprocess (free ports, no demo residents, otherwise
``make run``'s defaults: community ``demo``, admin ``admin-demo``, schedules on). Over its HTTP
API two residents of different households are registered and verified, the volunteer declares
``companion`` and consents to one "match" message. Each sample then times
``POST /v1/requests`` → the message in ``GET /v1/admin/outbox?openid=<volunteer>``, polled every
``OUTBOX_POLL_SECONDS``; between samples (not timed) the need is cancelled, releasing its hold,
and the volunteer consents to the next message. One first sample is kept apart as "cold" (the
runtime's first post and first matching delivery create clients and look up queue URLs).

Each timed post waits first for a pause drawn uniformly from [0, poll interval) (seeded, so
runs are comparable). Without it the samples lock onto the consumer's cycle: the consumer has
just handled the previous sample's message and gone to sleep for a whole interval, so back-to-
back posts would all measure nearly the worst case instead of a neighbour posting at a random
moment.

What bounds the figure: the matching consumer short-polls its queue and, after an empty receive,
waits the runtime's ``--poll-interval`` before the next one; so the latency is roughly the POST
itself, plus up to one poll interval, plus the handler's work, plus up to one outbox poll. On
AWS the event source mapping long-polls instead, so the wait term mostly disappears.
"""
from __future__ import annotations

import json
import os
import queue
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parent.parent
OUTBOX_POLL_SECONDS = 0.02
SAMPLE_TIMEOUT_SECONDS = 20.0
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 30.0
READY = re.compile(r"ready in [\d.]+s — (http://\S+)/v1/health")

REQUESTER = "bench-latency-requester"
VOLUNTEER = "bench-latency-volunteer"


@dataclass
class LatencySamples:
    poll_interval_seconds: float
    to_notification: list[float]   # POST sent → message seen in the outbox (warm samples)
    post_round_trip: list[float]   # POST sent → its response (warm samples)
    cold: float | None = None      # the runtime's first post → notification
    problem: str = ""              # why fewer samples than asked (empty when all came)


class ApiFailure(Exception):
    pass


class RuntimeFailed(Exception):
    pass


def runtime_environment() -> dict[str, str]:
    """``make run``'s defaults: none of the bench's community settings leak in, but for check-in
    and claim windows wide enough for orders walked through at once."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TIMEBANK_") and k not in ("AWS_ENDPOINT_URL", "AWS_PROFILE")}
    env.update({"TIMEBANK_CHECKIN_EARLY_MINUTES": str(365 * 24 * 60), "TIMEBANK_CLAIM_TOLERANCE_MINUTES": "1440"})
    return env


@contextmanager
def local_runtime(poll_interval: float, log_path: Path) -> Iterator[str]:
    """A ``python -m local.run`` subprocess; yields its API URL once it logged "ready"."""
    command = [sys.executable, "-m", "local.run", "--port", "0", "--moto-port", "0",
               "--no-demo-residents", "--no-district", "--poll-interval", f"{poll_interval:g}"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=REPO, env=runtime_environment(), text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
        ready: queue.Queue[str] = queue.Queue()

        def copy_output() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                log.flush()
                found = READY.search(line)
                if found:
                    ready.put(found.group(1))
            ready.put("")  # the process ended

        reader = threading.Thread(target=copy_output, name="runtime-log", daemon=True)
        reader.start()
        try:
            try:
                url = ready.get(timeout=START_TIMEOUT_SECONDS)
            except queue.Empty:
                url = ""
            if not url:
                raise RuntimeFailed(f"the local runtime did not become ready; see {log_path}")
            yield url
        finally:
            if process.poll() is None:
                process.terminate()  # SIGTERM: the runtime stops cleanly
                try:
                    process.wait(STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            reader.join(5)


class Api:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self.tokens: dict[str, str] = {}

    def call(self, method: str, path: str, openid: str | None = None, body: Any = None,
             idempotency_key: str | None = None) -> Any:
        request = urllib.request.Request(self.base_url + path, method=method,
                                         data=json.dumps(body or {}).encode())
        request.add_header("Content-Type", "application/json")
        if openid is not None:
            request.add_header("Authorization", f"Bearer {self.token(openid)}")
        if idempotency_key:
            request.add_header("Idempotency-Key", idempotency_key)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            try:
                code = json.loads(exc.read() or b"{}").get("code", "")
            except ValueError:
                code = ""
            raise ApiFailure(f"HTTP {exc.code} {code} on {method} {path}".replace("  ", " ")) from None
        return json.loads(raw) if raw else None

    def login(self, openid: str) -> None:
        self.tokens[openid] = self.call("POST", "/v1/auth/wechat", None, {"code": f"dev-{openid}"})["token"]

    def token(self, openid: str) -> str:
        if openid not in self.tokens:
            self.login(openid)
        return self.tokens[openid]


def admin_openid() -> str:
    from local.environment import COMMUNITY_DEFAULTS

    return COMMUNITY_DEFAULTS["TIMEBANK_ADMIN_OPENIDS"].split(",")[0]


def set_up_residents(api: Api) -> None:
    admin = admin_openid()
    for openid, building in ((REQUESTER, "20"), (VOLUNTEER, "21")):
        resident = api.call("POST", "/v1/residents", openid, {
            "name": "测速居民", "phone": "13800000000", "building": building, "unit": "1",
            "room": "101", "birth_year": 1980})
        api.call("POST", f"/v1/admin/residents/{resident['id']}/verify", admin)
        api.login(openid)  # a fresh token after verification
    api.call("PUT", "/v1/volunteers/me", VOLUNTEER,
             {"categories": ["companion"], "availability": [], "accepting": True})


def notified(api: Api, request_id: str) -> bool:
    items = api.call("GET", f"/v1/admin/outbox?openid={VOLUNTEER}&limit=5", admin_openid())["items"]
    return any(request_id in json.dumps(item, ensure_ascii=False) for item in items)


def one_sample(api: Api, index: int, pause: float) -> tuple[float, float]:
    api.call("POST", "/v1/notifications/consents", VOLUNTEER, {"template": "match", "accepted": True})
    time.sleep(pause)
    need = {"category": "companion", "title": "陪同散步", "description": "bench", "duration_minutes": 60,
            "start_at": (datetime.now(timezone(timedelta(hours=8))) + timedelta(days=2))
            .replace(microsecond=0).isoformat()}
    began = time.perf_counter()
    posted = api.call("POST", "/v1/requests", REQUESTER, need,
                      idempotency_key=f"bench-latency-{time.time_ns()}-{index}")
    answered = time.perf_counter()
    deadline = began + SAMPLE_TIMEOUT_SECONDS
    while not notified(api, posted["id"]):
        if time.perf_counter() > deadline:
            raise ApiFailure(f"no notification within {SAMPLE_TIMEOUT_SECONDS:g} s")
        time.sleep(OUTBOX_POLL_SECONDS)
    seen = time.perf_counter()
    api.call("POST", f"/v1/requests/{posted['id']}/cancel", REQUESTER, {"reason": "bench"})
    return seen - began, answered - began


def measure_notification_latency(poll_interval: float, samples: int, log_path: Path) -> LatencySamples:
    result = LatencySamples(poll_interval, [], [])
    try:
        with local_runtime(poll_interval, log_path) as url:
            api = Api(url)
            set_up_residents(api)
            result.cold = one_sample(api, 0, pause=0)[0]
            phases = random.Random(poll_interval)
            for index in range(1, samples + 1):
                to_notification, round_trip = one_sample(api, index, phases.uniform(0, poll_interval))
                result.to_notification.append(to_notification)
                result.post_round_trip.append(round_trip)
    except (ApiFailure, RuntimeFailed, OSError) as exc:
        result.problem = f"{exc} (runtime log: {log_path})"
    return result


def summary(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)
