"""The WeChat subscribe-message client against stubbed HTTP answers (no network)."""
from __future__ import annotations

import json
import logging

import pytest

from functions.adapters.secrets import SecretNotConfigured
from functions.notifications.model import SendStatus
from functions.notifications.model import TemplateRegistry
from functions.notifications.wechat import TransportError, WeChatSubscribeNotifier

BASE = "https://api.weixin.qq.com"
OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"
DATA = {"category": "接送帮", "title": "放学接孩子（三年级二班，学校东门口等候，请准时）", "start_at": "2026-12-02 16:30",
        "note": "您所在楼栋的邻居需要帮助"}


class StubWeChat:
    """Scripted answers per endpoint; records every call."""

    def __init__(self, sends=(), tokens=None):
        self.sends = list(sends)
        self.tokens = list(tokens) if tokens is not None else None
        self.calls: list[tuple[str, dict]] = []
        self.issued = 0

    def __call__(self, url: str, body: dict) -> dict:
        self.calls.append((url, body))
        if url.endswith("/cgi-bin/stable_token"):
            if self.tokens:
                answer = self.tokens.pop(0)
                if isinstance(answer, Exception):
                    raise answer
                return answer
            self.issued += 1
            return {"access_token": f"token-{self.issued}", "expires_in": 7200}
        answer = self.sends.pop(0) if self.sends else {"errcode": 0, "errmsg": "ok", "msgid": 1}
        if isinstance(answer, Exception):
            raise answer
        return answer

    def send_urls(self) -> list[str]:
        return [url for url, _ in self.calls if "/subscribe/send" in url]

    def token_calls(self) -> list[dict]:
        return [body for url, body in self.calls if url.endswith("/stable_token")]


class Clock:
    def __init__(self):
        self.value = 1000.0

    def __call__(self):
        return self.value


def client(stub, clock=None, templates=None, app_secret=lambda: "app-secret"):
    registry = templates or TemplateRegistry({"match": "TMPL-MATCH", "reminder": {
        "id": "TMPL-REMIND", "fields": {"title": "thing7", "start_at": "date3"}}}, local_defaults=False)
    return WeChatSubscribeNotifier(BASE, app_id=lambda: "wx-app", app_secret=app_secret, templates=registry,
                                   miniprogram_state="trial", transport=stub, monotonic=clock or Clock())


def test_sends_the_subscribe_message_with_configured_keywords():
    stub = StubWeChat()
    result = client(stub).send(OPENID, "match", DATA, page="pages/requests/detail?id=req_1")
    assert result.status is SendStatus.SENT and result.message_id == "1"
    token_url, token_body = stub.calls[0]
    assert token_url == f"{BASE}/cgi-bin/stable_token"
    assert token_body == {"grant_type": "client_credential", "appid": "wx-app", "secret": "app-secret",
                          "force_refresh": False}
    send_url, body = stub.calls[1]
    assert send_url == f"{BASE}/cgi-bin/message/subscribe/send?access_token=token-1"
    assert body["touser"] == OPENID and body["template_id"] == "TMPL-MATCH"
    assert body["page"] == "pages/requests/detail?id=req_1" and body["miniprogram_state"] == "trial"
    assert body["data"]["thing1"] == {"value": "接送帮"}
    assert body["data"]["time3"] == {"value": "2026-12-02 16:30"}
    assert len(body["data"]["thing2"]["value"]) == 20          # WeChat refuses longer thing values
    assert body["data"]["thing2"]["value"].endswith("…")


def test_custom_field_mapping_of_a_template():
    stub = StubWeChat()
    client(stub).send(OPENID, "reminder", {"title": "接孩子", "start_at": "2026-12-02 16:30", "note": "x"})
    assert stub.calls[1][1]["data"] == {"thing7": {"value": "接孩子"}, "date3": {"value": "2026-12-02 16:30"}}


def test_the_token_is_cached_until_shortly_before_it_expires():
    stub, clock = StubWeChat(), Clock()
    notifier = client(stub, clock)
    notifier.send(OPENID, "match", DATA)
    clock.value += 7200 - 301
    notifier.send(OPENID, "match", DATA)
    assert len(stub.token_calls()) == 1
    clock.value += 2
    notifier.send(OPENID, "match", DATA)
    assert len(stub.token_calls()) == 2
    assert stub.send_urls()[-1].endswith("access_token=token-2")


