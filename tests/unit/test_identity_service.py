"""Identity rules through the service with an in-memory store and a recording ledger."""
from dataclasses import replace
from datetime import datetime

import pytest

from functions.core import clock
from functions.core.errors import (
    AlreadyExists, BusinessRuleViolation, IdempotencyMismatch, InvalidState, LimitExceeded, NotFound, NotRelative,
    NotVerified, ValidationError,
)
from functions.core.caller import Caller
from functions.identity.model import Address, address_key
from functions.identity.service import (
    MAX_DEPENDANTS_PER_HOUSEHOLD, IdentityConfig, IdentityService, NotRegistered,
)
from tests.fakes.identity import InMemoryIdentityStore

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=clock.CHINA_TZ)


class RecordingLedger:
    """Transfers like the ledger does: a second transfer with one id is a no-op."""

    def __init__(self, fail_times: int = 0):
        self.granted: dict[str, int] = {}
        self.transfers: set[str] = set()
        self.calls = 0
        self.fail_times = fail_times

    def transfer(self, transfer_id, debit, credit, asset="service", amount=0, kind="transfer", memo="",
                 actor=None, request_id=None, also=()):
        self.calls += 1
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("ledger unreachable")  # nothing of the transaction applied
        assert debit == "issuance" and credit.startswith("household:") and kind == "starting_credits"
        household = credit.split(":", 1)[1]
        if household in self.granted:
            raise InvalidState("transfer exists")
        self.execute([], also)
        self.granted[household] = amount
        self.transfers.add(transfer_id)

    def execute(self, commands, also=()):
        if commands:  # the starting-credits transfers, with their writes, as one transaction
            self.calls += 1
            if self.fail_times:
                self.fail_times -= 1
                raise ConnectionError("ledger unreachable")
            for command in commands:
                assert command.debit == "issuance" and command.kind == "starting_credits"
                if command.credit.split(":", 1)[1] in self.granted:
                    raise InvalidState("transfer exists")
            self.execute([], also)
            for command in commands:
                self.granted[command.credit.split(":", 1)[1]] = command.amount
                self.transfers.add(command.id)
            return
        if not all(write.holds_in_memory() for write in also):
            raise InvalidState("a linked write's condition failed")
        for write in also:
            write.apply_in_memory()

    def get_transfer(self, transfer_id):
        return transfer_id if transfer_id in self.transfers else None


def transfer_target(caller, to, service):
    """What ``POST /v1/transfers`` does with a ``to``: the route's schema checks its shape, then
    identity (the ledger's ``AccountOwners`` port) decides who may receive."""
    from functions.ledger.routes import TRANSFER

    cleaned = TRANSFER.validate({"to": to, "amount": 1})["to"]
    if cleaned.get("pool"):
        return "pool"
    kind = "household_id" if "household_id" in cleaned else "resident_id"
    return service.recipient(caller, kind, cleaned[kind])


class Ids:
    def __init__(self):
        self.n = 0

    def __call__(self, prefix):
        self.n += 1
        return f"{prefix}_{self.n:04d}"


@pytest.fixture
def store():
    return InMemoryIdentityStore()


@pytest.fixture
def ledger():
    return RecordingLedger()


@pytest.fixture
def service(store, ledger):
    return IdentityService(store, ledger, IdentityConfig("demo", ("boss",), 300), now=lambda: T0, make_id=Ids())


def caller_of(service, openid):
    return service.caller_from(service.login_state(openid))


def register(service, openid, building="1", unit="1", room="101", **fields):
    body = {"name": "居民", "phone": "13812345678", "building": building, "unit": unit, "room": room,
            "birth_year": 1980, **fields}
    return service.register(caller_of(service, openid), **body)


def verified(service, openid, **address):
    resident = register(service, openid, **address)
    service.verify("boss", resident.id)
    return caller_of(service, openid)


# --- registration and households ---------------------------------------------------------


def test_registration_creates_a_pending_resident_and_its_household(service, store):
    resident = register(service, "alice", building="3幢", unit="1单元", room="502室")
    assert resident.status == "pending"
    # A random id, joined by every later registration of the same flat however it is spelled.
    assert resident.household_id.startswith("hh_")
    assert store.addresses[address_key("demo", Address("3", "1", "502"))] == resident.household_id
    assert register(service, "bob", building="3栋", unit="1", room="0502").household_id == resident.household_id
    assert resident.household_id != address_key("demo", Address("3", "1", "502"))
    assert store.households[resident.household_id].address == Address("3幢", "1单元", "502室")
    login = store.logins["alice"]
    assert (login.resident_id, login.household_id, login.status) == (resident.id, resident.household_id, "pending")
    assert "resident" in login.roles


