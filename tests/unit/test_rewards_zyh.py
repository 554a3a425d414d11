"""The 志愿汇 adapter against recorded HTTP responses (a stub transport, never the network),
its HMAC signatures, and the local fake of API.md."""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
from datetime import datetime, timedelta

import pytest

from functions.core.clock import CHINA_TZ
from functions.core.errors import Unauthenticated, UpstreamError
from functions.rewards.model import Exchange, PartnerNoAnswer, StatementLine
from functions.rewards.zyh import (SIGNATURE_HEADER, TIMESTAMP_HEADER, HttpZyhPartner, LocalZyhPartner, signature,
                                   signed_headers, verify)
from tests.fakes.rewards import RecordedResponse, StubTransport

KEY = "partner-shared-key"
NOW = 1_796_000_000.0
AT = datetime(2026, 12, 1, 10, 0, tzinfo=CHINA_TZ)


def exchange(user="zyh-10086", exchange_id="zx_1"):
    return Exchange(id=exchange_id, status="pending", resident_id="res_1", household_id="hh_1",
                    payer_account="household:hh_1", asset="volunteer", amount=60, coins=120, zyh_user_id=user,
                    hold_transfer_id="tr_1", created_at=AT, timeout_at=AT + timedelta(minutes=15))


def partner(*answers):
    transport = StubTransport(*answers)
    return HttpZyhPartner("https://api.zyh.example/open/v2", key=lambda: KEY, opener=transport, timeout=3,
                          now=lambda: NOW), transport


def header(request, name):
    return {k.lower(): v for k, v in request.header_items()}[name.lower()]


def test_an_exchange_is_a_signed_post_with_our_id_as_idempotency_key():
    zyh, transport = partner({"status": "accepted", "ref": "ZYH-20261201-0001"})
    answer = zyh.submit(exchange())
    assert (answer.exchange_id, answer.outcome, answer.partner_ref) == ("zx_1", "accepted", "ZYH-20261201-0001")
    (request,) = transport.requests
    assert request.get_method() == "POST" and request.full_url == "https://api.zyh.example/open/v2/exchanges"
    assert json.loads(request.data) == {"exchange_id": "zx_1", "user_id": "zyh-10086", "coins": 120, "minutes": 60,
                                        "requested_at": "2026-12-01T10:00:00+08:00"}
    assert header(request, "Idempotency-Key") == "zx_1"
    assert header(request, TIMESTAMP_HEADER) == str(int(NOW))
    assert header(request, SIGNATURE_HEADER) == signature(KEY, str(int(NOW)), "POST", "/open/v2/exchanges",
                                                          request.data)
    assert transport.timeouts == [3]


def test_a_refusal_is_an_answer_too():
    zyh, _ = partner({"status": "refused", "reason": "用户不存在"})
    answer = zyh.submit(exchange())
    assert (answer.outcome, answer.partner_ref, answer.reason) == ("refused", None, "用户不存在")


@pytest.mark.parametrize("failure", [
    urllib.error.URLError(ConnectionRefusedError()),
    urllib.error.URLError(socket.timeout("connect timed out")),      # never reached it: ask again
    urllib.error.HTTPError("https://api.zyh.example", 503, "busy", {}, None),
    RecordedResponse(b"<html>gateway</html>"),
    RecordedResponse(b"[1, 2]"),
    RecordedResponse(json.dumps({"status": "maybe"}).encode()),
    RecordedResponse(json.dumps({"status": "accepted"}).encode()),   # an acceptance without a reference
    RecordedResponse(b"{}", status=500),
])
def test_anything_that_is_not_an_answer_is_an_upstream_error(failure):
    zyh, _ = partner(failure)
    with pytest.raises(UpstreamError):
        zyh.submit(exchange())


def test_a_read_timeout_is_no_answer_yet():
    zyh, _ = partner(socket.timeout("read timed out"))
    with pytest.raises(PartnerNoAnswer):
        zyh.submit(exchange())


def test_the_daily_statement_is_a_signed_get():
    zyh, transport = partner({"items": [{"exchange_id": "zx_1", "ref": "ZYH-1", "minutes": 60, "coins": 120}]})
    assert zyh.statement("2026-12-01") == [StatementLine("zx_1", "ZYH-1", 60, 120)]
    (request,) = transport.requests
    url = urllib.parse.urlsplit(request.full_url)
    assert (request.get_method(), url.path, url.query) == ("GET", "/open/v2/statements", "date=2026-12-01")
    assert request.data is None
    assert header(request, SIGNATURE_HEADER) == signature(KEY, str(int(NOW)), "GET",
                                                          "/open/v2/statements?date=2026-12-01", b"")
    for bad in ({"items": "none"}, {"items": [{"exchange_id": "zx_1"}]}):
        zyh, _ = partner(bad)
        with pytest.raises(UpstreamError):
            zyh.statement("2026-12-01")


def test_notifications_need_a_fresh_valid_signature():
    body = b'{"exchange_id":"zx_1","status":"accepted","ref":"ZYH-1"}'
    path = "/v1/partners/zyh/answers"
    good = signed_headers(KEY, "POST", path, body, NOW)
    verify(KEY, good, "POST", path, body, NOW + 10)
    verify(KEY, {k.lower(): v for k, v in good.items()}, "POST", path, body, NOW)  # header names any case
    for headers, key, when, raw in ((good, "other-key", NOW, body), (good, KEY, NOW + 301, body),
                                    (good, KEY, NOW, body + b" "), ({}, KEY, NOW, body),
                                    ({**good, TIMESTAMP_HEADER: "soon"}, KEY, NOW, body), (good, "", NOW, body)):
        with pytest.raises(Unauthenticated):
            verify(key, headers, "POST", path, raw, when)


def test_the_local_fake_accepts_refuses_or_never_answers_and_is_idempotent():
    fake = LocalZyhPartner()
    first = fake.submit(exchange())
    assert first.outcome == "accepted" and fake.submit(exchange()) == first
    assert fake.statement("2026-12-01") == [StatementLine("zx_1", first.partner_ref, 60, 120)]
    assert fake.submit(exchange("reject-someone", "zx_2")).outcome == "refused"
    with pytest.raises(PartnerNoAnswer):
        fake.submit(exchange("timeout-someone", "zx_3"))
    assert fake.calls == ["zx_1", "zx_1", "zx_2", "zx_3"]
    assert fake.statement("2026-12-02") == []
