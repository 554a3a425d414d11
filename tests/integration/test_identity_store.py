"""The DynamoDB identity store on moto: conditional writes, transactions, indexes, pagination."""
from dataclasses import replace
from datetime import datetime, timedelta

import boto3
import pytest

from functions.core import clock
from functions.core.errors import AlreadyExists, ValidationError
from functions.identity.model import Address, Dependant, Household, RelativeDeclaration, Resident
from functions.identity.dynamo import DynamoIdentityStore

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=clock.CHINA_TZ)
HH = "hh_flat"
FLAT = "addr_flat"  # the address key of the flat (``model.address_key``)


def resident(openid, rid=None, household=HH, at=T0, **changes):
    return Resident(id=rid or f"res_{openid}", openid=openid, household_id=household, name="居民",
                    phone="13812345678", address=Address("3幢", "1", "502"), birth_year=1980, status="pending",
                    roles=frozenset({"resident"}), created_at=at, **changes)


def household(hid=HH, building="3幢"):
    return Household(id=hid, address=Address(building, "1", "502"), created_at=T0)


def items(logical):
    client = boto3.client("dynamodb")
    return client.scan(TableName=f"timebank-test-{logical}")["Items"]


@pytest.fixture
def store(aws):
    return DynamoIdentityStore()


def register(store, person, home=None, flat=FLAT):
    """What the service does: propose a household, join whichever one the flat has."""
    return store.create_resident(person, home or household(person.household_id), flat)


def test_registration_writes_login_resident_and_household_together(store):
    assert register(store, resident("alice")) == HH
    login = store.get_login("alice")
    assert (login.resident_id, login.household_id, login.status, login.roles) == \
        ("res_alice", HH, "pending", {"resident"})
    assert store.get_resident(HH, "res_alice") == resident("alice")
    assert store.get_household(HH) == household()


def test_registrations_of_one_flat_end_in_one_household_whatever_each_proposed(store):
    assert register(store, resident("alice"), household(building="3幢")) == HH
    # Bob's registration proposes a household of its own; the flat has one: he joins it.
    assert register(store, resident("bob", household="hh_proposed"), household("hh_proposed", building="3")) == HH
    assert len(items("households")) == 1 and len(items("household-addresses")) == 1
    assert store.get_household(HH) == household(building="3幢")  # the first writer's fields stay
    assert {m.id for m in store.list_members(HH)} == {"res_alice", "res_bob"}
    assert store.get_login("bob").household_id == HH


def test_second_registration_of_an_openid_fails_whole(store):
    register(store, resident("alice"))
    with pytest.raises(AlreadyExists):
        register(store, resident("alice", rid="res_again", household="hh_other"), flat="addr_other")
    assert store.get_member("hh_other", "res_again") is None
    assert store.get_household("hh_other") is None
    assert store.get_login("alice").resident_id == "res_alice"


def test_status_update_is_conditional_and_updates_the_login(store):
    register(store, resident("alice"))
    now_verified = replace(resident("alice"), status="verified", reviewed_at=T0, reviewed_by="boss")
    assert store.update_resident_status(now_verified, expected_status="pending")
    assert store.get_login("alice").status == "verified"
    assert store.get_resident(HH, "res_alice") == now_verified
    # Stale expectation: nothing is written.
    assert not store.update_resident_status(replace(now_verified, status="rejected", rejection_reason="x"),
                                            expected_status="pending")
    assert store.get_resident(HH, "res_alice") == now_verified
    assert store.get_login("alice").status == "verified"


def test_rejection_reason_is_removed_when_verified_later(store):
    register(store, resident("alice"))
    was_rejected = replace(resident("alice"), status="rejected", reviewed_at=T0, reviewed_by="b", rejection_reason="r")
    assert store.update_resident_status(was_rejected, "pending")
    assert store.update_resident_status(replace(was_rejected, status="verified", rejection_reason=None), "rejected")
    assert store.get_resident(HH, "res_alice").rejection_reason is None


def test_members_of_a_household_are_one_query_and_findable_by_id(store):
    register(store, resident("alice"))
    dependant = Dependant(id="dep_1", household_id=HH, name="奶奶", birth_year=1940, relation="grandparent",
                          created_by="res_alice", created_at=T0, content_hash="abc")
    assert store.create_dependant(dependant, limit=20)
    assert not store.create_dependant(replace(dependant, name="别人"), limit=20)
    assert store.get_member(HH, "dep_1") == dependant
    assert store.list_members(HH) == [dependant, resident("alice")]
    assert store.find_member("dep_1") == dependant
    assert store.find_member("res_alice") == resident("alice")
    assert store.find_member("nobody") is None


def test_status_index_pages_without_a_trailing_empty_page(store):
    for i in range(5):
        register(store, resident(f"u{i}", at=T0 + timedelta(minutes=i)))
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = store.list_residents_by_status("pending", 2, cursor)
        pages += 1
        seen += [r.id for r in page]
        if cursor is None:
            break
    assert seen == [f"res_u{i}" for i in range(5)]
    assert pages == 3
    exact, cursor = store.list_residents_by_status("pending", 5, None)
    assert len(exact) == 5 and cursor is None
    assert store.list_residents_by_status("verified", 5, None) == ([], None)


