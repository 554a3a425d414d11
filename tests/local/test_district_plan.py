"""``make run``'s district (local/district.py): which stacks start where, wired to each other."""
from __future__ import annotations

import json

from local.config import parse_config
from local.district import plan


def test_the_demo_community_brings_up_demo_east_and_the_hub_on_the_next_ports():
    extra, children = plan("demo", "127.0.0.1", 8000)
    assert extra == {"TIMEBANK_HUB_URL": "http://127.0.0.1:8002"}
    assert [(c.name, c.port) for c in children] == [("demo-east", 8001), ("hub-demo", 8002)]
    east, hub = children
    assert east.environment == {"TIMEBANK_COMMUNITY": "demo-east", "TIMEBANK_HUB_URL": "http://127.0.0.1:8002"}
    assert hub.environment["TIMEBANK_STACK"] == "hub"
    assert hub.environment["TIMEBANK_RESOURCE_PREFIX"] == "timebank-hub-demo"
    registry = json.loads(hub.environment["TIMEBANK_HUB_COMMUNITIES"])
    assert {c: e["url"] for c, e in registry.items()} == {"demo": "http://127.0.0.1:8000",
                                                         "demo-east": "http://127.0.0.1:8001"}
    assert registry["demo"]["key_secret"] == "timebank/hub-demo/demo"


def test_free_ports_when_the_api_port_is_not_the_default():
    _, children = plan("demo", "127.0.0.1", 18123)
    assert len({c.port for c in children} | {18123}) == 3


def test_a_community_of_no_district_starts_alone_and_the_district_can_be_switched_off():
    assert plan("fuyuan", "127.0.0.1", 8000) == ({}, [])
    assert parse_config([], env={}).district is True
    assert parse_config(["--no-district"], env={}).district is False
    assert parse_config([], env={"TIMEBANK_LOCAL_DISTRICT": "off"}).district is False
    assert parse_config([], env={"TIMEBANK_AWS": "real"}).district is False
