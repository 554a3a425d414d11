import pytest

from functions.core.errors import InvalidState
from functions.identity.model import (
    PENDING, REJECTED, VERIFIED, Address, are_relatives, effective_roles, address_key, mask_phone,
    reject_changes, verify_changes,
)


@pytest.mark.parametrize("variant", [
    Address("3", "1", "502"),
    Address("3幢", "1单元", "502室"),
    Address("3栋", "1单元", "502"),
    Address("3号楼", "1", "502号"),
    Address(" 3 ", "1 ", " 502"),
    Address("３", "１", "５０２"),      # full-width digits from a Chinese keyboard
    Address("第3幢", "01", "502"),
    Address("03", "1", "0502"),
])
def test_spellings_of_one_flat_give_one_household(variant):
    assert address_key("demo", variant) == address_key("demo", Address("3", "1", "502"))


@pytest.mark.parametrize("other", [
    Address("3", "1", "501"),
    Address("3", "2", "502"),
    Address("4", "1", "502"),
    Address("3A", "1", "502"),
])
def test_different_flats_give_different_households(other):
    assert address_key("demo", other) != address_key("demo", Address("3", "1", "502"))


def test_letters_are_case_insensitive():
    assert address_key("demo", Address("a座", "1", "1")) == address_key("demo", Address("A", "1", "1"))


def test_a_suffix_alone_is_kept_rather_than_emptied():
    assert Address("楼", "单元", "室").normalised() == ("楼", "单元", "室")


def test_same_address_in_another_community_is_another_household():
    address = Address("3", "1", "502")
    assert address_key("demo", address) != address_key("xihu", address)


@pytest.mark.parametrize("phone, masked", [
    ("13812345678", "138****5678"),
    ("19900001111", "199****1111"),
    ("12345", "*****"),
    ("", None),
    (None, None),
])
def test_mask_phone(phone, masked):
    assert mask_phone(phone) == masked


def test_verify_transitions():
    assert verify_changes(PENDING) is True
    assert verify_changes(REJECTED) is True    # an admin may correct a rejection
    assert verify_changes(VERIFIED) is False   # idempotent
    with pytest.raises(InvalidState):
        verify_changes("archived")


def test_reject_transitions():
    assert reject_changes(PENDING) is True
    assert reject_changes(REJECTED) is False   # idempotent
    with pytest.raises(InvalidState):
        reject_changes(VERIFIED)


def test_relatives_need_both_declarations():
    assert are_relatives("a", "a", set())
    assert not are_relatives("a", "b", set())
    assert not are_relatives("a", "b", {("a", "b")})
    assert not are_relatives("a", "b", {("b", "a")})
    assert are_relatives("a", "b", {("a", "b"), ("b", "a")})


def test_configured_admins_get_the_admin_role():
    assert effective_roles({"resident"}, "boss", ("boss",)) == {"resident", "admin"}
    assert effective_roles({"resident"}, "alice", ("boss",)) == {"resident"}
    assert effective_roles({"merchant", "admin"}, "alice", ()) == {"merchant", "admin"}
