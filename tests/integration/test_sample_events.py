"""``events/`` holds a sample event for every queue and schedule handler (named after the
handler), and each handler accepts its samples."""
from __future__ import annotations

import json
from pathlib import Path

from chalice.app import SQSEventConfig

EVENTS = Path(__file__).resolve().parents[2] / "events"


def samples_for(name: str) -> list[Path]:
    return sorted(EVENTS.glob(f"{name}.json")) + sorted(EVENTS.glob(f"{name}.*.json"))


def test_every_handler_has_a_sample_event(app):
    from functions.hub_app import app as hub_app  # the district hub's own stack

    sources = [*app.event_sources, *hub_app.event_sources]
    missing = [source.name for source in sources if not samples_for(source.name)]
    assert missing == []
    names = {source.name for source in sources}
    orphans = [p.name for p in EVENTS.glob("*.json") if p.name.split(".")[0] not in names]
    assert orphans == []


def test_every_handler_runs_with_its_samples(app):
    for source in app.event_sources:
        for sample in samples_for(source.name):
            event = json.loads(sample.read_text(encoding="utf-8"))
            result = app.handler_map[source.name](event, None)
            if isinstance(source, SQSEventConfig):
                # On an empty account every record refers to nothing: each is reported, none raises.
                failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
                assert failed <= {r["messageId"] for r in event["Records"]}, sample.name
            else:
                assert isinstance(result, dict), sample.name


def test_every_hub_handler_runs_with_its_samples():
    """The hub's handlers, on an empty hub stack of their own (tests/district.py)."""
    from tests.district import district_world

    with district_world() as world:
        app = world.hub.stack.app
        for source in app.event_sources:
            for sample in samples_for(source.name):
                event = json.loads(sample.read_text(encoding="utf-8"))
                result = world.hub.run(app.handler_map[source.name], event, None)
                if isinstance(source, SQSEventConfig):
                    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
                    assert failed <= {r["messageId"] for r in event["Records"]}, sample.name
                else:
                    assert isinstance(result, dict), sample.name
