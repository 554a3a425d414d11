"""Several stacks of a district — communities and the hub — in ONE process, one at a time.

Table names, settings and the composition root's objects are per stack, and in a Lambda (or a
`make run` child process) they are fixed when the process starts. Tests and the bench want
three stacks against one moto account without paying for three processes, so a stack here is
its environment (the ``TIMEBANK_*`` variables its deployment would set) plus its own
composition-root cache; ``activate(stack)`` swaps them in: the variables, the settings, every
PynamoDB model's table name (PynamoDB reconnects when the name changes) and
``bootstrap``'s built objects; leaving restores the previous stack. Activations nest (the
source's consumer calls the hub, in-process), and are not thread-safe: one thread at a time.

``make run`` does not use this: it runs each stack in a process of its own (local/district.py),
which keeps import-time names honest.
"""
from __future__ import annotations

import importlib
import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlsplit

_lock = threading.RLock()


@dataclass
class Stack:
    name: str
    environment: dict[str, str]
    app_module: str = "functions.app"
    built: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Where other stacks reach this one through an ``InProcessTransport``."""
        return f"http://{self.name}.stack.invalid/api"

    @property
    def app(self) -> Any:
        return importlib.import_module(self.app_module).app

    def client(self) -> Any:
        from chalice.test import Client

        return Client(self.app)


# PynamoDB opens a new connection (a new botocore session: ~0.2 s of loading) whenever a
# model's table name changes; each stack's connections are kept for when it comes back.
_connections: dict[tuple[type, str], Any] = {}
_clients: dict[str, Any] = {}


def _client(service: str) -> Any:
    import boto3

    if service not in _clients:
        _clients[service] = boto3.client(service)
    return _clients[service]


def forget_clients() -> None:
    """A new moto account (``mock_aws``) needs new clients and connections."""
    _connections.clear()
    _clients.clear()


def _retarget_tables() -> None:
    from functions.adapters.dynamo import registered_models
    from functions.core.settings import get_settings

    settings = get_settings()
    for model in registered_models():
        wanted = settings.table_name(model.Meta.logical_name)
        if model.Meta.table_name == wanted:
            continue
        if model._connection is not None:
            _connections[(model, model.Meta.table_name)] = model._connection
        model.Meta.table_name = wanted
        model._connection = _connections.get((model, wanted))


def _apply(environment: Mapping[str, str | None], built: dict[str, Any]) -> None:
    from functions import bootstrap
    from functions.core.settings import reset_settings

    for name in [k for k in os.environ if k.startswith("TIMEBANK_")]:
        if name not in environment:
            del os.environ[name]
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    reset_settings()
    _retarget_tables()
    bootstrap._built = built


@contextmanager
def activate(stack: Stack) -> Iterator[Stack]:
    from functions import bootstrap

    with _lock:
        previous_env = {k: v for k, v in os.environ.items() if k.startswith("TIMEBANK_")}
        previous_built = bootstrap._built
        _apply(stack.environment, stack.built)
        try:
            yield stack
        finally:
            _apply(previous_env, previous_built)


class InProcessTransport:
    """``adapters.signed_calls.Transport`` that hands a request to the stack owning the URL,
    through ``chalice.test.Client`` (routing, signature checks and all). ``down`` makes a stack
    unreachable; ``lose_answers`` lets the request happen and loses the answer (a timeout after
    the work was done); ``sent`` records every request (to check what crossed)."""

    def __init__(self, stacks: Mapping[str, Stack] | None = None):
        self.stacks: dict[str, Stack] = {}
        self.down: set[str] = set()
        self.lose_answers: set[str] = set()
        self.sent: list[dict[str, Any]] = []
        self.before_send: Callable[[Stack, str, str], None] | None = None
        for stack in (stacks or {}).values():
            self.add(stack)

    def add(self, stack: Stack) -> None:
        self.stacks[stack.url] = stack

    def send(self, url: str, method: str, headers: Mapping[str, str], body: bytes) -> tuple[int, Any]:
        from functions.adapters.signed_calls import PeerUnavailable

        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}/api"
        stack = self.stacks.get(base)
        path = parts.path[len("/api"):] if parts.path.startswith("/api") else parts.path
        if stack is None or stack.name in self.down:
            raise PeerUnavailable(details={"reason": "unreachable"})
        self.sent.append({"to": stack.name, "method": method, "path": path, "headers": dict(headers), "body": body})
        if self.before_send is not None:
            self.before_send(stack, method, path)
        with activate(stack):
            response = stack.client().http.request(method, path, headers=dict(headers), body=body)
        if stack.name in self.lose_answers:
            raise PeerUnavailable(details={"reason": "answer lost"})
        try:
            answer = json.loads(response.body) if response.body else None
        except ValueError:
            answer = None
        return response.status_code, answer


def provision(stack: Stack) -> None:
    """Create the stack's tables, queues and district keys on the current (moto) account."""
    from local.provision import provision_district_secrets, provision_queues, provision_tables

    with activate(stack):
        importlib.import_module(stack.app_module)
        provision_tables(_client("dynamodb"))
        provision_queues(_client("sqs"))
        provision_district_secrets(_client("secretsmanager"))


def _logical_queue(source_queue: str) -> str:
    from functions.core.messaging import QUEUES

    # The app's event sources carry the names of the process's first import; the logical
    # name is the longest registered one the name ends with.
    matches = [name for name in QUEUES if source_queue.endswith("-" + name)]
    if not matches:
        raise LookupError(f"no registered queue for {source_queue}")
    return max(matches, key=len)


def drain(stack: Stack, max_rounds: int = 50) -> int:
    """Deliver everything waiting on the stack's queues to its consumers; returns how many
    messages were handled (failed ones are made visible again at once and counted again)."""
    from chalice.app import SQSEventConfig

    from functions.core.messaging import queue_name
    from local.lambda_events import lambda_context, sqs_event

    handled = 0
    with activate(stack):
        app = stack.app
        sqs = _client("sqs")
        for source in [s for s in app.event_sources if isinstance(s, SQSEventConfig)]:
            url = sqs.get_queue_url(QueueName=queue_name(_logical_queue(source.queue)))["QueueUrl"]
            for _ in range(max_rounds):
                messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                               MessageAttributeNames=["All"]).get("Messages", [])
                if not messages:
                    break
                result = app.handler_map[source.name](sqs_event(messages, f"arn:aws:sqs:::{url}", "cn-north-1"),
                                                      lambda_context(source.name, 30))
                failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
                for message in messages:
                    if message["MessageId"] in failed:
                        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                                      VisibilityTimeout=0)
                    else:
                        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                handled += len(messages) - len(failed)
                if failed and len(failed) == len(messages):
                    break  # nothing moves: leave the rest for the caller to fix (a stack down)
    return handled


def fire(stack: Stack, schedule: str) -> Any:
    """Run one of the stack's schedules now."""
    from local.lambda_events import lambda_context, scheduled_event

    with activate(stack):
        return stack.app.handler_map[schedule](scheduled_event(f"timebank-{stack.name}-{schedule}", "cn-north-1"),
                                               lambda_context(schedule, 300))
