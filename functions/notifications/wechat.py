"""WeChat subscribe messages (订阅消息) over HTTPS with urllib.

- Access token from ``cgi-bin/stable_token`` with the app id/secret from SSM (``adapters.secrets``),
  cached until shortly before it expires. ``stable_token`` (unlike ``cgi-bin/token``) does not
  invalidate the token other processes hold, so concurrent Lambdas don't knock each other out.
- ``cgi-bin/message/subscribe/send`` errcodes: 43101 (refused / consent used up) → REFUSED, no
  retry; 40001/42001/40014 (token invalid or expired) → force-refresh the token once and retry;
  47003 (bad data) and other permanent codes → FAILED; -1 (busy), 45009 (quota) and transport
  faults → RETRY.

Neither the openid, the message data, the token nor the app secret is ever logged.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Mapping

from functions.core.observability import logger
from functions.adapters.secrets import SecretNotConfigured
from functions.notifications.model import SendResult, SendStatus, TemplateRegistry, wechat_data

TIMEOUT_SECONDS = 5.0
MAX_RESPONSE_BYTES = 64 * 1024
TOKEN_SAFETY_MARGIN_SECONDS = 300

ERR_BUSY = -1
ERR_INVALID_TOKEN = 40001
ERR_MALFORMED_TOKEN = 40014
ERR_EXPIRED_TOKEN = 42001
ERR_REFUSED = 43101
ERR_BAD_DATA = 47003
ERR_QUOTA = 45009
TOKEN_ERRORS = frozenset({ERR_INVALID_TOKEN, ERR_MALFORMED_TOKEN, ERR_EXPIRED_TOKEN})
TRANSIENT_ERRORS = frozenset({ERR_BUSY, ERR_QUOTA})


class TransportError(Exception):
    """The HTTP exchange itself failed (network, timeout, HTTP error, not JSON)."""


# transport(url, json_body) -> parsed JSON object; raises TransportError.
Transport = Callable[[str, dict[str, Any]], dict[str, Any]]


def urllib_transport(url: str, body: dict[str, Any], timeout: float = TIMEOUT_SECONDS) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body, ensure_ascii=False).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - fixed https base
            raw = response.read(MAX_RESPONSE_BYTES + 1)
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as error:
        raise TransportError(type(error).__name__) from None
    if len(raw) > MAX_RESPONSE_BYTES:
        raise TransportError("response too large")
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise TransportError("malformed JSON") from None
    if not isinstance(payload, dict):
        raise TransportError("not a JSON object")
    return payload


class _TokenUnavailable(Exception):
    def __init__(self, permanent: bool, errcode: int | None = None):
        super().__init__(errcode)
        self.permanent, self.errcode = permanent, errcode


class WeChatSubscribeNotifier:
    def __init__(self, api_base: str, app_id: Callable[[], str], app_secret: Callable[[], str],
                 templates: TemplateRegistry, miniprogram_state: str = "formal",
                 transport: Transport = urllib_transport, monotonic: Callable[[], float] = time.monotonic):
        self._base = api_base.rstrip("/")
        self._app_id, self._app_secret = app_id, app_secret
        self._templates = templates
        self._state = miniprogram_state
        self._transport = transport
        self._monotonic = monotonic
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    # --- access token ------------------------------------------------------------------------
    def _access_token(self, force_refresh: bool = False) -> str:
        with self._lock:
            if not force_refresh and self._token and self._monotonic() < self._token[1]:
                return self._token[0]
            try:
                credentials = {"appid": self._app_id(), "secret": self._app_secret()}
            except SecretNotConfigured:
                logger.error("wechat app credentials not configured")
                raise _TokenUnavailable(permanent=True) from None
            except Exception as error:  # noqa: BLE001 - SSM briefly unavailable
                logger.warning("wechat app credentials unavailable", extra={"error": type(error).__name__})
                raise _TokenUnavailable(permanent=False) from None
            try:
                payload = self._transport(f"{self._base}/cgi-bin/stable_token", {
                    "grant_type": "client_credential", **credentials, "force_refresh": force_refresh})
            except TransportError as error:
                logger.warning("wechat stable_token unreachable", extra={"error": str(error)})
                raise _TokenUnavailable(permanent=False) from None
            errcode = payload.get("errcode") or 0
            token, expires_in = payload.get("access_token"), payload.get("expires_in")
            if errcode or not isinstance(token, str) or not token or not isinstance(expires_in, int):
                logger.error("wechat stable_token refused", extra={"errcode": errcode})
                raise _TokenUnavailable(permanent=errcode not in TRANSIENT_ERRORS and errcode != 0,
                                        errcode=errcode or None)
            self._token = (token, self._monotonic() + max(0, expires_in - TOKEN_SAFETY_MARGIN_SECONDS))
            return token

    # --- sending -----------------------------------------------------------------------------
    def send(self, openid: str, template: str, data: Mapping[str, str], page: str | None = None) -> SendResult:
        config = self._templates.get(template)
        if config is None:
            logger.error("notification template not configured", extra={"template": template})
            return SendResult(SendStatus.FAILED)
        body: dict[str, Any] = {"touser": openid, "template_id": config.template_id,
                                "data": wechat_data(config, data), "miniprogram_state": self._state,
                                "lang": "zh_CN"}
        if page:
            body["page"] = page
        try:
            payload = self._post_send(body, force_refresh=False)
            errcode = payload.get("errcode") or 0
            if errcode in TOKEN_ERRORS:
                # Someone else refreshed it or it expired early: refresh once, then believe the answer.
                payload = self._post_send(body, force_refresh=True)
                errcode = payload.get("errcode") or 0
        except _TokenUnavailable as error:
            return SendResult(SendStatus.FAILED if error.permanent else SendStatus.RETRY, error.errcode)
        except TransportError as error:
            logger.warning("wechat subscribe send unreachable", extra={"template": template, "error": str(error)})
            return SendResult(SendStatus.RETRY)
        return self._result(template, errcode, payload)

    def _post_send(self, body: dict[str, Any], force_refresh: bool) -> dict[str, Any]:
        token = self._access_token(force_refresh=force_refresh)
        return self._transport(f"{self._base}/cgi-bin/message/subscribe/send?access_token={token}", body)

    @staticmethod
    def _result(template: str, errcode: int, payload: Mapping[str, Any]) -> SendResult:
        if errcode == 0:
            msgid = payload.get("msgid")
            return SendResult(SendStatus.SENT, message_id=str(msgid) if msgid is not None else None)
        if errcode == ERR_REFUSED:
            logger.info("wechat subscribe refused", extra={"template": template, "errcode": errcode})
            return SendResult(SendStatus.REFUSED, errcode)
        if errcode in TRANSIENT_ERRORS or errcode in TOKEN_ERRORS:
            logger.warning("wechat subscribe transient error", extra={"template": template, "errcode": errcode})
            return SendResult(SendStatus.RETRY, errcode)
        # 47003 bad data, 40003 bad openid, 40037 bad template id, anything unknown: permanent.
        logger.error("wechat subscribe failed", extra={"template": template, "errcode": errcode})
        return SendResult(SendStatus.FAILED, errcode)
