"""Secrets from SSM Parameter Store (SecureString), cached in the process for a while.

Settings hold only parameter *names*; values are fetched here with ``WithDecryption`` and kept
for ``ttl_seconds`` so a warm Lambda does not call SSM on every request, yet a rotated value is
picked up within minutes. If a refresh fails and a previous value is cached, that value keeps
being used (logged) rather than failing every request while SSM is briefly unavailable.
Values are never logged.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from functions.core.errors import UpstreamError
from functions.core.observability import logger

DEFAULT_TTL_SECONDS = 300


class SecretNotConfigured(RuntimeError):
    """The parameter name is empty or the parameter does not exist: a deployment fault."""


class ParameterStoreSecrets:
    def __init__(self, client: Any | None = None, ttl_seconds: int = DEFAULT_TTL_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic):
        self._client = client
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _ssm(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("ssm")
        return self._client

    def get(self, name: str) -> str:
        if not name:
            raise SecretNotConfigured("secret parameter name is not configured")
        now = self._monotonic()
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and now < cached[1]:
            return cached[0]
        try:
            value = self._fetch(name)
        except SecretNotConfigured:
            raise
        except Exception as error:  # noqa: BLE001 - any SSM/network failure
            if cached is not None:
                logger.warning("secret refresh failed; using cached value",
                               extra={"parameter": name, "error": type(error).__name__})
                return cached[0]
            logger.error("secret unavailable", extra={"parameter": name, "error": type(error).__name__})
            raise UpstreamError() from error
        with self._lock:
            self._cache[name] = (value, now + self._ttl)
        return value

    def _fetch(self, name: str) -> str:
        from botocore.exceptions import ClientError

        try:
            response = self._ssm().get_parameter(Name=name, WithDecryption=True)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
                raise SecretNotConfigured(f"SSM parameter {name} does not exist") from None
            raise
        return response["Parameter"]["Value"]

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