def test_same_flat_written_differently_joins_one_household(service, store):
    first = register(service, "alice", building="3幢", unit="1单元", room="502室")
    second = register(service, "bob", building="3", unit="1", room="502")
    assert first.household_id == second.household_id
    assert len(store.households) == 1
    # The household keeps the address as its first member wrote it.
    assert store.households[first.household_id].address.building == "3幢"


def test_registering_twice_is_refused_and_changes_nothing(service, store):
    register(service, "alice")
    before = (dict(store.logins), dict(store.members), dict(store.households))
    with pytest.raises(AlreadyExists):
        register(service, "alice", room="999")
    # A stale caller (registered meanwhile by a concurrent request) is refused by the store too.
    with pytest.raises(AlreadyExists):
        service.register(Caller("alice"), name="x", phone="13812345678", building="9", unit="9", room="9",
                         birth_year=1990)
    assert (dict(store.logins), dict(store.members), dict(store.households)) == before


def test_me_needs_a_resident(service):
    with pytest.raises(NotRegistered):
        service.me(Caller("nobody"))


def test_pending_resident_sees_only_itself_in_its_household(service):
    alice = verified(service, "alice")
    register(service, "mallory")  # claims alice's flat
    service.add_dependant(alice, name="小明", birth_year=2018, relation="child", idempotency_key=None)
    view = service.household(caller_of(service, "mallory"))
    assert [m["name"] for m in view["members"]] == ["居民"]
    assert [m["id"] for m in view["members"]] == [caller_of(service, "mallory").resident_id]
    full = service.household(alice)
    assert {m["kind"] for m in full["members"]} == {"resident", "dependant"}
    assert len(full["members"]) == 3


def test_rejected_residents_are_not_listed_as_members(service):
    alice = verified(service, "alice")
    mallory = register(service, "mallory")
    service.reject("boss", mallory.id, "地址不符")
    ids = [m["id"] for m in service.household(alice)["members"]]
    assert mallory.id not in ids and alice.resident_id in ids


# --- verification and starting credits ----------------------------------------------------


def test_first_verified_member_brings_starting_credits_once(service, store, ledger):
    alice = register(service, "alice")
    bob = register(service, "bob")
    service.verify("boss", alice.id)
    service.verify("boss", bob.id)
    assert ledger.granted == {alice.household_id: 300}
    assert ledger.calls == 1
    assert store.households[alice.household_id].credits_granted_at == T0


def test_verify_is_idempotent(service, ledger):
    alice = register(service, "alice")
    first = service.verify("boss", alice.id)
    again = service.verify("boss", alice.id)
    assert first.status == again.status == "verified"
    assert ledger.calls == 1


def test_verify_is_one_transaction_so_a_crash_leaves_nothing_half_done(store):
    """Outside testing: a crash after the status change left a verified household with 0 credits."""
    ledger = RecordingLedger(fail_times=1)
    service = IdentityService(store, ledger, IdentityConfig("demo", (), 300), now=lambda: T0, make_id=Ids())
    alice = register(service, "alice")
    with pytest.raises(ConnectionError):
        service.verify("boss", alice.id)
    # Nothing of the verification is stored: still pending, no credits, no mark.
    assert store.get_resident(alice.household_id, alice.id).status == "pending"
    assert store.households[alice.household_id].credits_granted_at is None and ledger.granted == {}
    service.verify("boss", alice.id)
    assert store.get_resident(alice.household_id, alice.id).status == "verified"
    assert ledger.granted == {alice.household_id: 300}
    assert store.households[alice.household_id].credits_granted_at == T0


def test_zero_starting_credits_grants_nothing(store):
    ledger = RecordingLedger()
    service = IdentityService(store, ledger, IdentityConfig("demo", (), 0), now=lambda: T0, make_id=Ids())
    alice = register(service, "alice")
    service.verify("boss", alice.id)
    assert ledger.calls == 0


def test_a_household_whose_first_claimant_was_rejected_gets_credits_with_its_first_verified(service, ledger):
    mallory = register(service, "mallory")
    service.reject("boss", mallory.id, "不是本户")
    assert ledger.calls == 0
    alice = register(service, "alice")
    service.verify("boss", alice.id)
    assert ledger.granted == {alice.household_id: 300}


