"""The runtime's pure parts: schedule periods, partial batch responses, event shapes, options."""
from __future__ import annotations

import pytest
from chalice.app import Cron, Rate

from local.config import parse_config
from local.consumers import failed_message_ids
from local.environment import prepare_environment
from local.lambda_events import scheduled_event, sqs_event
from local.schedules import interval_seconds, schedule_expression


@pytest.mark.parametrize("expression, seconds", [
    ("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(2 hours)", 7200),
    ("rate(1 day)", 86400),
    ("cron(* * * * ? *)", 60), ("cron(0/15 * * * ? *)", 900), ("cron(*/5 8-20 * * ? *)", 300),
    ("cron(0 * * * ? *)", 3600), ("cron(0,30 * * * ? *)", 1800), ("cron(0 */6 * * ? *)", 21600),
    ("cron(0 8,20 * * ? *)", 43200), ("cron(0 18 * * ? *)", 86400),
    ("cron(0 10 ? * MON *)", 7 * 86400), ("cron(0 10 ? * MON-FRI *)", 7 * 86400 / 5),
    ("cron(0 3 1 * ? *)", 30 * 86400),
])
def test_schedule_periods(expression, seconds):
    assert interval_seconds(expression) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["rate(0 minutes)", "rate(5 weeks)", "cron(0 18 * *)", "every day"])
def test_unreadable_schedules_are_refused(bad):
    with pytest.raises(ValueError):
        interval_seconds(bad)


def test_chalice_schedule_objects_are_read_as_expressions():
    assert interval_seconds(schedule_expression(Rate(10, unit=Rate.MINUTES))) == 600
    assert interval_seconds(schedule_expression(Cron(0, 18, "?", "*", "MON-FRI", "*"))) == pytest.approx(7 * 86400 / 5)


@pytest.mark.parametrize("result, failed", [
    (None, set()),
    ({"batchItemFailures": []}, set()),
    ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
    ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"a", "b"}),   # not in the batch
    ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b"}),      # malformed
    ({"batchItemFailures": ["b"]}, {"a", "b"}),
])
def test_partial_batch_responses_follow_lambda(result, failed):
    assert failed_message_ids(result, ["a", "b"]) == failed


def test_sqs_records_carry_lambda_field_names():
    message = {
        "MessageId": "m-1", "ReceiptHandle": "r-1", "Body": "{}", "MD5OfBody": "x",
        "Attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1"},
        "MessageAttributes": {"raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
                              "text": {"DataType": "String", "StringValue": "hi"}},
    }
    record = sqs_event([message], "arn:aws-cn:sqs:cn-north-1:123456789012:q", "cn-north-1")["Records"][0]
    assert record["messageId"] == "m-1" and record["receiptHandle"] == "r-1"
    assert record["attributes"]["ApproximateReceiveCount"] == "3"
    assert record["messageAttributes"]["raw"] == {"dataType": "Binary", "binaryValue": "AAE=",
                                                  "stringListValues": [], "binaryListValues": []}
    assert record["messageAttributes"]["text"]["stringValue"] == "hi"
    assert record["eventSourceARN"].endswith(":q") and record["awsRegion"] == "cn-north-1"


def test_scheduled_events_name_their_rule_in_the_region_partition():
    event = scheduled_event("timebank-demo-daily", "cn-north-1")
    assert event["resources"] == ["arn:aws-cn:events:cn-north-1:123456789012:rule/timebank-demo-daily"]
    assert scheduled_event("r", "eu-west-1")["resources"][0].startswith("arn:aws:events:")


def test_moto_mode_defaults_and_environment():
    config = parse_config([], env={})
    assert (config.api_port, config.moto_port, config.real_aws) == (8000, 5005, False)
    assert config.seed and config.consumers and config.schedules
    env = {"AWS_PROFILE": "work", "AWS_ACCESS_KEY_ID": "AKIAREAL"}
    prepare_environment(config, "http://127.0.0.1:5005", env)
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5005"
    assert env["AWS_ACCESS_KEY_ID"] == "local" and "AWS_PROFILE" not in env
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "cn-north-1"
    assert (env["TIMEBANK_COMMUNITY"], env["TIMEBANK_STAGE"], env["TIMEBANK_ADMIN_OPENIDS"]) == \
        ("demo", "local", "admin-demo")


def test_real_aws_mode_keeps_the_developers_credentials_and_does_not_compete_with_lambdas():
    config = parse_config([], env={"TIMEBANK_AWS": "real", "TIMEBANK_LOCAL_PORT": "8080"})
    assert config.real_aws and config.api_port == 8080
    assert not (config.seed or config.consumers or config.schedules)
    assert parse_config(["--seed"], env={"TIMEBANK_AWS": "real"}).seed
    env = {"AWS_PROFILE": "work", "AWS_ENDPOINT_URL": "http://old", "TIMEBANK_COMMUNITY": "xihu"}
    prepare_environment(config, None, env)
    assert env == {"AWS_PROFILE": "work", "TIMEBANK_COMMUNITY": "xihu", "TIMEBANK_STAGE": "local",
                   "TIMEBANK_ADMIN_OPENIDS": "admin-demo", "POWERTOOLS_METRICS_DISABLED": "true"}


def test_unknown_aws_mode_is_refused():
    with pytest.raises(SystemExit):
        parse_config([], env={"TIMEBANK_AWS": "localstack"})
