"""Identity use cases: registration, households and dependants, relatives, verification, and
what other domains may ask about people (through the ports the composition root hands them).

Plain Python over the ports of ``ports.py``: an ``IdentityStore`` (DynamoDB, or the in-memory
twin in tests) and the ledger (starting credits).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Iterable

from functions.core import audit, clock
from functions.core.errors import (
    AlreadyExists, BusinessRuleViolation, Conflict, Forbidden, IdempotencyMismatch, InvalidState, NotFound,
    NotRelative, NotVerified,
)
from functions.core.events import DomainEvent
from functions.core.ids import content_hash, derived_id, new_id
from functions.core.caller import Caller
from functions.core.observability import logger, openid_hash
from functions.core.validation import field_error
from functions.identity.model import (
    PENDING, REJECTED, ROLE_RESIDENT, ROLES, VERIFIED, ActingFor, Address, AgeRestricted, Dependant, Household,
    ImportedElsewhere, InvalidProxy, Login, Member, NotRegistered, RelativeDeclaration, Resident, address_key, age_in, effective_roles,
    household_head, may_be_served_by_proxy, remote_household_key, reject_changes, rejected, reputation_change,
    role_in_household, split_household_key, verified, verify_changes,
)
from functions.identity.ports import IdentityStore, PhoneHasher, StartingLedger
from functions.identity.views import declaration_view, dependant_view, household_view, member_summary
from functions.identity.roster import (HouseholdPlan, ImportResult, RosterRow, RowErrors, household_keys,
                                      import_batches, imported_household_id, imported_resident_id,
                                      invalid as roster_invalid, roster_import_id)
from functions.ledger.accounts import ISSUANCE, Account, household_account, resident_account
from functions.ledger.model import Transfer

MAX_DEPENDANTS_PER_HOUSEHOLD = 20
MAX_RELATIVE_DECLARATIONS = 20
_STATUS_RETRIES = 3
# The endpoint's share of a roster import. Bytes: Lambda takes a 6 MB request, and API Gateway
# hands a binary body over base64-encoded (4/3 larger), so 4 MiB of file (5.6 MB encoded) plus
# the event's headers fit. Rows: API Gateway gives up at 29 s. Counted (``make bench``): 2,000
# rows in 2,000 flats are 2,000 phone Queries (8 at a time), 20 BatchGetItem and 200
# TransactWriteItems, ≈ 11.5 s at 5 ms a read and 50 ms a transaction; 3,000 one-resident flats
# ≈ 17 s, leaving room for slower transactions. Larger rosters go through the command line
# (``make import-residents``): same use case, no gateway. A timeout midway loses nothing: the
# same file again completes it.
MAX_ENDPOINT_BYTES = 4 * 1024 * 1024
MAX_ENDPOINT_ROWS = 3_000
PHONE_CHUNK = 200
MAX_PER_FLAT = 20


class ReceiverNotVerified(BusinessRuleViolation):
    code = "RECEIVER_NOT_VERIFIED"
    default_message = "收款人尚未通过社区审核，暂不能接收积分"


STARTING_CREDITS_KIND = "starting_credits"
STARTING_CREDITS_MEMO = "新户启动积分"


def starting_credits_transfer_id(household_id: str) -> str:
    return derived_id("tr", "starting-credits", household_id)


@dataclass(frozen=True)
class IdentityConfig:
    community_id: str
    admin_openids: tuple[str, ...]
    starting_credits: int
    elderly_age: int = 60
    district_id: str = ""   # 通存通兑: "" when the community belongs to no district


MAX_BUILDINGS_KEPT = 20_000   # ~1 MB at most: ten pilot communities' households


class IdentityService:
    def __init__(self, store: IdentityStore, ledger: StartingLedger, config: IdentityConfig,
                 now: Callable[[], datetime] = clock.now, make_id: Callable[[str], str] = new_id,
                 phone_hasher: PhoneHasher | None = None):
        self.store = store
        self.ledger = ledger
        self.config = config
        self._now = now
        self._new_id = make_id
        self._phone_hasher = phone_hasher
        self._buildings: dict[str, str] = {}

    def _phone_hash(self, phone: str) -> str | None:
        return self._phone_hasher(phone) if self._phone_hasher is not None and phone else None

    # --- where households are ---------------------------------------------------------

    def building_of(self, household_id: str) -> str | None:
        """The household's normalised building ("3幢" and "3栋" are one). A household is an
        address and its building is never rewritten, so a warm function keeps what it read
        (matching and statistics ask about the same few thousand households over and over);
        the read itself may be eventually consistent — a household is verified long before
        anyone asks. A miss is not kept: the next call reads again."""
        building = self._buildings.get(household_id)
        if building is not None:
            return building
        household = self.store.get_household(household_id, consistent=False)
        if household is None:
            return None
        if len(self._buildings) >= MAX_BUILDINGS_KEPT:
            self._buildings.clear()
        building = self._buildings[household_id] = household.address.normalised()[0]
        return building

    # --- who is calling ---------------------------------------------------------------

    def login_state(self, openid: str) -> Login:
        """One GetItem: the caller's resident link, status, stored roles and token version."""
        return self.store.get_login(openid) or Login(openid=openid)

    def caller_from(self, login: Login) -> Caller:
        return Caller(openid=login.openid, resident_id=login.resident_id, household_id=login.household_id,
                      status=login.status, roles=self.roles_of(login.openid, login.roles))

    def roles_of(self, openid: str, stored: Iterable[str]) -> frozenset[str]:
        return effective_roles(stored, openid, self.config.admin_openids)

    def resident_of(self, caller: Caller) -> Resident | None:
        if caller.resident_id is None or caller.household_id is None:
            return None
        return self.store.get_resident(caller.household_id, caller.resident_id)

    def me(self, caller: Caller) -> Resident:
        resident = self.resident_of(caller)
        if resident is None:
            raise NotRegistered()
        return resident

    # --- registration -----------------------------------------------------------------

    def register(self, caller: Caller, *, name: str, phone: str, building: str, unit: str, room: str,
                 birth_year: int) -> Resident:
        if caller.resident_id is not None:
            raise AlreadyExists("您已登记过居民信息", {"resident_id": caller.resident_id})
        address = Address(building=building, unit=unit, room=room)
        claimed = self._claim_imported(caller, phone, address)
        if claimed is not None:
            return claimed
        at = self._now()
        proposed = self._new_id("hh")  # used only if nobody registered this flat yet
        resident = Resident(
            id=self._new_id("res"), openid=caller.openid, household_id=proposed, name=name, phone=phone,
            address=address, birth_year=birth_year, status=PENDING, roles=frozenset({ROLE_RESIDENT}),
            created_at=at, phone_hash=self._phone_hash(phone))
        household_id = self.store.create_resident(resident, Household(id=proposed, address=address, created_at=at),
                                                  address_key(self.config.community_id, address))
        return replace(resident, household_id=household_id)

    def _claim_imported(self, caller: Caller, phone: str, address: Address) -> Resident | None:
        """The first login registering with an imported resident's phone and address takes that
        record over (verified, its household's credits already there); the same phone at another
        address is refused — the address on record is not told."""
        for found in self.store.residents_with_phone(phone):
            if found.import_id is None or found.openid or found.status != VERIFIED:
                continue
            community = self.config.community_id
            if address_key(community, found.address) != address_key(community, address):
                raise ImportedElsewhere()
            if not self.store.claim_resident(found, caller.openid):
                raise Conflict("该居民记录刚被认领，请重新登录后查看")
            logger.info("imported resident claimed", extra={"audit": True, "action": "resident.claim",
                                                             "resident_id": found.id})
            return replace(found, openid=caller.openid)
        return None

    # --- households and dependants ----------------------------------------------------------

    def household(self, caller: Caller) -> dict[str, Any]:
        """The caller's household with its members and relatives.

        A resident still pending (or rejected) sees only their own entry: anyone can claim an
        address, and the names and birth years of a household (children included) are shown
        only to members the community has verified.
        """
        me = self.me(caller)
        household = self.store.get_household(me.household_id)
        if household is None:  # registration writes both atomically; a missing one is a bug
            raise NotFound("未找到住户")
        view = household_view(household)
        if me.status != VERIFIED:
            view.update(members=[member_summary(me, role_in_household(me, None))], relatives=[], relative_requests=[])
            return view
        members = [m for m in self.store.list_members(household.id)
                   if not (isinstance(m, Resident) and m.status == REJECTED)]
        head = household_head(members)
        view["members"] = [member_summary(m, role_in_household(m, head), head == m.id) if isinstance(m, Resident)
                           else dependant_view(m, role_in_household(m, head)) for m in members]
        declared = self.store.declarations_by(household.id)
        declared_ids = {d.relative_household_id for d in declared}
        incoming = self.store.declarations_of(household.id)
        incoming_ids = {d.household_id for d in incoming}
        view["relatives"] = [declaration_view(d, mutual=None if split_household_key(d.relative_household_id)[0]
                                              else d.relative_household_id in incoming_ids) for d in declared]
        # Households that declared this one and wait for it to declare them back.
        view["relative_requests"] = [
            {"household_id": d.household_id, "relation": d.relation, "declared_at": clock.isoformat(d.created_at)}
            for d in incoming if d.household_id not in declared_ids]
        return view

    def add_dependant(self, caller: Caller, *, name: str, birth_year: int, relation: str,
                      idempotency_key: str | None) -> Dependant:
        me = self._verified_resident(caller)
        fingerprint = content_hash(name, birth_year, relation)
        if idempotency_key is not None:
            dependant_id = derived_id("dep", me.id, idempotency_key)
            existing = self.store.get_member(me.household_id, dependant_id)
            if existing is not None:
                return self._same_dependant(existing, fingerprint)
        else:
            dependant_id = self._new_id("dep")
        dependant = Dependant(id=dependant_id, household_id=me.household_id, name=name, birth_year=birth_year,
                              relation=relation, created_by=me.id, created_at=self._now(),
                              content_hash=fingerprint)
        # The limit is a condition of the write (a count on the household), not a read before it:
        # thirty parallel adds cannot store more than the limit.
        if self.store.create_dependant(dependant, MAX_DEPENDANTS_PER_HOUSEHOLD):
            return dependant
        # A concurrent replay of the same key won the conditional write.
        existing = self.store.get_member(me.household_id, dependant_id)
        if existing is None:  # pragma: no cover - the write just said it exists
            raise Conflict()
        return self._same_dependant(existing, fingerprint)

    @staticmethod
    def _same_dependant(existing: Member, fingerprint: str) -> Dependant:
        if not isinstance(existing, Dependant) or existing.content_hash != fingerprint:
            raise IdempotencyMismatch()
        return existing

    # --- relatives ------------------------------------------------------------------------

    def declare_relative(self, caller: Caller, relative_household_id: str, relation: str,
                         community: str | None = None) -> tuple[RelativeDeclaration, bool, bool | None]:
        """Declare another household as relatives: returns (declaration, created, mutual).

        Declaring again with the same relation is a no-op; with another relation it is a
        conflict (withdraw first) so a stale client cannot silently change it.

        With ``community`` (another community of the district, 通存通兑) the household is
        one of theirs: it cannot be looked up here, so it is stored as declared and checked
        there when credits arrive (each side declares in its own community); ``mutual`` is None.
        """
        me = self._verified_resident(caller)
        if community is not None and community != self.config.community_id:
            if not self.config.district_id:
                raise BusinessRuleViolation("本社区未加入区域通存通兑", {"community": community},
                                            code="NO_DISTRICT")
            relative_household_id = remote_household_key(community, relative_household_id)
        elif relative_household_id == me.household_id:
            raise BusinessRuleViolation("不能把自己的住户登记为亲属", {"household_id": relative_household_id},
                                        code="OWN_HOUSEHOLD")
        # No existence check: whether an id names a registered household is not told to anyone
        # who merely has the id (a declaration of nobody is counted and matches nothing).
        remote = split_household_key(relative_household_id)[0] is not None
        existing = self.store.get_declaration(me.household_id, relative_household_id)
        if existing is None:
            declaration = RelativeDeclaration(household_id=me.household_id,
                                              relative_household_id=relative_household_id, relation=relation,
                                              declared_by=me.id, created_at=self._now())
            if self.store.put_declaration(declaration, MAX_RELATIVE_DECLARATIONS):
                mutual = None if remote else \
                    self.store.get_declaration(relative_household_id, me.household_id) is not None
                return declaration, True, mutual
            existing = self.store.get_declaration(me.household_id, relative_household_id)
            if existing is None:  # pragma: no cover - the write just said it exists
                raise Conflict()
        if existing.relation != relation:
            raise AlreadyExists("已登记为亲属，关系不同；请先解除再登记",
                                {"household_id": relative_household_id, "relation": existing.relation})
        mutual = None if remote else self.store.get_declaration(relative_household_id, me.household_id) is not None
        return existing, False, mutual

    def withdraw_relative(self, caller: Caller, relative_household_id: str) -> None:
        me = self._verified_resident(caller)
        if not self.store.delete_declaration(me.household_id, relative_household_id):
            raise NotFound("未登记该亲属住户", {"household_id": relative_household_id})

    def are_relatives(self, household_id: str, other_household_id: str) -> bool:
        if household_id == other_household_id:
            return True
        return len(self.store.declarations_between(household_id, other_household_id)) == 2

    # --- 亲情代理: proxies for dependants and elderly residents ----------------------------------

    def name_proxy(self, caller: Caller, member_id: str) -> tuple[Resident, bool]:
        """Name a verified resident of the caller's household as its proxy; (resident, newly named)."""
        me = self._verified_resident(caller)
        member = self.member(me.household_id, member_id)
        if member is None:
            raise NotFound("不是本户成员", {"member_id": member_id})
        if not isinstance(member, Resident) or member.status != VERIFIED:
            raise InvalidProxy(details={"member_id": member_id})
        if member.proxy_since is not None:
            return member, False
        named = replace(member, proxy_since=self._now())
        if not self.store.set_proxy(named):
            raise InvalidProxy(details={"member_id": member_id})  # no longer verified meanwhile
        logger.info("proxy named", extra={"audit": True, "action": "household.proxy.name",
                                          "actor": me.id, "member_id": member.id, "household_id": me.household_id})
        return named, True

    def withdraw_proxy(self, caller: Caller, member_id: str) -> None:
        me = self._verified_resident(caller)
        member = self.member(me.household_id, member_id)
        if not isinstance(member, Resident) or member.proxy_since is None:
            raise NotFound("该成员不是本户的亲情代理人", {"member_id": member_id})
        self.store.set_proxy(replace(member, proxy_since=None))
        logger.info("proxy withdrawn", extra={"audit": True, "action": "household.proxy.withdraw",
                                              "actor": me.id, "member_id": member.id,
                                              "household_id": me.household_id})

    def act_for(self, caller: Caller, member_id: str) -> ActingFor:
        """May ``caller`` act for ``member_id`` (``on_behalf_of``)? A named proxy of the member's
        household, or an admin, for a dependant or an elderly resident. Returns who the act is
        made as; 400 for a member that is not there, 403 for anyone else or anyone not served
        through a proxy."""
        own = self.member(caller.household_id, member_id) if caller.household_id else None
        member = own if own is not None else (self._member_anywhere(member_id) if caller.is_admin else None)
        if member is None:
            raise field_error("on_behalf_of", "不是本户成员")
        if member.id == caller.resident_id:
            raise field_error("on_behalf_of", "不能代理自己")
        if not may_be_served_by_proxy(member, self._now().year, self.config.elderly_age):
            raise Forbidden("亲情代理只能为本户的家属或老人代办", {"member_id": member_id})
        me = self.store.get_resident(member.household_id, caller.resident_id) if own is not None else None
        if me is not None and me.status == VERIFIED and me.proxy_since is not None:
            acting_as, proxy_id, by_admin = me.id, me.id, False
        elif caller.is_admin:
            acting_as, proxy_id, by_admin = self._requester_for(member), f"admin:{openid_hash(caller.openid)}", True
        else:
            raise Forbidden("您不是本户的亲情代理人", {"member_id": member_id})
        effective = Caller(openid=caller.openid, resident_id=acting_as, household_id=member.household_id,
                           status=VERIFIED, roles=caller.roles)
        # The proxy act's audit entry is about the member's household: they read it there.
        audit.about(member.household_id, proxy_id=proxy_id)
        return ActingFor(caller=effective, member_id=member.id, proxy_id=proxy_id, by_admin=by_admin)

    def _member_anywhere(self, member_id: str) -> Member | None:
        if not member_id or len(member_id) > 100:
            return None
        found = self.store.find_member(member_id)
        return self.member(found.household_id, found.id) if found is not None else None

    def _requester_for(self, member: Member) -> str:
        """Whom an admin's act for a member is made as: the member, or for a dependant (no
        login) the household's proxy, else its head."""
        if isinstance(member, Resident):
            return member.id
        members = self.store.list_members(member.household_id)
        proxies = sorted((m for m in members if isinstance(m, Resident) and m.proxy_since is not None
                          and m.status == VERIFIED), key=lambda m: (m.proxy_since, m.id))
        chosen = proxies[0].id if proxies else household_head(members)
        if chosen is None:
            raise Forbidden("该住户没有可代办的已认证居民", {"member_id": member.id})
        return chosen

    # --- family rule: minimum age -------------------------------------------------------------

    def check_age(self, caller: Caller, min_age: int) -> None:
        """422 AGE_RESTRICTED below ``min_age`` (0 or less: no restriction). For redeeming and
        converting (``settings.min_redeem_age``)."""
        if min_age <= 0:
            return
        me = self.me(caller)
        if age_in(self._now().year, me.birth_year) < min_age:
            raise AgeRestricted(details={"min_age": min_age})

    # --- reputation, from the request lifecycle's events ---------------------------------------

    def record_reputation(self, event: DomainEvent) -> bool:
        """One event of the ``reputation`` queue: True when it changed a score. Idempotent per
        (request, outcome): the mark and the counters are one transaction."""
        change = reputation_change(event.type, event.subject, event.data)
        if change is None:
            return False
        household = change.household_id
        if household is None:
            found = self.store.find_member(change.resident_id)
            if not isinstance(found, Resident):
                return False  # not a resident of this community (never: volunteers are)
            household = found.household_id
        return self.store.add_reputation(replace(change, household_id=household))
    # --- 通存通兑: what the district domain asks about people -------------------------------

    def phone_hash_of(self, resident: Resident) -> str | None:
        return resident.phone_hash or self._phone_hash(resident.phone)

    def remote_declarations(self, household_id: str, community: str) -> list[str]:
        """Households of ``community`` this household declared relatives (one Query)."""
        out = []
        for declaration in self.store.declarations_by(household_id):
            other, remote = split_household_key(declaration.relative_household_id)
            if other == community:
                out.append(remote)
        return out

    def declared_remote(self, household_id: str, community: str, remote_household_id: str) -> bool:
        """Whether this household declared that household of ``community`` (one GetItem)."""
        return self.store.get_declaration(household_id, remote_household_key(community, remote_household_id)) \
            is not None

    def resident_by_phone_hash(self, phone_hash: str) -> Resident | None:
        """The verified resident with this keyed phone hash, read consistently after the index."""
        for found in self.store.find_by_phone_hash(phone_hash):
            current = self.store.get_resident(found.household_id, found.id)
            if current is not None and current.status == VERIFIED and current.phone_hash == phone_hash:
                return current
        return None

    # --- lookups for other domains --------------------------------------------------------

    def find_member(self, member_id: str) -> Member | None:
        return self.store.find_member(member_id)

    def household_member(self, household_id: str, member_id: str) -> Member | None:
        """A member of one household (consistent read): e.g. a request's beneficiary."""
        return self.store.get_member(household_id, member_id)

    def resident(self, resident_id: str) -> Resident:
        """A resident by id; NotFound for unknown ids and for dependants."""
        found = self.store.find_member(resident_id)
        if not isinstance(found, Resident):
            raise NotFound("未找到该居民", {"resident_id": resident_id})
        # The id index is eventually consistent; decisions use the table's current item.
        current = self.store.get_resident(found.household_id, found.id)
        if current is None:  # pragma: no cover - residents are never deleted
            raise NotFound("未找到该居民", {"resident_id": resident_id})
        return current

    def member(self, household_id: str | None, member_id: str | None) -> Member | None:
        """A resident or dependant of this household (one consistent GetItem); rejected
        residents are no members — their claim to live there was refused."""
        if not household_id or not member_id or len(member_id) > 100:
            return None
        found = self.store.get_member(household_id, member_id)
        if isinstance(found, Resident) and found.status == REJECTED:
            return None
        return found

    def has_member(self, household_id: str | None, member_id: str | None) -> bool:
        return self.member(household_id, member_id) is not None

    # --- who may receive credits (the ledger's ``AccountOwners`` port) --------------------
    #
    # Only: the caller's own household, a resident of it, a household that declared the
    # caller's household as relatives AND was declared back (or a resident of such a
    # household). One-sided declarations count for nothing: otherwise anyone could route
    # credits to a stranger. Cost: own household 0 reads; another household 1 BatchGetItem
    # (both declarations), plus 1 GetItem only to tell an unknown household (404) from an
    # unrelated one (422); a resident id adds 1 Query on the member-id index first.

    def recipient(self, caller: Caller, kind: str, target_id: str) -> str:
        if caller.household_id is None:
            raise Forbidden("请先登记居民信息")
        if kind == "household_id":
            self._require_relatives(caller.household_id, target_id)
            return household_account(target_id)
        member = self.store.find_member(target_id)
        if not isinstance(member, Resident):
            raise NotFound("未找到该居民", {"resident_id": target_id})
        if member.status == REJECTED:
            # A rejected claim to live somewhere makes nobody a member of that household.
            raise NotRelative(details={"resident_id": target_id})
        if member.status != VERIFIED:
            # Anyone may claim an address; credits go only to people the community has checked.
            raise ReceiverNotVerified(details={"resident_id": target_id})
        self._require_relatives(caller.household_id, member.household_id)
        return resident_account(member.id)

    def _require_relatives(self, own_household: str, other_household: str) -> None:
        # Unknown and unrelated households get the same answer: nothing tells a stranger which
        # ids are registered households.
        if not self.are_relatives(own_household, other_household):
            raise NotRelative(details={"household_id": other_household})

    def shares_household(self, caller: Caller, resident_id: str) -> bool:
        return self.has_member(caller.household_id, resident_id)

    def exists(self, account: Account) -> bool:
        if account.kind == "resident":
            return isinstance(self.find_member(account.owner or ""), Resident)
        if account.kind == "household":
            return self.store.get_household(account.owner or "") is not None
        return False

    # --- administration -------------------------------------------------------------------

    def list_residents(self, status: str, limit: int,
                       cursor: dict[str, Any] | None) -> tuple[list[Resident], dict[str, Any] | None]:
        return self.store.list_residents_by_status(status, limit, cursor)

    def verify(self, actor: str, resident_id: str) -> Resident:
        """Verify a resident; the household's first verified member brings its starting credits.

        The status change, the household's "granted" mark and the starting-credits transfer are
        one transaction: a crash leaves either all of them or none, never a verified household
        without its credits. Two members verified at once: the mark's condition lets one grant;
        the other decides again on what is stored and verifies without a grant.
        """
        resident = self.resident(resident_id)
        for _ in range(_STATUS_RETRIES):
            household = self.store.get_household(resident.household_id)
            owed = household is not None and household.credits_granted_at is None
            changes = verify_changes(resident.status)
            if not changes and not owed:
                return resident
            now = self._now()
            updated = verified(resident, actor, now) if changes else resident
            if changes and updated.phone_hash is None:
                updated = replace(updated, phone_hash=self._phone_hash(updated.phone))
            writes = self.store.status_writes(updated, resident.status if changes else None, now if owed else None)
            try:
                self._commit_verification(resident.household_id, owed, actor, writes)
                return updated
            except InvalidState:
                resident = self.resident(resident_id)  # changed meanwhile: decide again on what is stored
        raise Conflict("操作冲突，请重试")

    def _commit_verification(self, household_id: str, owed: bool, actor: str, writes: list[Any]) -> None:
        self.ledger.execute(self._starting_credits(household_id, owed, actor), also=writes)

    def _starting_credits(self, household_id: str, owed: bool, actor: str, *, unseen: bool = False) -> list[Transfer]:
        """The starting-credits transfer a household is owed (none or one), to commit with the
        writes that mark it granted. ``unseen``: a household this call creates (no transfer can
        exist for it: no read)."""
        transfer_id = starting_credits_transfer_id(household_id)
        # A household granted before the mark joined the transfer's transaction (or whose
        # configured amount changed since) has the transfer already: the mark alone completes it.
        if not owed or self.config.starting_credits <= 0 or \
                (not unseen and self.ledger.get_transfer(transfer_id) is not None):
            return []
        return [Transfer(transfer_id, ISSUANCE, household_account(household_id), "service",
                         self.config.starting_credits, STARTING_CREDITS_KIND, STARTING_CREDITS_MEMO, actor)]

    # --- roster import (staff's spreadsheet → verified residents) ---------------------------
    #
    # All or nothing for the rows: every row is checked (in the file, then the phones against
    # the residents already stored) before anything is written. The writes cannot be one
    # transaction (2,000 households are ~14,000 items; DynamoDB takes 100), so they go in
    # batches of whole households, one transaction each, with ids derived from the import
    # (the rows' content) and the row: a batch either committed entirely or not at all, and a
    # rerun of the same file finds the committed batches (their conditional puts refuse) and
    # writes only the rest. Never a duplicate resident, household or starting-credits transfer.

    def import_residents(self, actor: str, rows: list[RosterRow], *, dry_run: bool = False,
                         progress: Callable[[str, int], None] | None = None) -> ImportResult:
        tick = progress or (lambda stage, n: None)
        import_id = roster_import_id(self.config.community_id, rows)
        crowded = [RowErrors(row.row, {"room": f"同一房号最多导入 {MAX_PER_FLAT} 人"})
                   for flat in household_keys(self.config.community_id, rows).values() for row in flat[MAX_PER_FLAT:]]
        if crowded:  # a household's rows go in one transaction (DynamoDB: 100 items)
            raise roster_invalid(crowded)
        problems = []
        # In chunks, so the progress bar moves while the phones are looked up.
        for start in range(0, len(rows), PHONE_CHUNK):
            chunk = rows[start:start + PHONE_CHUNK]
            found = self.store.residents_with_phones([row.phone for row in chunk])
            for row in chunk:
                mine = imported_resident_id(import_id, row.row)
                if any(r.id != mine and r.status != REJECTED for r in found.get(row.phone, ())):
                    problems.append(RowErrors(row.row, {"phone": "已有居民使用该手机号（已登记或已导入）"}))
            tick("check", len(chunk))
        if problems:
            raise roster_invalid(problems)
        plans = self._import_plan(import_id, rows)
        result = ImportResult(import_id, len(rows), len(plans), sum(p.new for p in plans), dry_run,
                              len(import_batches(plans)))
        if dry_run:
            return result
        now = self._now()
        for batch in import_batches(plans):
            # A batch whose new households are all at their addresses committed in an earlier
            # run (a batch is one transaction): nothing to send.
            if not all(p.new and p.written for p in batch):
                self._import_batch(actor, import_id, batch, now)
            tick("write", sum(len(p.rows) for p in batch))
        logger.info("roster imported", extra={"import_id": import_id, "residents": result.imported,
                                               "households": result.households, "batches": result.batches})
        return result

    def _import_plan(self, import_id: str, rows: list[RosterRow]) -> list[HouseholdPlan]:
        groups = household_keys(self.config.community_id, rows)
        at_address = self.store.households_at(list(groups))
        ours = {key: imported_household_id(import_id, key) for key in groups}
        joined = [hid for key, hid in at_address.items() if hid != ours[key]]
        existing = self.store.get_households(joined) if joined else {}
        plans = []
        for key, members in groups.items():
            found = at_address.get(key)
            if found is None or found == ours[key]:
                plans.append(HouseholdPlan(key, ours[key], True, True, tuple(members), written=found is not None))
            else:
                household = existing.get(found)
                owed = household is not None and household.credits_granted_at is None
                plans.append(HouseholdPlan(key, found, False, owed, tuple(members)))
        return plans

    def _import_batch(self, actor: str, import_id: str, batch: list[HouseholdPlan], now: datetime) -> None:
        commands: list[Transfer] = []
        writes: list[Any] = []
        for plan in batch:
            residents = [Resident(
                id=imported_resident_id(import_id, row.row), openid="", household_id=plan.household_id,
                name=row.name, phone=row.phone, address=row.address, birth_year=row.birth_year, status=VERIFIED,
                roles=frozenset({ROLE_RESIDENT}), created_at=now, reviewed_at=now, reviewed_by=actor,
                phone_hash=self._phone_hash(row.phone), import_id=import_id) for row in plan.rows]
            household = Household(plan.household_id, plan.rows[0].address, now, credits_granted_at=now) \
                if plan.new else None
            writes += self.store.import_writes(residents, household, plan.address_key,
                                               now if plan.owed and not plan.new else None)
            commands += self._starting_credits(plan.household_id, plan.owed, actor, unseen=plan.new)
        try:
            self.ledger.execute(commands, also=writes)
        except InvalidState:
            # A put refused: this batch committed in an earlier (interrupted) run, or someone
            # registered at one of its flats meanwhile. Only the first is fine to skip.
            first = batch[0]
            if self.store.get_member(first.household_id, imported_resident_id(import_id, first.rows[0].row)) is None:
                raise Conflict("导入期间名单中的住户有变动，请重新运行导入（已导入的部分不会重复）",
                               {"rows": [r.row for p in batch for r in p.rows]}) from None

    def reject(self, actor: str, resident_id: str, reason: str) -> Resident:
        resident = self.resident(resident_id)
        for _ in range(_STATUS_RETRIES):
            if not reject_changes(resident.status):
                return resident
            updated = rejected(resident, actor, self._now(), reason)
            if self.store.update_resident_status(updated, expected_status=resident.status):
                return updated
            resident = self.resident(resident_id)
        raise Conflict("操作冲突，请重试")

    def role_grant(self, openid: str, role: str) -> Any:
        """A write that gives the login of ``openid`` a stored role, joining the caller's
        transaction (``add_to(transaction)``): rewards makes a merchant's owner a ``merchant``
        in the transaction that creates the merchant. The owner need not be a resident."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role}")
        return self.store.grant_role(openid, role)

    def set_roles(self, resident_id: str, roles: Iterable[str]) -> Resident:
        """Replace a resident's stored roles; ``resident`` is always kept. Configured admins stay
        admins whatever is stored (the deployment config decides for them)."""
        resident = self.resident(resident_id)
        wanted = frozenset(roles) | {ROLE_RESIDENT}
        if wanted != resident.roles:
            self.store.set_roles(resident, wanted)
        return replace(resident, roles=wanted)

    # --- helpers --------------------------------------------------------------------------

    def _verified_resident(self, caller: Caller) -> Resident:
        me = self.me(caller)
        if me.status != VERIFIED:
            raise NotVerified()
        return me

