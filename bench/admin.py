"""AWS calls of the administration operations (issue 12): an audited admin read (its entry
written alone), an audited admin write (its entry riding in the change's TransactWriteItems),
a page of the audit log, and reversals — of a settlement (both legs in one linked transaction)
and of a plain transfer. Setting up (the residents, the settlement, logins) is not counted.
"""
from __future__ import annotations

from bench.environment import BENCH_ADMIN
from bench.lifecycle import expect, verified
from bench.operations import HttpFailure, Scenario, resident_body


def refused(call) -> int | None:
    """The status of a call expected to be refused (None: it was not)."""
    try:
        call()
    except HttpFailure as failure:
        return int(str(failure).split()[1])
    return None


def run_admin(s: Scenario) -> None:
    from functions import bootstrap
    from functions.ledger.accounts import ESCROW, ISSUANCE, household_account, resident_account

    s.login(BENCH_ADMIN)
    payer = verified(s, "bench-admin-payer", room="1301", building="13")
    volunteer = verified(s, "bench-admin-volunteer", room="1401", building="14")
    s.login("bench-admin-pending")
    pending = s.http("POST", "/v1/residents", "bench-admin-pending", resident_body("待审核", "1501"))
    ledger = bootstrap.ledger()
    ledger.hold("bench-admin-hold", household_account(payer["household_id"]), ESCROW, "service", 60)
    ledger.settle_hold("bench-admin-settle", "bench-admin-hold", resident_account(volunteer["id"]), 60)
    ledger.transfer("bench-admin-grant", ISSUANCE, household_account(payer["household_id"]), "service", 30,
                    kind="grant")

    s.measure("audited admin read (GET /v1/admin/residents/{id}; entry written alone)", lambda: s.http(
        "GET", f"/v1/admin/residents/{payer['id']}", BENCH_ADMIN))
    s.measure("audited admin write (POST …/reject; entry in its transaction)", lambda: s.http(
        "POST", f"/v1/admin/residents/{pending['id']}/reject", BENCH_ADMIN, {"reason": "bench"}),
        check=lambda r: expect(r["status"] == "rejected", f"status {r['status']}"))
    s.measure("audit log page (GET /v1/admin/audit?action=…)", lambda: s.http(
        "GET", "/v1/admin/audit?action=resident.reject", BENCH_ADMIN),
        check=lambda r: expect(len(r["items"]) == 1, f"{len(r['items'])} entries"))
    s.measure("reverse a settlement (POST /v1/admin/transfers/{id}/reverse, 2 legs)", lambda: s.http(
        "POST", "/v1/admin/transfers/bench-admin-settle.pay/reverse", BENCH_ADMIN, {"reason": "bench"}),
        check=lambda r: expect(r["reverses"] == "bench-admin-settle.pay", "not the payout's reversal"))
    s.measure("reverse it again (409 ALREADY_REVERSED, expected)", lambda: refused(lambda: s.http(
        "POST", "/v1/admin/transfers/bench-admin-settle.pay/reverse", BENCH_ADMIN, {"reason": "bench"})),
        check=lambda code: expect(code == 409, f"answered {code}"))
    s.measure("reverse a plain transfer", lambda: s.http(
        "POST", "/v1/admin/transfers/bench-admin-grant/reverse", BENCH_ADMIN, {"reason": "bench"}))