@pytest.mark.parametrize("errcode", [40001, 42001])
def test_an_invalid_token_is_refreshed_once_and_the_send_retried(errcode):
    stub = StubWeChat(sends=[{"errcode": errcode, "errmsg": "invalid credential"}])
    assert client(stub).send(OPENID, "match", DATA).status is SendStatus.SENT
    assert [body["force_refresh"] for body in stub.token_calls()] == [False, True]
    assert stub.send_urls()[-1].endswith("access_token=token-2")


def test_a_token_still_invalid_after_one_refresh_is_retried_later_not_looped():
    stub = StubWeChat(sends=[{"errcode": 40001}, {"errcode": 42001}, {"errcode": 0}])
    result = client(stub).send(OPENID, "match", DATA)
    assert result.status is SendStatus.RETRY and result.errcode == 42001
    assert len(stub.send_urls()) == 2 and len(stub.token_calls()) == 2


@pytest.mark.parametrize("answer, status", [
    ({"errcode": 43101, "errmsg": "user refuse to accept the msg"}, SendStatus.REFUSED),
    ({"errcode": 47003, "errmsg": "argument invalid! data.thing2.value"}, SendStatus.FAILED),
    ({"errcode": 40003, "errmsg": "invalid openid"}, SendStatus.FAILED),
    ({"errcode": -1, "errmsg": "system error"}, SendStatus.RETRY),
    ({"errcode": 45009, "errmsg": "reach max api daily quota limit"}, SendStatus.RETRY),
    (TransportError("timeout"), SendStatus.RETRY),
])
def test_errcodes_map_to_what_the_caller_should_do(answer, status):
    stub = StubWeChat(sends=[answer])
    result = client(stub).send(OPENID, "match", DATA)
    assert result.status is status
    assert len(stub.send_urls()) == 1          # nothing here is retried in place


@pytest.mark.parametrize("token_answer, status", [
    (TransportError("URLError"), SendStatus.RETRY),
    ({"errcode": -1, "errmsg": "system error"}, SendStatus.RETRY),
    ({"errcode": 40013, "errmsg": "invalid appid"}, SendStatus.FAILED),
    ({"access_token": "", "expires_in": 7200}, SendStatus.RETRY),
])
def test_token_trouble_never_reaches_the_send(token_answer, status):
    stub = StubWeChat(tokens=[token_answer])
    assert client(stub).send(OPENID, "match", DATA).status is status
    assert stub.send_urls() == []


def test_missing_credentials_are_a_permanent_failure():
    def not_configured():
        raise SecretNotConfigured("no parameter")

    stub = StubWeChat()
    assert client(stub, app_secret=not_configured).send(OPENID, "match", DATA).status is SendStatus.FAILED
    assert stub.calls == []


def test_an_unconfigured_template_fails_without_calling_wechat():
    stub = StubWeChat()
    registry = TemplateRegistry({"match": "TMPL-MATCH"}, local_defaults=False)
    assert client(stub, templates=registry).send(OPENID, "reminder", DATA).status is SendStatus.FAILED
    assert stub.calls == []


def test_logs_carry_neither_openid_nor_message_nor_token(caplog):
    caplog.set_level(logging.DEBUG)
    stub = StubWeChat(sends=[{"errcode": 47003}, {"errcode": -1}, {"errcode": 43101}])
    notifier = client(stub)
    for _ in range(3):
        notifier.send(OPENID, "match", DATA)
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "47003" in logged and len(caplog.records) == 3  # the errcodes are logged
    for secret in (OPENID, "接送帮", "放学接孩子", "token-1", "app-secret"):
        assert secret not in logged


def test_templates_config_is_checked():
    with pytest.raises(ValueError):
        TemplateRegistry({"marketing": "T1"}, local_defaults=True)
    with pytest.raises(ValueError):
        TemplateRegistry({"match": {"fields": {}}}, local_defaults=True)
    local = TemplateRegistry({}, local_defaults=True)
    assert [t.template_id for t in local.all()] == ["local-match", "local-reminder"]
    assert TemplateRegistry({}, local_defaults=False).all() == []
    assert json.dumps(local.get("match").fields)
