"""Drive the product's queue consumers in tests the way the local runtime and Lambda do:
receive from the (moto) queue, hand a Lambda-shaped batch to the real handler, delete what
succeeded."""
from __future__ import annotations

import threading

import boto3
from chalice.app import SQSEventConfig

from functions.core.messaging import QUEUES, queue_name
from local.consumers import QueueBinding, QueueConsumer, queue_name_of


def consumer(app, logical_queue: str) -> QueueConsumer:
    name = queue_name(logical_queue)
    source = next(s for s in app.event_sources
                  if isinstance(s, SQSEventConfig) and queue_name_of(s) == name)
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    binding = QueueBinding(handler_name=source.name, handler=app.handler_map[source.name],
                           queue_name=name, queue_url=url, queue_arn=arn, batch_size=source.batch_size,
                           timeout_seconds=QUEUES[logical_queue].consumer_timeout_seconds)
    return QueueConsumer(binding, sqs, "cn-north-1", threading.Event(), poll_interval=0, retry_delay=0)


def drain(app, logical_queue: str, max_batches: int = 50) -> int:
    """Deliver everything waiting on ``logical_queue``; returns how many messages were handled."""
    worker = consumer(app, logical_queue)
    handled = 0
    for _ in range(max_batches):
        received = worker.poll_once()
        if not received:
            break
        handled += received
    return handled
