"""``make run`` as a newcomer runs it: a subprocess with the product app, on free ports."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120  # generous: a cold CI machine; the runtime logs how long it really took


class RunningProcess:
    def __init__(self, *args: str):
        # A fresh shell: none of the test session's AWS or community settings.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TIMEBANK_", "AWS_"))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local.run", "--port", "0", "--moto-port", "0", *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT):
            self.process.kill()
            raise AssertionError("no ready line:\n" + self.output)
        match = re.search(r"api: (http://\S+)", self.output)
        assert match, self.output
        self.api_url = match.group(1)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if " ready in " in line and not line.startswith("["):  # "[demo-east] …": a child's
                self._ready.set()
        self._ready.set()  # the process ended (the wait above then finds no URL)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.api_url + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())

    def post(self, path: str, body: Any, token: str | None = None, key: str | None = None,
             base: str | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if key:
            headers["Idempotency-Key"] = key
        request = urllib.request.Request((base or self.api_url) + path, data=json.dumps(body).encode(),
                                         method="POST", headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def get_at(self, base: str, path: str, token: str | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(base + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())

    def url_of(self, stack: str) -> str:
        match = re.search(rf"district: .*\b{re.escape(stack)} (http://\S+?)(,|$|\s)", self.output, re.M)
        assert match, self.output
        return match.group(1)

    def stop(self, signum: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        self._reader.join(10)
        return code


@pytest.fixture(scope="module")
def demo():
    running = RunningProcess()
    yield running
    running.stop()


def test_health_answers(demo):
    assert demo.get("/v1/health") == (200, {"status": "ok"})


def test_startup_logs_one_line_per_component(demo):
    for component in ("moto:", "community: demo", "tables:", "queues:", "evidence bucket:",
                      "api: http://127.0.0.1:", "consumers:", "schedules:", "seed: categories",
                      "district keys:", "district: demo-east http://", "hub-demo http://",
                      "[demo-east]", "[hub-demo]", "community: demo-east (stage local, admins admin-east",
                      "hub: hub-demo (district demo, communities demo,demo-east", "seed: district relatives"):
        assert component in demo.output, component
    assert "Traceback" not in demo.output


def test_the_seeded_categories_are_listed(demo):
    token = demo.post("/v1/auth/wechat", {"code": "dev-admin-demo"})["token"]
    status, body = demo.get("/v1/categories", token=token)
    assert status == 200
    assert [c["id"] for c in body["items"]] == [
        "pickup", "childcare", "tutoring", "parcel", "companion", "pet", "volunteer"]


def test_demo_residents_are_verified_with_credits_and_seeding_again_changes_nothing(demo):
    from local.seed import DEMO_RESIDENTS, seed_demo_residents

    again = seed_demo_residents(demo.api_url, "admin-demo")
    assert again == "demo residents: " + ", ".join(f"{p.openid}=verified" for p in DEMO_RESIDENTS)
    admin = demo.post("/v1/auth/wechat", {"code": "dev-admin-demo"})["token"]
    status, listed = demo.get("/v1/admin/residents?status=verified", token=admin)
    assert len(listed["items"]) == len(DEMO_RESIDENTS)
    resident = demo.post("/v1/auth/wechat", {"code": f"dev-{DEMO_RESIDENTS[0].openid}"})["token"]
    status, accounts = demo.get("/v1/accounts/me", token=resident)
    assert accounts["household"]["balances"]["service"]["available"] == 300


def test_one_demo_activity_is_published_and_seeding_again_changes_nothing(demo):
    from local.seed import DEMO_ACTIVITY_TITLE, seed_demo_activity

    resident = demo.post("/v1/auth/wechat", {"code": "dev-demo-resident-a"})["token"]
    status, listed = demo.get("/v1/activities?status=upcoming", token=resident)
    assert status == 200
    (activity,) = [a for a in listed["items"] if a["title"] == DEMO_ACTIVITY_TITLE]
    assert (activity["status"], activity["capacity"], activity["asset"]) == ("published", 30, "volunteer")
    assert seed_demo_activity(demo.api_url, "admin-demo") == f"demo activity: {activity['id']} (already published)"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_everything_with_exit_code_0(signum):
    running = RunningProcess("--no-seed")
    assert running.get("/v1/health")[0] == 200
    assert running.stop(signum) == 0, running.output
    assert "stopped" in running.lines[-1]
    assert "Traceback" not in running.output


def test_a_busy_port_exits_with_a_clear_message():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TIMEBANK_", "AWS_"))}
        env["TIMEBANK_MOTO_PORT"] = str(port)
        result = subprocess.run([sys.executable, "-m", "local.run"], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=START_TIMEOUT)
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "TIMEBANK_MOTO_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def post_json(demo, path: str, body: Any, token: str, key: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(demo.api_url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}",
                                              **({"Idempotency-Key": key} if key else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_demo_point_kinds_merchant_and_catalogue_are_served(demo):
    """Issues 10 and 11 in `make run`: the demo file's point kinds and conversions, the demo
    merchant (owner merchant-demo) with two catalogue items, and a demo resident with points to
    convert, redeem with and exchange."""
    import time

    assert "seed: demo merchant: 示范便民超市" in demo.output and "seed: demo points" in demo.output
    resident = demo.post("/v1/auth/wechat", {"code": "dev-demo-resident-a"})["token"]
    _, assets = demo.get("/v1/assets", token=resident)
    kinds = {kind["id"]: kind for kind in assets["items"]}
    assert kinds["volunteer"]["convertible_to"] == {"service": {"rate_num": 1, "rate_den": 1}}
    assert kinds["green"]["convertible_to"] == {"service": {"rate_num": 1, "rate_den": 10}}
    status, converted = post_json(demo, "/v1/conversions", {"from_asset": "green", "to_asset": "service",
                                                             "amount": 105, "from": "resident"}, resident, "walk-cv")
    assert (status, converted["debited"], converted["credited"]) == (201, 100, 10)
    merchant = demo.post("/v1/auth/wechat", {"code": "dev-merchant-demo"})
    assert "merchant" in merchant["roles"]
    _, catalogue = demo.get("/v1/rewards/items", token=resident)
    titles = {item["title"]: item for item in catalogue["items"]}
    assert set(titles) == {"环保购物袋", "洗衣液一瓶"}
    status, voucher = post_json(demo, f"/v1/rewards/items/{titles['环保购物袋']['id']}/redeem", {}, resident, "walk-v")
    assert status == 201 and voucher["status"] == "issued"
    status, redeemed = post_json(demo, "/v1/merchant/vouchers/redeem", {"code": voucher["code"]}, merchant["token"])
    assert (status, redeemed["status"]) == (200, "redeemed")
    status, exchange = post_json(demo, "/v1/exchanges/zyh", {"asset": "volunteer", "amount": 30,
                                                              "zyh_user_id": "zyh-demo", "from": "resident"},
                                 resident, "walk-zx")
    assert status == 202
    deadline = time.monotonic() + 20
    while demo.get(f"/v1/exchanges/{exchange['id']}", token=resident)[1]["status"] == "pending":
        assert time.monotonic() < deadline, "the consumer never answered"
        time.sleep(0.2)
    assert demo.get(f"/v1/exchanges/{exchange['id']}", token=resident)[1]["status"] == "confirmed"
    admin = demo.post("/v1/auth/wechat", {"code": "dev-admin-demo"})["token"]
    assert demo.get("/v1/admin/ledger/check", token=admin)[1]["ok"] is True


def _wait_for(check, timeout: float = 90.0):
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_make_run_serves_the_district_and_credits_cross_with_curl(demo):
    """make run: demo, demo-east (admin admin-east, one verified demo household) and the hub,
    with queues drained and schedules fired: a transfer to relatives in demo-east posts."""
    east = demo.url_of("demo-east")
    assert demo.get_at(east, "/v1/health") == (200, {"status": "ok"})
    assert demo.get_at(demo.url_of("hub-demo"), "/v1/health")[1]["stack"] == "hub"
    payer = demo.post("/v1/auth/wechat", {"code": "dev-demo-resident-a"})
    parent = demo.post("/v1/auth/wechat", {"code": "dev-demo-east-resident"}, base=east)
    assert parent["resident"]["status"] == "verified"
    east_household = parent["resident"]["household_id"]
    sent = demo.post("/v1/transfers", {"to": {"community": "demo-east", "household_id": east_household},
                                       "asset": "service", "amount": 45, "memo": "给爸妈"},
                     token=payer["token"], key="make-run-district-1")
    assert sent["status"] == "pending"

    def posted():
        status = demo.get(f"/v1/transfers/{sent['id']}", token=payer["token"])[1]["status"]
        return status if status != "pending" else None

    assert _wait_for(posted) == "posted"
    balances = demo.get_at(east, "/v1/accounts/me", token=parent["token"])[1]["household"]["balances"]
    assert balances["service"]["posted"] == 300 + 45
    for base, admin in ((demo.api_url, "admin-demo"), (east, "admin-east")):
        token = demo.post("/v1/auth/wechat", {"code": f"dev-{admin}"}, base=base)["token"]
        report = demo.get_at(base, "/v1/admin/district/reconcile", token=token)[1]
        assert report["ok"] is True and report["in_flight"] == 0, report
    mover = demo.post("/v1/auth/wechat", {"code": "dev-demo-resident-b"})
    moved = demo.post("/v1/transfers", {"to": {"community": "demo-east", "self": True}, "amount": 20},
                      token=mover["token"], key="make-run-district-2")
    assert _wait_for(lambda: demo.get(f"/v1/transfers/{moved['id']}", token=mover["token"])[1]["status"]
                     != "pending" and demo.get(f"/v1/transfers/{moved['id']}", token=mover["token"])[1]["status"]
                     ) == "posted"