def test_reject_then_verify_is_allowed_but_verified_cannot_be_rejected(service, store):
    alice = register(service, "alice")
    rejected = service.reject("boss", alice.id, "资料不全")
    assert (rejected.status, rejected.rejection_reason) == ("rejected", "资料不全")
    assert store.logins["alice"].status == "rejected"
    # Rejecting again keeps the first reason.
    assert service.reject("boss", alice.id, "另一个理由").rejection_reason == "资料不全"
    verified_again = service.verify("boss", alice.id)
    assert verified_again.status == "verified" and verified_again.rejection_reason is None
    with pytest.raises(InvalidState):
        service.reject("boss", alice.id, "改主意")
    assert store.get_resident(alice.household_id, alice.id).status == "verified"


def test_verify_unknown_or_dependant_is_not_found(service):
    alice = verified(service, "alice")
    dependant = service.add_dependant(alice, name="奶奶", birth_year=1940, relation="grandparent",
                                      idempotency_key=None)
    with pytest.raises(NotFound):
        service.verify("boss", "res_unknown")
    with pytest.raises(NotFound):
        service.verify("boss", dependant.id)


def test_concurrent_status_change_is_decided_on_the_stored_state(service, store):
    alice = register(service, "alice")
    # Another admin verifies between our read and our conditional write.
    original = store.update_resident_status
    raced = {"done": False}

    def racing(resident, expected_status):
        if not raced["done"]:
            raced["done"] = True
            original(replace(resident, status="verified"), expected_status)
            return False
        return original(resident, expected_status)

    store.update_resident_status = racing
    with pytest.raises(InvalidState):
        service.reject("boss", alice.id, "晚了一步")
    assert store.get_resident(alice.household_id, alice.id).status == "verified"


def test_admin_listing_pages_through_a_status(service):
    ids = [register(service, f"u{i}", room=str(100 + i)).id for i in range(5)]
    page, cursor = service.list_residents("pending", 2, None)
    seen = [r.id for r in page]
    while cursor:
        page, cursor = service.list_residents("pending", 2, cursor)
        seen += [r.id for r in page]
    assert seen == ids


# --- dependants ------------------------------------------------------------------------------


def test_dependants_need_a_verified_resident(service):
    register(service, "alice")
    with pytest.raises(NotVerified):
        service.add_dependant(caller_of(service, "alice"), name="奶奶", birth_year=1940, relation="grandparent",
                              idempotency_key=None)


def test_dependant_idempotency_key_replays_and_detects_mismatch(service, store):
    alice = verified(service, "alice")
    first = service.add_dependant(alice, name="奶奶", birth_year=1940, relation="grandparent",
                                  idempotency_key="k1")
    again = service.add_dependant(alice, name="奶奶", birth_year=1940, relation="grandparent",
                                  idempotency_key="k1")
    assert again == first
    with pytest.raises(IdempotencyMismatch):
        service.add_dependant(alice, name="爷爷", birth_year=1940, relation="grandparent", idempotency_key="k1")
    dependants = [m for m in store.list_members(alice.household_id) if m.id.startswith("dep_")]
    assert dependants == [first]


def test_dependants_per_household_are_limited(service):
    alice = verified(service, "alice")
    for i in range(MAX_DEPENDANTS_PER_HOUSEHOLD):
        service.add_dependant(alice, name=f"成员{i}", birth_year=2000, relation="child", idempotency_key=None)
    with pytest.raises(LimitExceeded):
        service.add_dependant(alice, name="多一个", birth_year=2000, relation="child", idempotency_key=None)


# --- relatives and transfer targets ------------------------------------------------------------


@pytest.fixture
def families(service):
    alice = verified(service, "alice", building="1", room="101")
    alice_son = verified(service, "son", building="1", room="101")
    grandma = verified(service, "grandma", building="2", room="202")
    stranger = verified(service, "stranger", building="3", room="303")
    return alice, alice_son, grandma, stranger


def test_one_sided_declaration_is_not_a_relation(service, families):
    alice, _, grandma, _ = families
    declaration, created, mutual = service.declare_relative(alice, grandma.household_id, "parent")
    assert created and not mutual
    assert not service.are_relatives(alice.household_id, grandma.household_id)
    _, created, mutual = service.declare_relative(grandma, alice.household_id, "child")
    assert created and mutual
    assert service.are_relatives(alice.household_id, grandma.household_id)
    assert service.are_relatives(grandma.household_id, alice.household_id)


