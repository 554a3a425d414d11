import base64
import json
from datetime import datetime, timedelta

import pytest

from functions.core import clock
from functions.core.errors import Unauthenticated
from functions.core.settings import Settings
from functions.identity.tokens import TokenSecretMissing, TokenSigner, secret_source


class _NoSecrets:
    def get(self, name):
        raise AssertionError(f"no secret {name} in this test")


def token_signer(settings, secrets=None):
    """How the composition root builds the signer of a stage."""
    return TokenSigner(secret_source(settings, secrets or _NoSecrets()), settings.token_ttl_seconds)


T0 = datetime(2026, 12, 1, 9, 0, tzinfo=clock.CHINA_TZ)


class Clock:
    def __init__(self, at):
        self.at = at

    def __call__(self):
        return self.at


def signer(secret="s" * 32, ttl=3600, now=None):
    return TokenSigner(lambda: secret, ttl, now or Clock(T0))


def test_round_trip_carries_openid_times_and_version():
    token, expires = signer().issue("alice", version=3)
    claims = signer().verify(token)
    assert (claims.openid, claims.version) == ("alice", 3)
    assert claims.issued_at == int(T0.timestamp())
    assert claims.expires_at == expires == int(T0.timestamp()) + 3600


def test_expired_token_is_refused():
    now = Clock(T0)
    token, _ = signer(now=now).issue("alice")
    now.at = T0 + timedelta(seconds=3599)
    assert signer(now=now).verify(token).openid == "alice"
    now.at = T0 + timedelta(seconds=3600)
    with pytest.raises(Unauthenticated) as error:
        signer(now=now).verify(token)
    assert error.value.details == {"reason": "token_expired"}


def _reencode(token, **changes):
    prefix, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    new_payload = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{prefix}.{new_payload}.{signature}"


def test_tampered_payload_is_refused():
    token, _ = signer().issue("alice")
    for forged in (_reencode(token, sub="admin-test"), _reencode(token, exp=2**40), _reencode(token, ver=99)):
        with pytest.raises(Unauthenticated):
            signer().verify(forged)


def test_other_secret_is_refused():
    token, _ = signer(secret="a" * 32).issue("alice")
    with pytest.raises(Unauthenticated):
        signer(secret="b" * 32).verify(token)


@pytest.mark.parametrize("garbage", [
    "", "abc", "t1.x.y", "t1..", "t2.e30.sig", "t1.e30", "a.b.c.d", "t1.!!!.@@@", "x" * 5000, "t1.e30." + "A" * 43,
])
def test_garbage_is_refused(garbage):
    with pytest.raises(Unauthenticated):
        signer().verify(garbage)


def test_correctly_signed_but_malformed_payloads_are_refused():
    s = signer()
    for payload in (b"[1]", b"not json", json.dumps({"sub": "", "iat": 1, "exp": 2**40, "ver": 0}).encode(),
                    json.dumps({"sub": "a", "iat": "1", "exp": 2**40, "ver": 0}).encode(),
                    json.dumps({"sub": "a", "iat": 1, "exp": True, "ver": 0}).encode()):
        signing_input = "t1." + base64.urlsafe_b64encode(payload).decode().rstrip("=")
        token = f"{signing_input}.{s._sign(signing_input)}"
        with pytest.raises(Unauthenticated):
            s.verify(token)


def test_local_stages_use_the_configured_secret():
    source = secret_source(Settings(stage="test", token_secret="local-secret"), _NoSecrets())
    assert source() == "local-secret"


def test_empty_secret_refuses_to_sign():
    with pytest.raises(TokenSecretMissing):
        TokenSigner(lambda: "", 60).issue("alice")


@pytest.mark.parametrize("value", ["", "short"])
def test_deployed_stage_refuses_an_empty_or_short_secret(value):
    deployed = token_signer(Settings(stage="prod", token_secret=value))
    with pytest.raises(TokenSecretMissing):
        deployed.issue("alice")
    with pytest.raises(TokenSecretMissing):
        deployed.verify("t1.e30.abc")


class FakeSecrets:
    def __init__(self, values):
        self.values = values
        self.asked = []

    def get(self, name):
        self.asked.append(name)
        return self.values[name]


def test_deployed_stage_reads_the_secret_from_the_parameter_store():
    secrets = FakeSecrets({"/timebank/prod/token": "p" * 40})
    settings = Settings(stage="prod", token_secret="ignored-env-value-ignored-env-value",
                        token_secret_parameter="/timebank/prod/token")
    token, _ = token_signer(settings, secrets).issue("alice")
    assert secrets.asked == ["/timebank/prod/token"]
    assert TokenSigner(lambda: "p" * 40, 60).verify(token).openid == "alice"
