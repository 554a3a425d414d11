"""The architecture rules of pyproject.toml (import-linter) hold, and each of them would catch
the import it forbids: a copy of ``functions/`` with one deliberately bad import breaks exactly
the contract it was written against."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = {c["id"]: c for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]}
LINT = Path(sys.executable).with_name("lint-imports")

# contract id → (file to touch, the import it must refuse)
BAD_IMPORTS = {
    "core-is-the-floor": ("functions/core/clock.py", "import functions.identity.model"),
    "rules-are-plain-python": ("functions/requests/model.py", "import chalice"),
    "ledger-is-the-lowest-domain": ("functions/ledger/model.py", "import functions.identity.model"),
    "domains-talk-one-way": ("functions/requests/model.py", "import functions.volunteers.model"),
    "identity-uses-no-foreign-adapter": ("functions/identity/views.py", "import functions.requests.dynamo"),
    "ledger-uses-no-foreign-adapter": ("functions/ledger/views.py", "import functions.identity.service"),
    "requests-uses-no-foreign-adapter": ("functions/requests/views.py", "import functions.identity.dynamo"),
    "volunteers-uses-no-foreign-adapter": ("functions/volunteers/views.py", "import functions.requests.dynamo"),
    "safety-uses-no-foreign-adapter": ("functions/safety/views.py", "import functions.requests.service"),
    "notifications-uses-no-foreign-adapter": ("functions/notifications/views.py", "import functions.safety.dynamo"),
    "rewards-uses-no-foreign-adapter": ("functions/rewards/views.py", "import functions.ledger.service"),
    "activities-uses-no-foreign-adapter": ("functions/activities/views.py", "import functions.ledger.service"),
    "risk-uses-no-foreign-adapter": ("functions/risk/views.py", "import functions.requests.dynamo"),
    "district-uses-no-foreign-adapter": ("functions/district/views.py", "import functions.identity.service"),
    "hub-uses-no-foreign-adapter": ("functions/hub/views.py", "import functions.district.service"),
    "stats-uses-no-foreign-adapter": ("functions/stats/views.py", "import functions.identity.service"),
}


def lint(root: Path, *contracts: str) -> subprocess.CompletedProcess:
    args = [str(LINT), "--no-cache", "--config", str(root / "pyproject.toml")]
    for contract in contracts:
        args += ["--contract", contract]
    environment = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(args, cwd=root, env=environment, capture_output=True, text=True, timeout=120)


def test_every_contract_holds():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


def test_every_contract_has_a_bad_import_that_breaks_it():
    assert set(BAD_IMPORTS) == set(CONTRACTS)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("house")
    shutil.copytree(ROOT / "functions", root / "functions", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize("contract", sorted(BAD_IMPORTS))
def test_the_contract_fails_on_its_bad_import(pristine, tmp_path, contract):
    root = tmp_path / "copy"
    shutil.copytree(pristine, root)
    relative, statement = BAD_IMPORTS[contract]
    target = root / relative
    target.write_text(target.read_text() + f"\n{statement}  # deliberately bad\n")
    result = lint(root, contract)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout and statement.split()[-1] in result.stdout
