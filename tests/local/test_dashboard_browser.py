"""The staff dashboard in a real browser: headless Chromium (Debian's, driven by Playwright)
opens ``/admin/`` as ``make run`` serves it, logs in as the demo admin, sees the statistics drawn
with data and verifies the seeded pending resident with a click.

Screenshots go to ``build/artifacts/`` (CI keeps them). Without /usr/bin/chromium the test is
skipped on a laptop and fails in CI (``CI`` set), where ``.ci/run`` installs it.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

from local.seed import DASHBOARD_ORDERS, DASHBOARD_PENDING

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "build" / "artifacts"
START_TIMEOUT = 120
CHINA = timezone(timedelta(hours=8))
WAIT_MS = 30_000


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium for this test")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium fonts-noto-cjk)")


class Stack:
    """``python -m local.run`` (make run's runtime) on free ports, one community."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TIMEBANK_", "AWS_"))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local.run", "--port", "0", "--moto-port", "0", "--no-district"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(START_TIMEOUT):
            self.process.kill()
            raise AssertionError("local.run never said it was ready:\n" + self.output)
        match = re.search(r"staff dashboard: (http://\S+/admin/)", self.output)
        if not match:
            self.stop()
            raise AssertionError("local.run printed no dashboard address:\n" + self.output)
        self.dashboard_url = match.group(1)
        self.api_url = self.dashboard_url[: -len("/admin/")]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if " ready in " in line:
                self._ready.set()
        self._ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             key: str | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if key:
            headers["Idempotency-Key"] = key
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: HTTP {exc.code} {exc.read().decode()}") from None
        return json.loads(raw) if raw else None

    def token(self, openid: str) -> str:
        return self.call("POST", "/v1/auth/wechat", {"code": f"dev-{openid}"})["token"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Polls a condition of the running stack (its queues deliver the statistics' events)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.1)


@pytest.fixture(scope="module")
def stack():
    require_chromium()
    running = Stack()
    try:
        yield running
    finally:
        running.stop()


def seeded_figures() -> dict[str, int]:
    """What make run's demo orders (local/seed.py DASHBOARD_ORDERS) add up to, counted from the
    seed's own list: each goal's furthest step."""
    goals = [goal for *_, goal in DASHBOARD_ORDERS]
    return {"posted": len(goals),
            "accepted": sum(goal in ("accepted", "completed", "disputed", "paid") for goal in goals),
            "completed": goals.count("paid"),        # settled
            "cancelled": goals.count("cancelled")}


@pytest.fixture(scope="module")
def activity(stack):
    """The demo seed's orders, counted by the statistics (fed through the queues) before the
    browser opens the page."""
    admin = stack.token("admin-demo")
    expected = seeded_figures()
    wait_until(lambda: stack_figures(stack, admin) == expected,
               f"the statistics to count the demo orders as {expected}")
    return {"admin": admin}


def today_range() -> tuple[str, str]:
    today = datetime.now(CHINA).date()
    return (today - timedelta(days=29)).isoformat(), today.isoformat()


def stats_of(stack: Stack, admin: str) -> dict[str, Any]:
    start, end = today_range()
    return stack.call("GET", f"/v1/admin/stats?from={start}&to={end}", token=admin)


def stack_figures(stack: Stack, admin: str) -> dict[str, int]:
    rows = stats_of(stack, admin)["by_day"]
    return {name: sum(row[name] for row in rows) for name in ("posted", "accepted", "completed", "cancelled")}


@pytest.fixture(scope="module")
def browser(stack):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            launched.close()


def open_dashboard(browser, stack, viewport):
    page = browser.new_page(viewport=viewport)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" else None)
    page.on("response", lambda response: problems.append(f"HTTP {response.status} {response.url}")
            if response.status >= 400 else None)
    page.goto(stack.dashboard_url)
    # Functions, not expression strings: Playwright evaluates a string with eval, which the
    # page's Content-Security-Policy (script-src 'self') rightly refuses.
    page.wait_for_function("() => document.body.dataset.state === 'login'", timeout=WAIT_MS)
    assert page.locator("#demo-login").is_visible()
    page.click("#demo-login")
    page.wait_for_function("() => document.body.dataset.state === 'ready'", timeout=WAIT_MS)
    return page, problems


def chart_option(page, element_id: str) -> dict[str, Any]:
    return page.evaluate("(id) => echarts.getInstanceByDom(document.getElementById(id)).getOption()", element_id)


def test_dashboard_draws_the_statistics_and_verifies_a_pending_resident(stack, activity, browser):
    page, problems = open_dashboard(browser, stack, {"width": 1280, "height": 900})
    assert page.title() == "时间银行 · 社区工作台"
    assert page.locator("#stats").get_attribute("data-state") == "ready", page.locator("#stats-error").inner_text()
    assert page.locator("#stats").get_attribute("data-has-data") == "true"

    stats = stats_of(stack, activity["admin"])
    start, end = today_range()
    days = [(datetime.fromisoformat(start) + timedelta(days=n)).date().isoformat() for n in range(30)]

    # Orders by day: one series per figure, a point per day of the range, equal to the API's sums.
    daily = chart_option(page, "chart-daily")
    assert [s["id"] for s in daily["series"]] == ["posted", "accepted", "completed", "cancelled"]
    assert daily["xAxis"][0]["data"] == [d[5:] for d in days]
    for series in daily["series"]:
        expected = [sum(r[series["id"]] for r in stats["by_day"] if r["date"] == d) for d in days]
        assert series["data"] == expected, series["id"]
    assert {s["id"]: sum(s["data"]) for s in daily["series"]} == seeded_figures()

    minutes = {}
    for row in stats["by_day"]:
        minutes[row["category"]] = minutes.get(row["category"], 0) + row["minutes_credited"]
    by_category = chart_option(page, "chart-categories")["series"][0]["data"]
    assert {item["id"]: item["value"] for item in by_category} == minutes
    assert sum(minutes.values()) > 0               # the paid services credited their volunteer

    accept = chart_option(page, "chart-accept")["series"][0]["data"]
    assert [item["value"] for item in accept] == [stats["accept_minutes"]["p50"], stats["accept_minutes"]["p90"]]
    ledger = chart_option(page, "chart-ledger")["series"][0]["data"]
    assert {item["id"]: item["value"] for item in ledger} == stats["ledger"]["outstanding"]
    assert ledger, "the community owes credits: the demo households' starting credits"

    figures = page.locator("#figures").inner_text()
    assert "完成" in figures and str(sum(r["completed"] for r in stats["by_day"])) in figures

    # The open dispute is listed for the admins.
    disputed = stack.call("GET", "/v1/admin/requests?status=disputed", token=activity["admin"])["items"]
    assert disputed and [page.locator(f'#disputes-list li[data-request-id="{q["id"]}"]').is_visible()
                         for q in disputed] == [True] * len(disputed)

    # The verification queue: the seeded pending resident, verified with one click.
    me = stack.call("POST", "/v1/auth/wechat", {"code": f"dev-{DASHBOARD_PENDING.openid}"})["resident"]
    assert me["status"] == "pending"
    row = page.locator(f'#residents-list li[data-resident-id="{me["id"]}"]')
    assert row.is_visible() and DASHBOARD_PENDING.name in row.inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-laptop.png"), full_page=True)
    row.locator('button[data-action="verify"]').click()
    page.wait_for_function("(id) => !document.querySelector(`#residents-list li[data-resident-id=\"${id}\"]`)",
                           arg=me["id"], timeout=WAIT_MS)
    assert f"已通过 {DASHBOARD_PENDING.name} 的认证" in page.locator("#notice").inner_text()
    after = stack.call("POST", "/v1/auth/wechat", {"code": f"dev-{DASHBOARD_PENDING.openid}"})["resident"]
    assert after["status"] == "verified"
    assert stack.call("GET", f"/v1/admin/residents/{me['id']}", token=activity["admin"])["status"] == "verified"
    page.screenshot(path=str(ARTIFACTS / "dashboard-verified.png"), full_page=True)
    assert problems == []
    page.close()


def test_dashboard_fits_a_phone_sized_screen(stack, activity, browser):
    page, problems = open_dashboard(browser, stack, {"width": 390, "height": 844})
    # One column: nothing wider than the screen, each chart drawn at the screen's width.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    for element_id in ("chart-daily", "chart-categories", "chart-accept", "chart-ledger"):
        width = page.evaluate("(id) => echarts.getInstanceByDom(document.getElementById(id)).getWidth()", element_id)
        assert 300 <= width <= 390, (element_id, width)
    boxes = [page.locator(f"#{section}").bounding_box() for section in ("stats", "residents", "disputes", "flags")]
    assert all(box["width"] <= 390 for box in boxes)
    assert [box["y"] for box in boxes] == sorted(box["y"] for box in boxes)   # stacked, not side by side
    assert len({round(box["x"]) for box in boxes}) == 1
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
    assert problems == []
    page.close()


def test_a_token_that_is_not_an_admins_is_refused_in_chinese(stack, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(stack.dashboard_url)
    page.wait_for_function("() => document.body.dataset.state === 'login'", timeout=WAIT_MS)
    page.fill("#token-input", stack.token("demo-resident-a"))
    page.click("#login-submit")
    page.wait_for_function("() => document.body.dataset.state === 'login' && !document.getElementById('login-error').hidden",
                           timeout=WAIT_MS)
    message = page.locator("#login-error").inner_text()
    assert re.search(r"[\u4e00-\u9fff]", message), message
    assert page.locator("#board").is_hidden()
    page.close()
