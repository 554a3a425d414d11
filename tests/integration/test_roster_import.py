"""The roster import on moto: batches of whole households, a crash midway and the rerun that
completes it (no duplicates, the ledger exact), and the command line with its progress bar."""
from __future__ import annotations

import io
from collections import Counter

import pytest

from functions import bootstrap
from functions.core.errors import TimebankError
from functions.identity import roster
from functions.identity.cli import main as cli_main
from functions.identity.dynamo import HouseholdItem, MemberItem
from functions.identity.roster import XLSX, parse_roster
from functions.identity.service import STARTING_CREDITS_KIND
from functions.ledger.accounts import ISSUANCE
from tests.roster_files import csv_bytes, roster as roster_rows, xlsx


class Crash(Exception):
    pass


def imported_state():
    members = [m for m in MemberItem.scan() if m.import_id]
    households = list(HouseholdItem.scan())
    return members, households


def starting_transfers():
    from functions.ledger.dynamo import LedgerTransferItem as TransferItem

    return [t for t in TransferItem.scan() if t.kind == STARTING_CREDITS_KIND]


def rows_of(n_households, per_household=1):
    return parse_roster(xlsx(roster_rows(n_households, per_household)), XLSX, 2026)


def test_a_crash_midway_leaves_whole_batches_and_the_rerun_completes_it_once(aws, monkeypatch):
    rows = rows_of(35, per_household=2)  # 35 households of 2: 4 batches (10, 10, 10, 5)
    service = bootstrap.identity()
    real_execute = service.ledger.execute
    calls = Counter()

    def crashing(commands, also=()):
        calls["batches"] += 1
        if calls["batches"] == 3:
            raise Crash("the Lambda was stopped")
        return real_execute(commands, also)

    monkeypatch.setattr(service.ledger, "execute", crashing)
    with pytest.raises(Crash):
        service.import_residents("admin", rows)
    members, households = imported_state()
    assert len(households) == 20 and len(members) == 40  # two whole batches, nothing of the third
    assert len(starting_transfers()) == 20
    assert bootstrap.ledger().check()["ok"]

    monkeypatch.setattr(service.ledger, "execute", real_execute)
    result = service.import_residents("admin", rows)
    assert (result.imported, result.households) == (70, 35)
    members, households = imported_state()
    assert len(members) == 70 and len({(m.household_id, m.member_id) for m in members}) == 70
    assert len({m.phone for m in members}) == 70
    assert len(households) == 35
    transfers = starting_transfers()
    assert len(transfers) == 35 and len({t.credit_account for t in transfers}) == 35
    report = bootstrap.ledger().check()
    assert report["ok"], report["violations"]
    issued = bootstrap.ledger().balances(ISSUANCE)["service"].posted
    assert issued == -35 * 300
    # A third run finds everything there and writes nothing new.
    service.import_residents("admin", rows)
    assert len(imported_state()[0]) == 70 and len(starting_transfers()) == 35


def test_batches_hold_whole_households_and_stay_under_dynamodbs_100_items():
    rows = parse_roster(csv_bytes(roster_rows(40, per_household=3)), roster.CSV, 2026)
    keys = roster.household_keys("c", rows)
    plans = [roster.HouseholdPlan(k, f"hh{i}", True, True, tuple(v)) for i, (k, v) in enumerate(keys.items())]
    batches = roster.import_batches(plans)
    assert [p for b in batches for p in b] == plans
    assert all(sum(p.items for p in b) <= roster.BATCH_ITEMS for b in batches)
    assert roster.import_batches(plans) == batches  # the same rows, the same batches


def test_an_imported_household_joins_a_household_registered_at_that_flat(aws):
    from functions.core.caller import Caller

    service = bootstrap.identity()
    pending = service.register(Caller(openid="early"), name="早登记", phone="13900000001", building="8",
                               unit="1", room="101", birth_year=1970)
    rows = rows_of(1)
    service.import_residents("admin", rows)
    imported = [m for m in MemberItem.scan() if m.import_id][0]
    assert imported.household_id == pending.household_id
    household = service.store.get_household(pending.household_id)
    assert household.credits_granted_at is not None
    assert len(starting_transfers()) == 1
    # Verifying the early registrant later brings nothing more: the household has its credits.
    service.verify("admin", pending.id)
    assert len(starting_transfers()) == 1
    assert bootstrap.ledger().check()["ok"]


def test_the_command_line_shows_a_progress_bar_and_imports(aws, tmp_path):
    path = tmp_path / "roster.xlsx"
    path.write_bytes(xlsx(roster_rows(30)))
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["import-residents", str(path)], out, err) == 0
    assert '"imported": 30' in out.getvalue()
    assert "检查手机号" in err.getvalue() and "写入" in err.getvalue() and "30/30" in err.getvalue()
    assert len(imported_state()[0]) == 30


def test_the_command_line_prints_the_per_row_report_and_imports_nothing(aws, tmp_path):
    rows = roster_rows(3)
    rows[1][1] = "12345"
    path = tmp_path / "roster.csv"
    path.write_bytes(csv_bytes(rows, encoding="gbk"))
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["import-residents", str(path)], out, err) == 1
    assert "IMPORT_INVALID" in err.getvalue() and "第 3 行" in err.getvalue() and "phone" in err.getvalue()
    assert imported_state() == ([], [])


def test_dry_run_on_the_command_line_writes_nothing(aws, tmp_path):
    path = tmp_path / "roster.csv"
    path.write_bytes(csv_bytes(roster_rows(5), encoding="utf-8-sig"))
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["import-residents", str(path), "--dry-run"], out, err) == 0
    assert '"dry_run": true' in out.getvalue()
    assert imported_state() == ([], [])


def test_a_refusal_is_a_timebank_error_never_a_crash():
    with pytest.raises(TimebankError):
        parse_roster(b"\x00\x01garbage", XLSX, 2026)
