"""The runtime in-process, generically: a test-only app's queue handler and schedule, on moto."""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Any, Callable

import boto3
import pytest
from chalice import Chalice

from functions.core.messaging import QUEUES, dead_letter_queue_name, queue_name, register_queue
from functions.core.settings import reset_settings
from local.config import RuntimeConfig
from local.moto_server import PortBusy
from local.runtime import LocalRuntime
from tests.local.sample_app import SAMPLE_QUEUE, Recorder, build_sample_app

FAST = RuntimeConfig(api_port=0, moto_port=0, seed=False, poll_interval_seconds=0.05,
                     retry_delay_seconds=0, schedule_max_interval_seconds=0.2)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def sample_queue_registered():
    """The runtime prepares the process environment; give the next test the old one back."""
    saved = dict(os.environ)
    register_queue(SAMPLE_QUEUE)
    yield
    QUEUES.pop(SAMPLE_QUEUE.logical_name, None)
    os.environ.clear()
    os.environ.update(saved)
    reset_settings()


@pytest.fixture
def running(sample_queue_registered):
    recorder = Recorder()
    runtime = LocalRuntime(FAST, app_factory=lambda: build_sample_app(recorder))
    runtime.start()
    try:
        yield runtime, recorder
    finally:
        runtime.stop()


def sqs_of(runtime: LocalRuntime) -> Any:
    return boto3.client("sqs", endpoint_url=runtime.moto_endpoint, region_name=runtime.region)


def queue_url(sqs: Any, logical: str, dead_letter: bool = False) -> str:
    name = dead_letter_queue_name(logical) if dead_letter else queue_name(logical)
    return sqs.get_queue_url(QueueName=name)["QueueUrl"]


def messages_left(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return sum(int(v) for v in attributes.values())


def test_queue_messages_reach_the_handler_as_a_lambda_sqs_event(running):
    runtime, recorder = running
    sqs = sqs_of(runtime)
    url = queue_url(sqs, SAMPLE_QUEUE.logical_name)
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(n), "MessageBody": json.dumps({"n": n}),
         "MessageAttributes": {"dedup_id": {"DataType": "String", "StringValue": f"k{n}"}}}
        for n in range(3)])

    wait_for(lambda: len(recorder.handled_bodies) == 3, "three handled messages")
    assert sorted(b["n"] for b in recorder.handled_bodies) == [0, 1, 2]
    records = [r for e in recorder.sqs_events for r in e["Records"]]
    assert len({r["messageId"] for r in records}) == 3
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for record in records:
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"] == queue_arn
        assert record["awsRegion"] == runtime.region
        assert record["receiptHandle"]
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
        assert "SentTimestamp" in record["attributes"]
        assert record["messageAttributes"]["dedup_id"]["stringValue"].startswith("k")
        assert record["messageAttributes"]["dedup_id"]["dataType"] == "String"
    wait_for(lambda: messages_left(sqs, url) == 0, "handled messages deleted")


def test_a_reported_failure_is_retried_then_moved_to_the_dead_letter_queue(running):
    runtime, recorder = running
    sqs = sqs_of(runtime)
    url = queue_url(sqs, SAMPLE_QUEUE.logical_name)
    dlq_url = queue_url(sqs, SAMPLE_QUEUE.logical_name, dead_letter=True)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": 1, "fail": True}))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": 2}))

    dead = wait_for(lambda: sqs.receive_message(QueueUrl=dlq_url).get("Messages"), "the DLQ")
    assert [json.loads(m["Body"]) for m in dead] == [{"n": 1, "fail": True}]
    failing_deliveries = [r["attributes"]["ApproximateReceiveCount"]
                          for e in recorder.sqs_events for r in e["Records"]
                          if json.loads(r["body"]).get("fail")]
    assert failing_deliveries == [str(n) for n in range(1, SAMPLE_QUEUE.max_receive_count + 1)]
    assert recorder.handled_bodies == [{"n": 2}]
    wait_for(lambda: messages_left(sqs, url) == 0, "the source queue to drain")


def test_a_handler_that_raises_fails_its_whole_batch(running):
    runtime, recorder = running
    sqs = sqs_of(runtime)
    url = queue_url(sqs, SAMPLE_QUEUE.logical_name)
    dlq_url = queue_url(sqs, SAMPLE_QUEUE.logical_name, dead_letter=True)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"raise_batch": True}))

    dead = wait_for(lambda: sqs.receive_message(QueueUrl=dlq_url).get("Messages"), "the DLQ")
    assert json.loads(dead[0]["Body"]) == {"raise_batch": True}
    assert len(recorder.sqs_events) == SAMPLE_QUEUE.max_receive_count


def test_schedules_fire_with_an_eventbridge_scheduled_event(running):
    runtime, recorder = running
    event = wait_for(lambda: recorder.scheduled_events[:1], "a scheduled event")[0]
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["region"] == runtime.region
    assert event["resources"][0].endswith(":rule/timebank-test-hourly_sample")
    assert event["time"].endswith("Z") and event["detail"] == {}


