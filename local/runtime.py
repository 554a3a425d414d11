"""Composes the local runtime: moto → environment → app → resources → HTTP → consumers,
schedules → seed; and stops it all in reverse order."""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable

from chalice import Chalice
from chalice.app import ScheduledEventConfig, SQSEventConfig

from local.api_server import ApiServer
from local.config import RuntimeConfig
from local.consumers import DEFAULT_CONSUMER_TIMEOUT_SECONDS, QueueBinding, QueueConsumer, queue_name_of
from local.environment import prepare_environment
from local.moto_server import SerializedMotoServer
from local.schedules import ScheduleBinding, ScheduleRunner, interval_seconds, schedule_expression

log = logging.getLogger("local")

JOIN_TIMEOUT_SECONDS = 30


def import_product_app() -> Chalice:
    """The stack's app: a community's, or the district hub's (``TIMEBANK_STACK=hub``)."""
    if os.environ.get("TIMEBANK_STACK") == "hub":
        from functions.hub_app import app as hub_app

        return hub_app
    from functions.app import app

    return app


class LocalRuntime:
    def __init__(self, config: RuntimeConfig,
                 app_factory: Callable[[], Chalice] = import_product_app):
        self.config = config
        self._app_factory = app_factory
        self._stop = threading.Event()
        self.moto: SerializedMotoServer | None = None
        self.api: ApiServer | None = None
        self.app: Chalice | None = None
        self.consumers: list[QueueConsumer] = []
        self.schedules: list[ScheduleRunner] = []
        self.region = ""
        self._listener: Callable[[str], None] | None = None
        self.district: Any = None   # local.district.LocalDistrict: the district's other stacks

    @property
    def api_url(self) -> str:
        assert self.api is not None, "start() first"
        return self.api.url

    @property
    def moto_endpoint(self) -> str | None:
        return self.moto.endpoint if self.moto else None

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=self.region or None,
                            endpoint_url=self.moto_endpoint)

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        config = self.config
        if config.real_aws:
            log.info("aws: real endpoints of the deployed stack (TIMEBANK_AWS=real); "
                     "no moto, nothing created%s", "" if config.seed else ", no seeding")
        elif config.moto_endpoint:
            log.info("moto: %s (the district's, shared)", config.moto_endpoint)
        else:
            self.moto = SerializedMotoServer(config.host, config.moto_port)
            self.moto.start()
            self.moto.serve_this_process()
            from local import moto_compat

            log.info("moto: %s (DynamoDB, SQS, S3; in memory, one request at a time; %s; %s)",
                     self.moto.endpoint, moto_compat.describe(),
                     "this process's calls in-process" if self.moto.in_process else "all calls over HTTP")
        children = self._plan_district()
        config = self.config
        prepare_environment(config, self.moto_endpoint or config.moto_endpoint or None)
        from functions.core.settings import get_settings, reset_settings

        reset_settings()
        self.region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
        self.app = self._app_factory()
        settings = get_settings()
        if settings.stack == "hub":
            log.info("hub: %s (district %s, communities %s, region %s)", settings.community_id,
                     settings.district_id, ",".join(sorted(settings.hub_communities)) or "-",
                     self.region or "default")
        else:
            log.info("community: %s (stage %s, admins %s, region %s)", settings.community_id,
                     settings.stage, ",".join(settings.admin_openids) or "-", self.region or "default")

        if not config.real_aws:
            self._provision()

        self.api = ApiServer(self.app, config.host, config.api_port)
        self.api.start()
        log.info("api: %s (try %s/v1/health)", self.api.url, self.api.url)

        self._wire_event_sources()
        self._wake_on_publish()
        for worker in [*self.consumers, *self.schedules]:
            worker.start()

        if config.seed and settings.stack != "hub":
            self._seed(settings.admin_openids)
        if children:
            self._start_district(children)

    def _plan_district(self) -> list[Any]:
        """The district's other stacks (none for a child, real AWS, or a community of no
        district); fixes this process's port first, since they must know it."""
        config = self.config
        if config.real_aws or config.moto_endpoint or not config.district:
            return []
        from local.district import free_port, plan

        community = os.environ.get("TIMEBANK_COMMUNITY", "demo")
        if config.api_port == 0:
            from dataclasses import replace

            self.config = config = replace(config, api_port=free_port(config.host))
        extra, children = plan(community, config.host, config.api_port)
        os.environ.update(extra)   # the hub is local too
        return children

    def _start_district(self, children: list[Any]) -> None:
        from local.district import LocalDistrict
        from local.seed import ApiError, seed_district_relatives

        config = self.config
        assert self.moto is not None
        self.district = LocalDistrict(children, self.moto.endpoint, config.host, {
            "seed": config.seed, "demo_residents": config.demo_residents, "consumers": config.consumers,
            "schedules": config.schedules, "poll_interval": config.poll_interval_seconds,
            "retry_delay": config.retry_delay_seconds,
            "schedule_max_interval": config.schedule_max_interval_seconds})
        self.district.start()
        if config.seed and config.demo_residents:
            from functions.core.settings import get_settings

            try:
                log.info("seed: %s", seed_district_relatives(
                    {get_settings().community_id: self.api_url, **self.district.community_urls()}))
            except ApiError as exc:
                log.warning("seed: district relatives skipped (%s)", exc)

    def _provision(self) -> None:
        from functions.core.settings import get_settings
        from local.provision import (provision_district_secrets, provision_evidence_bucket, provision_queues,
                                     provision_tables)

        tables = provision_tables(self.client("dynamodb"))
        log.info("tables: %d created (%s)", len(tables), ", ".join(tables) or "none registered")
        queues = provision_queues(self.client("sqs"))
        log.info("queues: %s", ", ".join(
            f"{q.spec.logical_name} (dlq after {q.spec.max_receive_count})" for q in queues.values())
            or "none registered")
        keys = provision_district_secrets(self.client("secretsmanager"))
        if keys:
            log.info("district keys: %s (Secrets Manager)", ", ".join(keys))
        if get_settings().stack == "hub":
            return  # the hub keeps no evidence
        bucket = provision_evidence_bucket(self.client("s3"), self.region)
        log.info("evidence bucket: %s (private, public access blocked)", bucket)

    def _wire_event_sources(self) -> None:
        assert self.app is not None
        wired_queues, wired_schedules, unsupported = [], [], []
        for source in self.app.event_sources:
            if isinstance(source, SQSEventConfig):
                if self.config.consumers:
                    consumer = self._consumer_for(source)
                    self.consumers.append(consumer)
                    wired_queues.append(f"{source.name}<-{consumer.binding.queue_name}")
            elif isinstance(source, ScheduledEventConfig):
                if self.config.schedules:
                    runner = self._schedule_for(source)
                    self.schedules.append(runner)
                    wired_schedules.append(f"{source.name} {runner.binding.expression} "
                                           f"every {runner.interval:g}s")
            else:
                unsupported.append(f"{source.name} ({type(source).__name__})")
        log.info("consumers: %s", ", ".join(wired_queues) if wired_queues
                 else ("none (no on_sqs_message handlers)" if self.config.consumers else "off"))
        log.info("schedules: %s", ", ".join(wired_schedules) if wired_schedules
                 else ("none (no schedule handlers)" if self.config.schedules else "off"))
        if unsupported:
            log.warning("not run locally: %s", ", ".join(unsupported))

    def _wake_on_publish(self) -> None:
        """Deployed, SQS wakes a consumer's event source mapping when a message arrives; here the
        publisher tells the consumer of that queue at once, so an event reaches its consumer in
        milliseconds, not after a poll interval."""
        from functions.adapters import sqs
        from functions.core.messaging import queue_name

        by_queue = {consumer.binding.queue_name: consumer for consumer in self.consumers}

        def wake(logical_queue: str) -> None:
            consumer = by_queue.get(queue_name(logical_queue))
            if consumer is not None:
                consumer.wake()

        self._listener = wake
        sqs.published_listeners.append(wake)

    def _consumer_for(self, source: SQSEventConfig) -> QueueConsumer:
        from functions.core.messaging import QUEUES, queue_name

        assert self.app is not None
        name = queue_name_of(source)
        specs = {queue_name(logical): spec for logical, spec in QUEUES.items()}
        if name not in specs and not self.config.real_aws:
            raise RuntimeError(
                f"handler {source.name} listens to queue {name!r}, which is not in "
                "functions.core.messaging.QUEUES, so nothing creates it: register it with "
                "register_queue(QueueSpec(...)) and use queue_name(<logical name>)")
        sqs = self.client("sqs")
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        spec = specs.get(name)
        binding = QueueBinding(
            handler_name=source.name, handler=self.app.handler_map[source.name],
            queue_name=name, queue_url=url, queue_arn=arn, batch_size=source.batch_size,
            timeout_seconds=spec.consumer_timeout_seconds if spec else DEFAULT_CONSUMER_TIMEOUT_SECONDS)
        return QueueConsumer(binding, sqs, self.region, self._stop,
                             self.config.poll_interval_seconds, self.config.retry_delay_seconds)

    def _schedule_for(self, source: ScheduledEventConfig) -> ScheduleRunner:
        from functions.core.settings import get_settings

        assert self.app is not None
        expression = schedule_expression(source.schedule_expression)
        binding = ScheduleBinding(handler_name=source.name,
                                  handler=self.app.handler_map[source.name],
                                  expression=expression,
                                  interval_seconds=interval_seconds(expression))
        return ScheduleRunner(binding, self.region, get_settings().resource_prefix, self._stop,
                              self.config.schedule_max_interval_seconds)

    def _seed(self, admin_openids: tuple[str, ...]) -> None:
        from functions.core.settings import get_settings
        from local.seed import (ApiError, demo_residents_of, seed_categories, seed_dashboard_data, seed_demo_activity,
                                seed_demo_merchant, seed_demo_points, seed_demo_residents)

        log.info("seed: %s", seed_categories())
        if not admin_openids:
            log.info("seed: demo residents and merchant skipped (no TIMEBANK_ADMIN_OPENIDS to act as admin)")
            return
        try:
            log.info("seed: %s", seed_demo_merchant(self.api_url, admin_openids[0]))
        except ApiError as exc:
            log.warning("seed: demo merchant skipped (%s)", exc)
        if not self.config.demo_residents:
            return
        try:
            log.info("seed: %s", seed_demo_residents(self.api_url, admin_openids[0],
                                                     demo_residents_of(get_settings().community_id)))
            log.info("seed: %s", seed_demo_points(self.api_url, demo_residents_of(get_settings().community_id)[0]))
        except ApiError as exc:
            log.warning("seed: demo residents skipped (%s)", exc)
        try:
            log.info("seed: %s", seed_demo_activity(self.api_url, admin_openids[0]))
        except ApiError as exc:
            log.warning("seed: demo activity skipped (%s)", exc)
        try:
            log.info("seed: %s", seed_dashboard_data(self.api_url, admin_openids[0], get_settings().community_id))
        except ApiError as exc:
            log.warning("seed: dashboard data skipped (%s)", exc)

    def stop(self) -> None:
        """Stops everything that started; safe to call twice or after a failed start."""
        self._stop.set()
        if self.district is not None:
            self.district.stop()
            self.district = None
        if self._listener is not None:
            from functions.adapters import sqs

            if self._listener in sqs.published_listeners:
                sqs.published_listeners.remove(self._listener)
            self._listener = None
        started = time.monotonic()
        for worker in [*self.consumers, *self.schedules]:
            worker.join(max(0.1, JOIN_TIMEOUT_SECONDS - (time.monotonic() - started)))
        if self.api is not None:
            self.api.stop()
        if self.moto is not None:
            self.moto.stop()
            self.moto = None
