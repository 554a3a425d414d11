"""WeChat mini-program login: exchange a ``wx.login`` code for the user's openid.

The composition root picks the adapter: the real code2Session client in every deployed stage,
the local fake (``dev-<openid>``) only when ``settings.is_local``. There is deliberately no
setting that enables the fake in a deployed stage.

The session_key WeChat returns is neither stored nor logged (nothing here needs it); neither
is the login code or the app secret (the request URL carries both, so it is never logged).
"""
from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from functions.core.errors import Forbidden, TimebankError, Unauthenticated, UpstreamError
from functions.core.observability import logger
from functions.core.settings import Settings

TIMEOUT_SECONDS = 5.0
MAX_RESPONSE_BYTES = 64 * 1024
DEV_PREFIX = "dev-"
DEV_OPENID = re.compile(r"[A-Za-z0-9_\-]{1,64}")

# code2Session errcodes (https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/user-login/code2Session.html)
ERR_SYSTEM_BUSY = -1
ERR_INVALID_CODE = 40029
ERR_CODE_USED = 40163
ERR_RATE_LIMITED = 45011
ERR_HIGH_RISK_USER = 40226


@dataclass(frozen=True)
class WeChatSession:
    openid: str
    unionid: str | None = None


class InvalidLoginCode(Unauthenticated):
    code = "INVALID_LOGIN_CODE"
    default_message = "登录凭证无效或已过期，请重新登录"


class LoginRateLimited(TimebankError):
    status = 429
    code = "RATE_LIMITED"
    default_message = "登录过于频繁，请稍后再试"


class LoginBlocked(Forbidden):
    code = "LOGIN_BLOCKED"
    default_message = "微信判定该账号存在风险，暂时无法登录"


class LocalWeChat:
    """The local stage's stand-in: ``dev-<openid>`` logs in as ``<openid>``."""

    def code_to_session(self, code: str) -> WeChatSession:
        if not code.startswith(DEV_PREFIX) or not DEV_OPENID.fullmatch(code[len(DEV_PREFIX):]):
            raise InvalidLoginCode(details={"hint": "local stage accepts dev-<openid>"})
        return WeChatSession(openid=code[len(DEV_PREFIX):])


Opener = Callable[..., Any]  # urllib.request.urlopen-compatible: opener(url, timeout=...) -> response


class WeChatApiClient:
    """code2Session over HTTPS (urllib; no dependency)."""

    def __init__(self, api_base: str, app_id: Callable[[], str], app_secret: Callable[[], str],
                 opener: Opener = urllib.request.urlopen, timeout: float = TIMEOUT_SECONDS):
        self._api_base = api_base.rstrip("/")
        self._app_id = app_id
        self._app_secret = app_secret
        self._opener = opener
        self._timeout = timeout

    def code_to_session(self, code: str) -> WeChatSession:
        query = urllib.parse.urlencode({"appid": self._app_id(), "secret": self._app_secret(),
                                        "js_code": code, "grant_type": "authorization_code"})
        payload = self._get_json(f"{self._api_base}/sns/jscode2session?{query}")
        errcode = payload.get("errcode", 0)
        if errcode in (0, None):
            openid = payload.get("openid")
            if not isinstance(openid, str) or not openid or len(openid) > 128:
                logger.error("wechat code2session answered without an openid")
                raise UpstreamError()
            unionid = payload.get("unionid")
            return WeChatSession(openid=openid, unionid=unionid if isinstance(unionid, str) else None)
        raise self._error_for(errcode)

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            with self._opener(url, timeout=self._timeout) as response:
                status = getattr(response, "status", 200)
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as error:
            logger.warning("wechat code2session http error", extra={"status": error.code})
            raise UpstreamError() from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as error:
            logger.warning("wechat code2session unreachable", extra={"error": type(error).__name__})
            raise UpstreamError() from None
        if status >= 400:
            logger.warning("wechat code2session http error", extra={"status": status})
            raise UpstreamError()
        if len(raw) > MAX_RESPONSE_BYTES:
            logger.warning("wechat code2session response too large")
            raise UpstreamError()
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            logger.warning("wechat code2session returned malformed JSON")
            raise UpstreamError() from None
        if not isinstance(payload, dict):
            logger.warning("wechat code2session returned a non-object")
            raise UpstreamError()
        return payload

    @staticmethod
    def _error_for(errcode: Any) -> TimebankError:
        logger.info("wechat code2session refused", extra={"errcode": errcode})
        if errcode in (ERR_INVALID_CODE, ERR_CODE_USED):
            return InvalidLoginCode()
        if errcode == ERR_RATE_LIMITED:
            return LoginRateLimited()
        if errcode == ERR_HIGH_RISK_USER:
            return LoginBlocked()
        # -1 (busy), invalid appid/secret (a deployment fault) and anything unknown: not the caller's fault.
        if errcode != ERR_SYSTEM_BUSY:
            logger.error("wechat code2session unexpected errcode", extra={"errcode": errcode})
        return UpstreamError()



def wechat_client(settings: Settings, secrets: Any = None, opener: Opener = urllib.request.urlopen) -> Any:
    """The adapter a stage uses: the fake only in the local and test stages, never deployed."""
    if settings.is_local:
        return LocalWeChat()
    return WeChatApiClient(
        settings.wechat_api_base,
        app_id=lambda: secrets.get(settings.wechat_app_id_parameter),
        app_secret=lambda: secrets.get(settings.wechat_app_secret_parameter),
        opener=opener)
