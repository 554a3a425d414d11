"""Who may move a request, from which state."""
from datetime import datetime, timedelta

import pytest

from functions.core.clock import CHINA_TZ
from functions.core.errors import BusinessRuleViolation, Forbidden, InvalidState, ValidationError
from functions.core.caller import Caller
from functions.requests import model as lc

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=CHINA_TZ)
REQUESTER = Caller("o-req", "res_req", "hh_req", "verified", frozenset({"resident"}))
SPOUSE = Caller("o-spouse", "res_spouse", "hh_req", "verified", frozenset({"resident"}))
VOLUNTEER = Caller("o-vol", "res_vol", "hh_vol", "verified", frozenset({"resident"}))
STRANGER = Caller("o-str", "res_str", "hh_str", "verified", frozenset({"resident"}))
ADMIN = Caller("admin", None, None, None, frozenset({"admin"}))


def make(status=lc.OPEN, **extra) -> lc.ServiceRequest:
    fields = dict(id="req_1", status=status, category="tutoring", title="t", description="",
                  start_at=NOW + timedelta(hours=2), duration_minutes=60, requester_id="res_req",
                  household_id="hh_req", payer_account="household:hh_req", hold_transfer_id="tr_h",
                  credits_held=60, created_at=NOW, content_hash="x")
    fields.update(extra)
    return lc.ServiceRequest(**fields)


def test_accept_sets_the_volunteer():
    changes = lc.accept(make(), VOLUNTEER, NOW)
    assert changes["status"] == lc.ACCEPTED and changes["volunteer_id"] == "res_vol"


@pytest.mark.parametrize("caller", [REQUESTER, SPOUSE])
def test_no_one_serves_their_own_household(caller):
    with pytest.raises(lc.OwnRequest):
        lc.accept(make(), caller, NOW)


@pytest.mark.parametrize("status", [lc.ACCEPTED, lc.IN_SERVICE, lc.COMPLETED, lc.SETTLED])
def test_second_acceptor_is_told_already_accepted(status):
    with pytest.raises(lc.AlreadyAccepted) as error:
        lc.accept(make(status, volunteer_id="res_vol"), STRANGER, NOW)
    assert error.value.code == "ALREADY_ACCEPTED" and error.value.status == 409


@pytest.mark.parametrize("status", [lc.CANCELLED, lc.EXPIRED])
def test_closed_requests_cannot_be_accepted(status):
    with pytest.raises(InvalidState):
        lc.accept(make(status), STRANGER, NOW)


def test_only_the_volunteer_checks_in_and_completes():
    accepted = make(lc.ACCEPTED, volunteer_id="res_vol")
    for caller in (STRANGER, REQUESTER, ADMIN):
        with pytest.raises(Forbidden):
            lc.check_in(accepted, caller, NOW, None, True, True)
    in_service = make(lc.IN_SERVICE, volunteer_id="res_vol")
    for caller in (STRANGER, REQUESTER):
        with pytest.raises(Forbidden):
            lc.complete(in_service, caller, NOW, 60, None, False)


def test_check_in_needs_the_insurance_record_when_the_category_requires_it():
    accepted = make(lc.ACCEPTED, volunteer_id="res_vol")
    with pytest.raises(BusinessRuleViolation) as error:
        lc.check_in(accepted, VOLUNTEER, NOW, None, has_insurance=False, requires_insurance=True)
    assert error.value.code == "INSURANCE_PENDING"
    assert lc.check_in(accepted, VOLUNTEER, NOW, None, False, False)["status"] == lc.IN_SERVICE


def test_complete_needs_evidence_when_required_and_sane_minutes():
    in_service = make(lc.IN_SERVICE, volunteer_id="res_vol", checked_in_at=NOW - timedelta(hours=1))
    with pytest.raises(BusinessRuleViolation) as error:
        lc.complete(in_service, VOLUNTEER, NOW, 60, None, requires_evidence=True)
    assert error.value.code == "EVIDENCE_REQUIRED"
    with pytest.raises(ValidationError):
        lc.complete(in_service, VOLUNTEER, NOW, 0, None, False)
    done = lc.complete(in_service, VOLUNTEER, NOW, 45, "evidence/req_1/a.jpg", True)
    assert done["completed_minutes"] == 45 and done["evidence_keys"] == ["evidence/req_1/a.jpg"]


def test_confirm_by_requester_household_or_admin_once_completed():
    completed = make(lc.COMPLETED, volunteer_id="res_vol")
    for caller in (REQUESTER, SPOUSE, ADMIN):
        lc.may_confirm(completed, caller)
    for caller in (VOLUNTEER, STRANGER):
        with pytest.raises(Forbidden):
            lc.may_confirm(completed, caller)
    with pytest.raises(InvalidState):
        lc.may_confirm(make(lc.SETTLED, volunteer_id="res_vol"), REQUESTER)


def test_cancel_by_the_requester_before_check_in_only():
    lc.may_cancel(make(lc.OPEN), REQUESTER)
    lc.may_cancel(make(lc.ACCEPTED, volunteer_id="res_vol"), ADMIN)
    with pytest.raises(InvalidState):
        lc.may_cancel(make(lc.IN_SERVICE, volunteer_id="res_vol"), REQUESTER)
    for caller in (VOLUNTEER, STRANGER, SPOUSE):
        with pytest.raises(Forbidden):
            lc.may_cancel(make(lc.OPEN), caller)


def test_dispute_by_either_party_after_completion_and_admin_resolves():
    completed = make(lc.COMPLETED, volunteer_id="res_vol")
    assert lc.dispute(completed, VOLUNTEER, NOW, "少算了")["status"] == lc.DISPUTED
    assert lc.dispute(completed, SPOUSE, NOW, "没来")["disputed_by"] == "res_spouse"
    with pytest.raises(Forbidden):
        lc.dispute(completed, STRANGER, NOW, "x")
    with pytest.raises(InvalidState):
        lc.dispute(make(lc.ACCEPTED, volunteer_id="res_vol"), VOLUNTEER, NOW, "x")
    lc.may_resolve(make(lc.DISPUTED, volunteer_id="res_vol"), ADMIN)
    with pytest.raises(Forbidden):
        lc.may_resolve(make(lc.DISPUTED, volunteer_id="res_vol"), REQUESTER)