@pytest.mark.parametrize("cursor", [{"h": "x"}, {"h": 1, "m": "a"}, {"h": "", "m": "a"}, {"h": "a", "m": "b", "x": "d"}])
def test_forged_cursors_are_validation_errors(store, cursor):
    with pytest.raises(ValidationError):
        store.list_residents_by_status("pending", 2, cursor)


def test_verification_writes_commit_together_and_the_credits_mark_only_once(store):
    from functions.adapters.dynamo import commit
    from pynamodb.exceptions import TransactWriteError

    register(store, resident("alice"))
    now_verified = replace(resident("alice"), status="verified", reviewed_at=T0, reviewed_by="boss")
    commit(store.status_writes(now_verified, "pending", T0))
    assert store.get_household(HH).credits_granted_at == T0 and store.get_login("alice").status == "verified"
    register(store, resident("bob"))
    bob_verified = replace(resident("bob"), status="verified", reviewed_at=T0, reviewed_by="boss")
    with pytest.raises(TransactWriteError):  # the mark exists: the whole verification is refused
        commit(store.status_writes(bob_verified, "pending", T0 + timedelta(days=1)))
    assert store.get_resident(HH, "res_bob").status == "pending"
    assert store.get_household(HH).credits_granted_at == T0


def test_declarations(store):
    for hid in ("hh_a", "hh_b"):
        register(store, resident(f"r{hid}", household=hid), flat=f"addr_{hid}")
    a_to_b = RelativeDeclaration("hh_a", "hh_b", "parent", "res_a", T0)
    assert store.put_declaration(a_to_b, limit=20)
    assert not store.put_declaration(replace(a_to_b, relation="sibling"), limit=20)
    assert store.get_declaration("hh_a", "hh_b") == a_to_b
    assert store.declarations_between("hh_a", "hh_b") == {("hh_a", "hh_b")}
    store.put_declaration(RelativeDeclaration("hh_b", "hh_a", "child", "res_b", T0), limit=20)
    assert store.declarations_between("hh_b", "hh_a") == {("hh_a", "hh_b"), ("hh_b", "hh_a")}
    assert store.declarations_by("hh_a") == [a_to_b]
    assert store.declarations_of("hh_b") == [a_to_b]
    assert store.delete_declaration("hh_a", "hh_b")
    assert not store.delete_declaration("hh_a", "hh_b")
    assert store.declarations_between("hh_a", "hh_b") == {("hh_b", "hh_a")}


def test_token_version_bumps(store):
    assert store.bump_token_version("carol") == 1
    assert store.bump_token_version("carol") == 2
    register(store, resident("carol"))
    login = store.get_login("carol")
    assert (login.token_version, login.resident_id) == (2, "res_carol")


def _conflict() -> Exception:
    from pynamodb.exceptions import CancellationReason, TransactWriteError, VerboseClientError

    cause = VerboseClientError({"Error": {"Code": "TransactionCanceledException", "Message": "conflict"}},
                               "TransactWriteItems",
                               cancellation_reasons=[None, None, CancellationReason("TransactionConflict")])
    return TransactWriteError("conflict", cause=cause)


def test_registration_cancelled_by_a_concurrent_one_on_the_same_flat_is_retried(store, monkeypatch):
    # On DynamoDB, two registrations of one flat in the same instant both update the household
    # item; one transaction is cancelled with TransactionConflict (moto never does this).
    original = store._register
    conflicts = {"left": 1}

    def racing(*args):
        if conflicts["left"]:
            conflicts["left"] -= 1
            register(store, resident("bob"))  # the other registration wins
            raise _conflict()
        return original(*args)

    monkeypatch.setattr(store, "_register", racing)
    register(store, resident("alice"))
    assert {m.id for m in store.list_members(HH)} == {"res_alice", "res_bob"}
    assert len(items("households")) == 1


def test_registration_gives_up_after_repeated_conflicts(store, monkeypatch):
    from functions.core.errors import Conflict

    def always_conflicting(*args):
        raise _conflict()

    monkeypatch.setattr(store, "_register", always_conflicting)
    with pytest.raises(Conflict):
        register(store, resident("alice"))
    assert store.get_login("alice") is None


def test_counted_limits_hold_in_the_write_itself(store):
    register(store, resident("alice"))
    for number in range(3):
        assert store.create_dependant(Dependant(id=f"dep_{number}", household_id=HH, name="孩子", birth_year=2015,
                                                relation="child", created_by="res_alice", created_at=T0), limit=3)
    from functions.core.errors import LimitExceeded

    with pytest.raises(LimitExceeded):
        store.create_dependant(Dependant(id="dep_x", household_id=HH, name="孩子", birth_year=2015,
                                         relation="child", created_by="res_alice", created_at=T0), limit=3)
    assert store.get_member(HH, "dep_x") is None
    assert not store.create_dependant(Dependant(id="dep_0", household_id=HH, name="孩子", birth_year=2015,
                                                relation="child", created_by="res_alice", created_at=T0), limit=3)
