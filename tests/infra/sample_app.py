"""The product's app plus one handler of each kind infra/ wires, on queues of its own.

Packaged by the infra tests (``python -m infra.package --app tests.infra.sample_app``) to show
that a queue, a consumer or a schedule added to the code is deployed with no change to infra/:
an app-level consumer with a longer timeout, a blueprint consumer and an app-level cron
schedule. The handlers only acknowledge their input.
"""
from __future__ import annotations

from chalice import Blueprint, Cron

from functions.app import app
from functions.core.messaging import QueueSpec, queue_name, register_queue

SLOW_JOBS = register_queue(QueueSpec("sample-slow-jobs", purpose="infra test: long consumer",
                                     consumer_timeout_seconds=120, batch_size=5))
FAST_JOBS = register_queue(QueueSpec("sample-fast-jobs", purpose="infra test: blueprint consumer"))

sample_bp = Blueprint(__name__)


@app.on_sqs_message(queue=queue_name(SLOW_JOBS.logical_name), batch_size=SLOW_JOBS.batch_size)
def sample_slow_consumer(event):
    return {"batchItemFailures": []}


@sample_bp.on_sqs_message(queue=queue_name(FAST_JOBS.logical_name), batch_size=FAST_JOBS.batch_size)
def sample_fast_consumer(event):
    return {"batchItemFailures": []}


@app.schedule(Cron(0, 2, "*", "*", "?", "*"), name="sample-nightly")
def sample_nightly(event):
    return {"ok": True}


app.register_blueprint(sample_bp)
