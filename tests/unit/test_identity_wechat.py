"""The code2Session client against a fake HTTP transport (urllib's opener is injected)."""
import io
import json
import socket
import urllib.error
import urllib.parse

import pytest

from functions.core.errors import Unauthenticated, UpstreamError
from functions.core.settings import Settings
from functions.identity.wechat import (
    InvalidLoginCode, LocalWeChat, LoginBlocked, LoginRateLimited, WeChatApiClient, wechat_client,
)


class FakeResponse(io.BytesIO):
    def __init__(self, body: bytes, status: int = 200):
        super().__init__(body)
        self.status = status

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FakeOpener:
    """Records requests; answers with a body, or raises what it is given."""

    def __init__(self, answer):
        self.answer = answer
        self.urls = []
        self.timeouts = []

    def __call__(self, url, timeout=None):
        self.urls.append(url)
        self.timeouts.append(timeout)
        if isinstance(self.answer, BaseException):
            raise self.answer
        if isinstance(self.answer, FakeResponse):
            return self.answer
        body = self.answer if isinstance(self.answer, bytes) else json.dumps(self.answer).encode()
        return FakeResponse(body)


def client(answer):
    opener = FakeOpener(answer)
    return WeChatApiClient("https://wechat.example", app_id=lambda: "wx-app", app_secret=lambda: "s3cret",
                           opener=opener, timeout=2.5), opener


def test_success_returns_the_openid_and_sends_the_documented_query():
    wechat, opener = client({"openid": "o-123", "session_key": "never-kept", "unionid": "u-9"})
    session = wechat.code_to_session("the-code")
    assert (session.openid, session.unionid) == ("o-123", "u-9")
    assert not hasattr(session, "session_key")
    url = urllib.parse.urlsplit(opener.urls[0])
    assert (url.scheme, url.netloc, url.path) == ("https", "wechat.example", "/sns/jscode2session")
    assert urllib.parse.parse_qs(url.query) == {
        "appid": ["wx-app"], "secret": ["s3cret"], "js_code": ["the-code"], "grant_type": ["authorization_code"]}
    assert opener.timeouts == [2.5]


def test_errcode_zero_with_openid_is_success():
    wechat, _ = client({"errcode": 0, "errmsg": "ok", "openid": "o-1"})
    assert wechat.code_to_session("c").openid == "o-1"


@pytest.mark.parametrize("errcode, error, status, code", [
    (40029, InvalidLoginCode, 401, "INVALID_LOGIN_CODE"),
    (40163, InvalidLoginCode, 401, "INVALID_LOGIN_CODE"),
    (45011, LoginRateLimited, 429, "RATE_LIMITED"),
    (40226, LoginBlocked, 403, "LOGIN_BLOCKED"),
    (-1, UpstreamError, 502, "UPSTREAM_ERROR"),
    (40013, UpstreamError, 502, "UPSTREAM_ERROR"),   # invalid appid: our deployment, not the caller
    (40125, UpstreamError, 502, "UPSTREAM_ERROR"),   # invalid secret
    (99999, UpstreamError, 502, "UPSTREAM_ERROR"),
])
def test_errcodes_map_to_errors(errcode, error, status, code):
    wechat, _ = client({"errcode": errcode, "errmsg": "whatever"})
    with pytest.raises(error) as raised:
        wechat.code_to_session("c")
    assert (raised.value.status, raised.value.code) == (status, code)
    if errcode in (40029, 40163):
        assert isinstance(raised.value, Unauthenticated)


@pytest.mark.parametrize("body", [b"<html>busy</html>", b"", b"[1,2]", b"\xff\xfe", b"{\"openid\": 5}", b"{}",
                                  b"x" * (70 * 1024)])
def test_malformed_answers_are_upstream_errors(body):
    wechat, _ = client(body)
    with pytest.raises(UpstreamError):
        wechat.code_to_session("c")


@pytest.mark.parametrize("failure", [
    socket.timeout("timed out"),
    TimeoutError(),
    urllib.error.URLError("no route"),
    ConnectionResetError(),
    urllib.error.HTTPError("https://wechat.example", 503, "unavailable", {}, None),
])
def test_transport_failures_are_upstream_errors(failure):
    wechat, _ = client(failure)
    with pytest.raises(UpstreamError):
        wechat.code_to_session("c")


def test_http_5xx_status_without_exception_is_upstream_error():
    wechat, _ = client(FakeResponse(b'{"openid": "o"}', status=502))
    with pytest.raises(UpstreamError):
        wechat.code_to_session("c")


def test_nothing_secret_is_logged(caplog):
    caplog.set_level("DEBUG")
    for answer in ({"errcode": 40029, "errmsg": "invalid code"}, {"errcode": 40125}, b"not json",
                   urllib.error.HTTPError("https://wechat.example/?secret=s3cret", 500, "x", {}, None),
                   {"openid": "o", "session_key": "SESSION-KEY"}):
        wechat, _ = client(answer)
        try:
            wechat.code_to_session("the-login-code")
        except (InvalidLoginCode, UpstreamError):
            pass
    assert caplog.records, "the client logs refusals and failures"
    # Every attribute of every record (message and structured extras).
    logs = " ".join(str(record.__dict__) for record in caplog.records)
    for secret in ("s3cret", "the-login-code", "SESSION-KEY"):
        assert secret not in logs


# --- the local fake and which adapter a stage gets ---------------------------------------------


def test_local_fake_accepts_dev_codes_only():
    assert LocalWeChat().code_to_session("dev-alice").openid == "alice"
    for code in ("alice", "dev-", "DEV-alice", "dev-a b", "dev-" + "x" * 65, "prod-alice"):
        with pytest.raises(InvalidLoginCode):
            LocalWeChat().code_to_session(code)


@pytest.mark.parametrize("stage", ["local", "test"])
def test_local_stages_use_the_fake(stage):
    assert isinstance(wechat_client(Settings(stage=stage)), LocalWeChat)


class FakeSecrets:
    def __init__(self):
        self.values = {"/tb/appid": "wx-prod", "/tb/secret": "prod-secret"}

    def get(self, name):
        return self.values[name]


@pytest.mark.parametrize("stage", ["prod", "staging", "dev", ""])
def test_deployed_stage_sends_dev_codes_to_wechat_and_they_are_refused(stage):
    settings = Settings(stage=stage, wechat_app_id_parameter="/tb/appid", wechat_app_secret_parameter="/tb/secret",
                        wechat_api_base="https://wechat.example")
    opener = FakeOpener({"errcode": 40029, "errmsg": "invalid code"})
    wechat = wechat_client(settings, FakeSecrets(), opener=opener)
    assert isinstance(wechat, WeChatApiClient)
    with pytest.raises(InvalidLoginCode):
        wechat.code_to_session("dev-admin-test")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(opener.urls[0]).query)
    assert query["js_code"] == ["dev-admin-test"]
    assert query["appid"] == ["wx-prod"] and query["secret"] == ["prod-secret"]
