"""Test environment: a fake AWS account on moto, one community ("test"), tables created from
the same definitions the local runtime and infra use."""
from __future__ import annotations

import os

# Before anything imports functions/: table names and settings are fixed at import time.
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "cn-north-1",
    "AWS_REGION": "cn-north-1",
    "TIMEBANK_COMMUNITY": "test",
    "TIMEBANK_STAGE": "test",
    "TIMEBANK_ADMIN_OPENIDS": "admin-test",
    "TIMEBANK_TOKEN_SECRET": "test-token-secret",
    "TIMEBANK_STARTING_CREDITS": "300",
    # The test community lets a volunteer check in and claim at once, as the tests of everything
    # else do; the time limits themselves are tested with a community's real ones
    # (tests/http/test_outside_testing_defects.py).
    "TIMEBANK_CHECKIN_EARLY_MINUTES": str(365 * 24 * 60),
    "TIMEBANK_CLAIM_TOLERANCE_MINUTES": "1440",
})
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

import boto3  # noqa: E402
import botocore.client  # noqa: E402
from collections import Counter  # noqa: E402
import pytest  # noqa: E402
from moto import mock_aws  # noqa: E402

# moto compatibility layer (local/moto_compat.py), as `make run` has it: item-level transaction
# rollback, no list of every model instance. TIMEBANK_MOTO_COMPAT=off runs moto as shipped.
from local import moto_compat  # noqa: E402

moto_compat.install_unless_disabled()

from functions.core import clock  # noqa: E402
from functions.core.settings import reset_settings  # noqa: E402

reset_settings()


@pytest.fixture
def aws():
    """A fresh moto account with every table of the product."""
    from local.provision import provision_evidence_bucket, provision_queues, provision_tables

    with mock_aws():
        import functions.app  # noqa: F401  (registers every table and queue)

        provision_tables(boto3.client("dynamodb"))
        provision_queues(boto3.client("sqs"))
        provision_evidence_bucket(boto3.client("s3"), os.environ["AWS_REGION"])
        from functions import bootstrap

        bootstrap.reset()  # nothing built for the previous test's account (cached tariffs, clients)
        yield
        bootstrap.reset()
    clock.set_clock(None)


@pytest.fixture
def app(aws):
    from functions.app import app as chalice_app

    return chalice_app


@pytest.fixture
def client(app, request):
    """The app over HTTP. Whatever the test moved, the ledger invariants hold at its end (a test
    that corrupts the ledger on purpose says so with ``@pytest.mark.ledger_tampered``)."""
    from chalice.test import Client

    from functions import bootstrap

    with Client(app) as test_client:
        yield test_client
    if request.node.get_closest_marker("ledger_tampered") is None:
        report = bootstrap.ledger().check()
        assert report["ok"], report["violations"]


class DynamoCalls:
    def __init__(self, monkeypatch):
        self.calls: Counter = Counter()
        self.tables: list = []
        original = botocore.client.BaseClient._make_api_call
        recorder = self

        def counting(client, operation, params):
            if client.meta.service_model.service_name == "dynamodb":
                recorder.calls[operation] += 1
                recorder.tables.append(params.get("TableName"))
            return original(client, operation, params)

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counting)

    def during(self, action):
        self.calls.clear()
        self.tables.clear()
        action()
        return dict(self.calls)


@pytest.fixture
def dynamo_calls(aws, monkeypatch):
    """Counts the DynamoDB calls an action makes (moto's ConsumedCapacity is a constant)."""
    return DynamoCalls(monkeypatch)
