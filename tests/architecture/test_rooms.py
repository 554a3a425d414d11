"""Every domain folder has the same rooms, each with one job (README "Layout"), and the
in-memory twins of the ports live in tests/fakes, not in the Lambda package."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
ROOMS = {"__init__.py", "routes.py", "service.py", "model.py", "ports.py", "dynamo.py", "views.py", "openapi.json"}
# Rooms named for what they do, beside the common ones (LAYOUT.md).
EXTRAS = {
    "identity": {"auth.py", "tokens.py", "wechat.py", "roster.py", "cli.py"},
    "ledger": {"accounts.py", "reconciliation.py", "cli.py"},
    "requests": {"backfill.py"},
    "volunteers": {"matching.py", "backfill.py"},
    "safety": {"s3.py"},
    "notifications": {"reminders.py", "wechat.py"},
    "rewards": {"zyh.py"},
    "activities": {"codes.py", "reminders.py"},
    "risk": set(),
    "district": {"hub_client.py"},
    "hub": {"community_client.py"},
    "admin": set(),
    "stats": set(),
}
NOT_DOMAINS = {"core", "adapters", "system", "__pycache__"}


def domain_folders() -> list[Path]:
    return sorted(p for p in FUNCTIONS.iterdir() if p.is_dir() and p.name not in NOT_DOMAINS)


def test_every_domain_has_the_same_rooms():
    assert {p.name for p in domain_folders()} == set(EXTRAS)
    for folder in domain_folders():
        files = {p.name for p in folder.iterdir() if p.name != "__pycache__"}
        assert files == ROOMS | EXTRAS[folder.name], folder.name


def test_no_test_double_ships_in_the_package():
    for path in FUNCTIONS.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        doubles = [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                   and node.name.startswith(("InMemory", "Fake"))]
        assert doubles == [], path


def test_one_composition_root():
    """Services are built in functions/bootstrap.py only: no cached factory anywhere else (the
    settings and the OpenAPI document are values, not services)."""
    allowed = {FUNCTIONS / "bootstrap.py", FUNCTIONS / "core" / "settings.py", FUNCTIONS / "system" / "routes.py"}
    for path in FUNCTIONS.rglob("*.py"):
        if path not in allowed:
            assert "lru_cache" not in path.read_text(encoding="utf-8"), path
