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



# Secrets Manager staging labels a key may carry. A signer uses AWSCURRENT; a verifier accepts
# all three, so a rotation (new version AWSPENDING → AWSCURRENT, old → AWSPREVIOUS) never
# refuses a call signed on the other side with either key (infra/README.md, "District hub").
CURRENT = "AWSCURRENT"
ACCEPTED_STAGES = ("AWSCURRENT", "AWSPENDING", "AWSPREVIOUS")


class SecretsManagerKeys:
    """Keys (HMAC secrets) from Secrets Manager ``GetSecretValue`` by version stage, cached like
    the SSM parameters above. A stage the secret does not have is simply absent."""

    def __init__(self, client: Any | None = None, ttl_seconds: int = DEFAULT_TTL_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic):
        self._client = client
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._cache: dict[tuple[str, str], tuple[bytes | None, float]] = {}
        self._lock = threading.Lock()

    def _secretsmanager(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("secretsmanager")
        return self._client

    def current(self, name: str) -> bytes:
        key = self._get(name, CURRENT)
        if key is None:
            raise SecretNotConfigured(f"secret {name} has no {CURRENT} version")
        return key

    def accepted(self, name: str) -> list[bytes]:
        """Every version a verifier accepts, current first (duplicates dropped)."""
        keys: list[bytes] = []
        for stage in ACCEPTED_STAGES:
            key = self._get(name, stage)
            if key is not None and key not in keys:
                keys.append(key)
        if not keys:
            raise SecretNotConfigured(f"secret {name} has no usable version")
        return keys

    def _get(self, name: str, stage: str) -> bytes | None:
        if not name:
            raise SecretNotConfigured("secret name is not configured")
        now = self._monotonic()
        with self._lock:
            cached = self._cache.get((name, stage))
        if cached is not None and now < cached[1]:
            return cached[0]
        try:
            value = self._fetch(name, stage)
        except SecretNotConfigured:
            raise
        except Exception as error:  # noqa: BLE001 - any Secrets Manager/network failure
            if cached is not None:
                logger.warning("secret refresh failed; using cached value",
                               extra={"secret": name, "stage": stage, "error": type(error).__name__})
                return cached[0]
            logger.error("secret unavailable", extra={"secret": name, "error": type(error).__name__})
            raise UpstreamError() from error
        with self._lock:
            self._cache[(name, stage)] = (value, now + self._ttl)
        return value

    def _fetch(self, name: str, stage: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            response = self._secretsmanager().get_secret_value(SecretId=name, VersionStage=stage)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == "ResourceNotFoundException":
                if stage == CURRENT:
                    raise SecretNotConfigured(f"secret {name} does not exist") from None
                return None  # no such stage (no rotation under way)
            raise
        value = response.get("SecretString")
        return value.encode() if value is not None else response.get("SecretBinary")

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