def test_declaring_again_is_a_no_op_and_another_relation_a_conflict(service, families):
    alice, _, grandma, _ = families
    service.declare_relative(alice, grandma.household_id, "parent")
    _, created, _ = service.declare_relative(alice, grandma.household_id, "parent")
    assert not created
    with pytest.raises(AlreadyExists):
        service.declare_relative(alice, grandma.household_id, "sibling")


def test_declaring_own_or_unknown_household(service, families):
    alice = families[0]
    with pytest.raises(BusinessRuleViolation) as own:
        service.declare_relative(alice, alice.household_id, "parent")
    assert own.value.code == "OWN_HOUSEHOLD"
    # Answered as for any household: nothing tells whether an id is registered.
    declaration, created, mutual = service.declare_relative(alice, "hh_nowhere", "parent")
    assert created and not mutual


def test_household_view_shows_mutual_flags_and_incoming_requests(service, families):
    alice, _, grandma, stranger = families
    service.declare_relative(alice, grandma.household_id, "parent")
    service.declare_relative(grandma, alice.household_id, "child")
    service.declare_relative(stranger, alice.household_id, "other")
    view = service.household(alice)
    assert view["relatives"] == [{"household_id": grandma.household_id, "relation": "parent", "mutual": True,
                                  "declared_at": clock.isoformat(T0)}]
    assert [r["household_id"] for r in view["relative_requests"]] == [stranger.household_id]


def test_withdrawing_a_declaration_ends_the_relation(service, families):
    alice, _, grandma, _ = families
    service.declare_relative(alice, grandma.household_id, "parent")
    service.declare_relative(grandma, alice.household_id, "child")
    service.withdraw_relative(grandma, alice.household_id)
    assert not service.are_relatives(alice.household_id, grandma.household_id)
    with pytest.raises(NotFound):
        service.withdraw_relative(grandma, alice.household_id)


def test_transfer_targets(service, families):
    alice, son, grandma, stranger = families
    assert transfer_target(alice, {"pool": True}, service) == "pool"
    assert transfer_target(alice, {"household_id": alice.household_id}, service) == f"household:{alice.household_id}"
    assert transfer_target(alice, {"resident_id": son.resident_id}, service) == f"resident:{son.resident_id}"
    assert transfer_target(alice, {"resident_id": alice.resident_id}, service) == f"resident:{alice.resident_id}"
    with pytest.raises(NotRelative):
        transfer_target(alice, {"household_id": grandma.household_id}, service)
    with pytest.raises(NotRelative):
        transfer_target(alice, {"resident_id": grandma.resident_id}, service)
    service.declare_relative(alice, grandma.household_id, "parent")
    with pytest.raises(NotRelative):  # still one-sided
        transfer_target(alice, {"household_id": grandma.household_id}, service)
    service.declare_relative(grandma, alice.household_id, "child")
    assert transfer_target(alice, {"household_id": grandma.household_id}, service) == \
        f"household:{grandma.household_id}"
    assert transfer_target(alice, {"resident_id": grandma.resident_id}, service) == \
        f"resident:{grandma.resident_id}"
    with pytest.raises(NotRelative):
        transfer_target(alice, {"resident_id": stranger.resident_id}, service)


def test_transfer_target_unknown_ids_and_dependants_are_not_found(service, families):
    alice = families[0]
    dependant = service.add_dependant(alice, name="奶奶", birth_year=1940, relation="grandparent",
                                      idempotency_key=None)
    for to in ({"resident_id": "res_nobody"}, {"resident_id": dependant.id}):
        with pytest.raises(NotFound):
            transfer_target(alice, to, service)
    # An unknown household is answered like an unrelated one (outside testing: 404 vs 422 told
    # strangers which flats were registered).
    with pytest.raises(NotRelative):
        transfer_target(alice, {"household_id": "hh_nowhere"}, service)


def test_transfer_target_refuses_rejected_residents_of_own_household(service, families):
    alice = families[0]
    mallory = register(service, "mallory", building="1", room="101")
    service.reject("boss", mallory.id, "不是本户")
    with pytest.raises(NotRelative):
        transfer_target(alice, {"resident_id": mallory.id}, service)


@pytest.mark.parametrize("to", [
    None, "pool", [], {}, {"pool": False}, {"pool": "true"}, {"household_id": ""}, {"household_id": 5},
    {"resident_id": "r" * 101}, {"household_id": "hh_1", "pool": True},
    {"household_id": "hh_1", "resident_id": "res_1"}, {"account": "pool"},
])
def test_transfer_target_malformed(service, families, to):
    with pytest.raises(ValidationError) as error:
        transfer_target(families[0], to, service)
    assert any(field == "to" or field.startswith("to.") for field in error.value.details["fields"])