def test_the_product_resources_are_provisioned_from_the_shared_definitions(running):
    runtime, _ = running
    from functions.core.settings import get_settings
    from functions.bootstrap import table_definitions

    dynamodb = boto3.client("dynamodb", endpoint_url=runtime.moto_endpoint, region_name=runtime.region)
    assert {d["TableName"] for d in table_definitions()} <= set(dynamodb.list_tables()["TableNames"])
    sqs = sqs_of(runtime)
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url(sqs, SAMPLE_QUEUE.logical_name),
                                          AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] in (2, "2")
    assert attributes["VisibilityTimeout"] == str(SAMPLE_QUEUE.visibility_timeout_seconds)
    s3 = boto3.client("s3", endpoint_url=runtime.moto_endpoint, region_name=runtime.region)
    block = s3.get_public_access_block(Bucket=get_settings().evidence_bucket)
    assert all(block["PublicAccessBlockConfiguration"].values())


def test_stop_joins_every_worker_thread(sample_queue_registered):
    runtime = LocalRuntime(FAST, app_factory=lambda: build_sample_app(Recorder()))
    runtime.start()
    assert any(t.name.startswith(("sqs:", "schedule:")) for t in threading.enumerate())
    runtime.stop()
    assert not [t.name for t in threading.enumerate()
                if t.name.startswith(("sqs:", "schedule:", "api"))]
    with pytest.raises(OSError):  # the moto port is closed
        socket.create_connection(("127.0.0.1", int(runtime_port(runtime))), timeout=1)


def runtime_port(runtime: LocalRuntime) -> str:
    return os.environ["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]


def test_a_busy_port_is_a_clear_error(sample_queue_registered):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for config, env_name in ((RuntimeConfig(api_port=0, moto_port=port, seed=False), "TIMEBANK_MOTO_PORT"),
                                 (RuntimeConfig(api_port=port, moto_port=0, seed=False), "TIMEBANK_LOCAL_PORT")):
            runtime = LocalRuntime(config, app_factory=lambda: build_sample_app(Recorder()))
            with pytest.raises(PortBusy, match=env_name):
                runtime.start()
            assert runtime.moto is None  # whatever had started was stopped again


def test_a_handler_on_an_unregistered_queue_is_refused_at_start(sample_queue_registered):
    def app_with_stray_queue() -> Chalice:
        app = Chalice(app_name="stray")

        @app.on_sqs_message(queue="timebank-test-nobody-created-this")
        def stray(event: Any) -> None:
            pass

        return app

    runtime = LocalRuntime(FAST, app_factory=app_with_stray_queue)
    with pytest.raises(RuntimeError, match="register_queue"):
        runtime.start()


def test_concurrent_callers_are_served_one_request_at_a_time(running):
    runtime, recorder = running
    assert runtime.moto is not None and runtime.moto._server is not None
    assert not runtime.moto._server.multithread  # moto's backends have no locks of their own
    url = queue_url(sqs_of(runtime), SAMPLE_QUEUE.logical_name)

    def send(worker: int) -> None:
        sqs = sqs_of(runtime)
        for n in range(10):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": worker * 100 + n}))

    senders = [threading.Thread(target=send, args=(w,)) for w in range(5)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    wait_for(lambda: len(recorder.handled_bodies) >= 50, "fifty handled messages")
    assert sorted(b["n"] for b in recorder.handled_bodies) == sorted(
        w * 100 + n for w in range(5) for n in range(10))


def test_a_publish_wakes_its_consumer_instead_of_waiting_out_the_poll_interval(sample_queue_registered):
    """With an hour between polls, only the relay's wake-up can deliver the message in time."""
    from dataclasses import replace

    from functions.adapters.sqs import SqsPublisher

    recorder = Recorder()
    runtime = LocalRuntime(replace(FAST, poll_interval_seconds=3600),
                           app_factory=lambda: build_sample_app(recorder))
    runtime.start()
    try:
        wait_for(lambda: all(c._thread.is_alive() for c in runtime.consumers), "consumers started")
        time.sleep(0.2)  # let the consumer finish its first (empty) poll and go to sleep
        SqsPublisher().publish(SAMPLE_QUEUE.logical_name, {"n": 1})
        assert wait_for(lambda: recorder.bodies_seen(), "the woken consumer", timeout=20) == [{"n": 1}]
    finally:
        runtime.stop()


def test_this_process_reaches_moto_without_a_socket_and_other_processes_still_can(running):
    runtime, _ = running
    assert runtime.moto.in_process
    served_over_http: list[str] = []
    original = runtime.moto._app

    def counting(environ, start_response):
        served_over_http.append(environ.get("HTTP_X_AMZ_TARGET", ""))
        return original(environ, start_response)

    runtime.moto._app = counting
    try:
        local = boto3.client("dynamodb", endpoint_url=runtime.moto_endpoint, region_name=runtime.region)
        tables = local.list_tables()["TableNames"]
        assert served_over_http == []  # dispatched to moto's backend directly
        import subprocess
        import sys

        listed = subprocess.run(
            [sys.executable, "-c", "import boto3, json; print(json.dumps(boto3.client('dynamodb', "
             f"endpoint_url='{runtime.moto_endpoint}', region_name='{runtime.region}', aws_access_key_id='x', "
             "aws_secret_access_key='x').list_tables()['TableNames']))"],
            capture_output=True, text=True, check=True, timeout=60).stdout
        assert json.loads(listed) == tables and served_over_http  # the other process used the socket
    finally:
        runtime.moto._app = original
