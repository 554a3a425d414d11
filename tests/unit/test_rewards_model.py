"""The rules of rewards with no I/O: conversion arithmetic, ages, codes, stock, the effect of a
partner's answer and the reconciliation of a day."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings, strategies as st

from functions.core.clock import CHINA_TZ
from functions.core.errors import ValidationError
from functions.ledger.model import point_kinds_from
from functions.rewards.model import (AgeRestricted, CatalogueItem, Exchange, NotConvertible, PartnerAnswer,
                                     StatementLine, StockBelowOutstanding, answer_effect, check_age,
                                     conversion_amounts, item_changes, new_code, normalise_code, plan_conversion,
                                     reconcile_day)
from tests.rewards_helpers import DEMO_ASSETS

AT = datetime(2026, 12, 1, 10, 0, tzinfo=CHINA_TZ)
KINDS = point_kinds_from(DEMO_ASSETS)


@settings(derandomize=True, database=None, max_examples=300)
@given(amount=st.integers(1, 10**6), num=st.integers(1, 1000), den=st.integers(1, 1000))
def test_conversions_round_down_and_debit_only_what_the_credit_needs(amount, num, den):
    debited, credited = conversion_amounts(amount, num, den)
    assert credited == amount * num // den           # never more than the exact value
    assert debited <= amount
    assert debited * num // den == credited           # what was debited buys exactly what was credited
    assert debited == 0 or (debited - 1) * num // den < credited  # and nothing less would


def test_the_demo_rates():
    assert conversion_amounts(60, 1, 1) == (60, 60)
    assert conversion_amounts(125, 1, 10) == (120, 12)
    conversion, (out, into) = plan_conversion("cv_1", "household:hh_1", "green", "service", 125, KINDS, "res_1")
    assert (out.debit, out.credit, out.asset, out.amount) == ("household:hh_1", "issuance", "green", 120)
    assert (into.debit, into.credit, into.asset, into.amount) == ("issuance", "household:hh_1", "service", 12)
    assert conversion.transfer_ids == ("cv_1.out", "cv_1.in") == (out.id, into.id)
    with pytest.raises(NotConvertible):
        plan_conversion("cv_2", "household:hh_1", "service", "green", 10, KINDS, None)
    with pytest.raises(ValidationError) as caught:
        plan_conversion("cv_3", "household:hh_1", "green", "service", 9, KINDS, None)
    assert "amount" in caught.value.details["fields"]


def test_the_minimum_age_is_counted_in_calendar_years():
    check_age(0, None, AT)
    check_age(18, 2008, AT)
    with pytest.raises(AgeRestricted):
        check_age(18, 2009, AT)
    with pytest.raises(AgeRestricted):
        check_age(18, None, AT)


def test_codes_are_qr_alphanumeric_and_read_back_whatever_the_typing():
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(len(c) == 20 and set(c) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for c in codes)
    assert normalise_code(" 8k3m-9q2w o1il ") == "8K3M9Q2W0111"


def test_stock_never_goes_below_what_is_outstanding():
    item = CatalogueItem("itm", "mer", "店", "袋", "", "service", 30, stock_left=3, per_person_limit=1, valid_days=7,
                         created_at=AT, outstanding=2)
    assert item.stock == 5
    assert item_changes(item, {"stock": 2, "price": 5}) == {"stock_left": 0, "price": 5}
    with pytest.raises(StockBelowOutstanding):
        item_changes(item, {"stock": 1})


def exchange(status="pending", **changes):
    base = dict(id="zx_1", status=status, resident_id="res_1", household_id="hh_1", payer_account="household:hh_1",
                asset="volunteer", amount=60, coins=60, zyh_user_id="u", hold_transfer_id="tr", created_at=AT,
                timeout_at=AT + timedelta(minutes=15))
    return Exchange(**{**base, **changes})


def test_what_an_answer_does():
    accepted, refused = PartnerAnswer("zx_1", "accepted", "R1"), PartnerAnswer("zx_1", "refused")
    assert answer_effect(None, accepted) == "early"
    assert answer_effect(exchange(), accepted) == answer_effect(exchange(), refused) == "applied"
    confirmed = exchange("confirmed", partner_ref="R1")
    assert answer_effect(confirmed, accepted) == "duplicate"
    assert answer_effect(confirmed, refused) == "late"
    assert answer_effect(confirmed, PartnerAnswer("zx_1", "accepted", "R2")) == "late"
    assert answer_effect(exchange("failed", failure_reason="refused"), refused) == "duplicate"
    assert answer_effect(exchange("failed", failure_reason="timeout"), refused) == "late"
    assert answer_effect(exchange("failed", failure_reason="timeout"), accepted) == "late"


def test_reconciliation_lists_every_mismatch_of_the_day():
    ours = [exchange("confirmed", id="a", partner_ref="RA"), exchange("confirmed", id="b", partner_ref="RB"),
            exchange("failed", id="c", failure_reason="timeout", late_answer="accepted", late_partner_ref="RC",
                     late_at=AT), exchange("pending", id="d")]
    theirs = [StatementLine("a", "RA", 60, 60), StatementLine("b", "RB", 60, 61), StatementLine("c", "RC", 60, 60),
              StatementLine("d", "RD", 60, 60), StatementLine("e", "RE", 60, 60), StatementLine("f", "RF", 60, 60)]
    elsewhere = {"f": exchange("confirmed", id="f", partner_ref="RF")}   # confirmed here on the day before
    report = reconcile_day("2026-12-01", ours, theirs, elsewhere)
    assert report["ours"] == {"count": 2, "amount": 120} and report["theirs"] == {"count": 6, "amount": 360}
    kinds = [(m["kind"], m["exchange_id"], m.get("our_status")) for m in report["mismatches"]]
    assert kinds == [("differs", "b", None), ("missing_here", "c", "failed"), ("missing_here", "d", "pending"),
                     ("missing_here", "e", "unknown")]
    assert report["mismatches"][1]["late_answer"] == "accepted"
    assert [entry["exchange_id"] for entry in report["late_answers"]] == ["c"]
    missing = reconcile_day("2026-12-01", [exchange("confirmed", id="a", partner_ref="RA")], [], {})
    assert [(m["kind"], m["exchange_id"]) for m in missing["mismatches"]] == [("missing_at_partner", "a")]
    assert reconcile_day("2026-12-01", [], [], {})["ok"] is True