def test_directory_knows_household_members_but_not_rejected_claimants(service):
    alice = verified(service, "alice")
    grandma = service.add_dependant(alice, name="奶奶", birth_year=1940, relation="grandparent",
                                    idempotency_key=None)
    mallory = register(service, "mallory")
    service.reject("boss", mallory.id, "不是本户")
    elsewhere = verified(service, "bob", room="999")
    directory = service
    assert directory.has_member(alice.household_id, alice.resident_id)
    assert directory.has_member(alice.household_id, grandma.id)
    assert not directory.has_member(alice.household_id, mallory.id)
    assert not directory.has_member(alice.household_id, elsewhere.resident_id)
    assert not directory.has_member(alice.household_id, "dep_unknown")
    assert not directory.has_member(None, grandma.id)


# --- roster import -------------------------------------------------------------------------------


def _roster(*phones, building="7"):
    from functions.identity.roster import RosterRow

    return [RosterRow(i + 2, f"居民{i}", phone, building, "1", str(100 + i // 2), 1960) for i, phone in enumerate(phones)]


def test_import_checks_phones_against_residents_first_and_writes_nothing_when_one_is_taken(service, store, ledger):
    from functions.identity.roster import ImportInvalid

    service.register(Caller(openid="x"), name="X", phone="13900000009", building="1", unit="1", room="1",
                     birth_year=1980)
    before = dict(store.members)
    with pytest.raises(ImportInvalid) as error:
        service.import_residents("admin", _roster("13900000001", "13900000009"))
    assert error.value.details["rows"] == [{"row": 3, "errors": {"phone": "已有居民使用该手机号（已登记或已导入）"}}]
    assert store.members == before and ledger.granted == {}


def test_import_groups_by_flat_and_grants_each_new_household_once(service, store, ledger):
    result = service.import_residents("admin", _roster("13900000001", "13900000002", "13900000003"))
    assert (result.imported, result.households, result.new_households) == (3, 2, 2)
    assert sorted(ledger.granted.values()) == [300, 300]
    imported = [m for m in store.members.values() if m.import_id]
    assert len(imported) == 3 and all(m.status == "verified" and m.openid == "" for m in imported)
    again = service.import_residents("admin", _roster("13900000001", "13900000002", "13900000003"))
    assert again.imported == 3 and len([m for m in store.members.values() if m.import_id]) == 3


def test_registration_takes_over_the_imported_record_at_the_same_flat_only(service, store):
    from functions.identity.model import ImportedElsewhere

    service.import_residents("admin", _roster("13900000001"))
    with pytest.raises(ImportedElsewhere):
        service.register(Caller(openid="a"), name="A", phone="13900000001", building="8", unit="1", room="100",
                         birth_year=1960)
    claimed = service.register(Caller(openid="b"), name="A", phone="13900000001", building="7号楼", unit="1",
                               room="100室", birth_year=1960)
    assert claimed.status == "verified" and claimed.openid == "b" and claimed.import_id
    assert store.get_login("b").resident_id == claimed.id


def test_import_refuses_more_residents_in_one_flat_than_one_transaction_holds(service, store):
    from functions.identity.roster import ImportInvalid, RosterRow
    from functions.identity.service import MAX_PER_FLAT

    rows = [RosterRow(i + 2, "居民", f"139{i:08d}", "7", "1", "101", 1960) for i in range(MAX_PER_FLAT + 2)]
    with pytest.raises(ImportInvalid) as error:
        service.import_residents("admin", rows)
    assert [r["row"] for r in error.value.details["rows"]] == [MAX_PER_FLAT + 2, MAX_PER_FLAT + 3]
    assert store.members == {}


def test_a_households_building_is_read_once_per_warm_function_and_a_miss_is_not_kept(service, store):
    resident = register(service, "alice", building="3幢", unit="1单元", room="502室")
    reads = []
    real = store.get_household

    def counted(household_id, consistent=True):
        reads.append((household_id, consistent))
        return real(household_id, consistent)

    store.get_household = counted
    assert service.building_of(resident.household_id) == "3"
    assert service.building_of(resident.household_id) == "3"
    assert reads == [(resident.household_id, False)]   # one eventually consistent read, then kept
    assert service.building_of("hh_unknown") is None and service.building_of("hh_unknown") is None
    assert len(reads) == 3                             # nothing kept of a household not found
