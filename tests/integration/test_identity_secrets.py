"""The SSM secrets adapter on moto: decryption, TTL cache, stale-on-failure, missing parameters."""
import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from functions.core.errors import UpstreamError
from functions.adapters.secrets import ParameterStoreSecrets, SecretNotConfigured
from functions.core.settings import Settings
from functions.identity.tokens import TokenSigner, secret_source


class _NoSecrets:
    def get(self, name):
        raise AssertionError(f"no secret {name} in this test")


def token_signer(settings, secrets=None):
    """How the composition root builds the signer of a stage."""
    return TokenSigner(secret_source(settings, secrets or _NoSecrets()), settings.token_ttl_seconds)



class Ticks:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class CountingSsm:
    """The moto client, counting calls and able to fail on demand."""

    def __init__(self):
        self.client = boto3.client("ssm")
        self.calls = 0
        self.fail = False

    def get_parameter(self, **kwargs):
        self.calls += 1
        if self.fail:
            raise EndpointConnectionError(endpoint_url="https://ssm.example")
        return self.client.get_parameter(**kwargs)


@pytest.fixture
def ssm(aws):
    client = boto3.client("ssm")
    client.put_parameter(Name="/timebank/test/token", Value="first-value", Type="SecureString")
    return CountingSsm()


def test_reads_secure_strings_decrypted(ssm):
    assert ParameterStoreSecrets(ssm).get("/timebank/test/token") == "first-value"


def test_values_are_cached_for_the_ttl_then_refreshed(ssm):
    ticks = Ticks()
    secrets = ParameterStoreSecrets(ssm, ttl_seconds=300, monotonic=ticks)
    assert secrets.get("/timebank/test/token") == "first-value"
    ssm.client.put_parameter(Name="/timebank/test/token", Value="rotated", Type="SecureString", Overwrite=True)
    ticks.now += 299
    assert secrets.get("/timebank/test/token") == "first-value"
    assert ssm.calls == 1
    ticks.now += 1
    assert secrets.get("/timebank/test/token") == "rotated"
    assert ssm.calls == 2


def test_a_failed_refresh_keeps_the_cached_value(ssm):
    ticks = Ticks()
    secrets = ParameterStoreSecrets(ssm, ttl_seconds=60, monotonic=ticks)
    secrets.get("/timebank/test/token")
    ssm.fail = True
    ticks.now += 61
    assert secrets.get("/timebank/test/token") == "first-value"


def test_failure_without_a_cached_value_is_an_upstream_error(ssm):
    ssm.fail = True
    with pytest.raises(UpstreamError):
        ParameterStoreSecrets(ssm).get("/timebank/test/token")


def test_missing_or_unnamed_parameters_are_configuration_faults(ssm):
    with pytest.raises(SecretNotConfigured):
        ParameterStoreSecrets(ssm).get("/timebank/test/absent")
    with pytest.raises(SecretNotConfigured):
        ParameterStoreSecrets(ssm).get("")


def test_deployed_token_signer_uses_the_ssm_secret(ssm):
    ssm.client.put_parameter(Name="/timebank/prod/token", Value="k" * 48, Type="SecureString")
    settings = Settings(stage="prod", token_secret_parameter="/timebank/prod/token")
    secrets = ParameterStoreSecrets(ssm)
    token, _ = token_signer(settings, secrets).issue("alice")
    assert token_signer(settings, secrets).verify(token).openid == "alice"
    assert ssm.calls == 1  # cached across signers sharing the adapter
    # A token signed with the local secret is not valid in the deployed stack.
    local_token, _ = token_signer(Settings(stage="test", token_secret="k" * 47 + "x")).issue("alice")
    with pytest.raises(Exception) as refused:
        token_signer(settings, secrets).verify(local_token)
    assert getattr(refused.value, "status", None) == 401
