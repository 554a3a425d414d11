"""DynamoDB adapter of the identity store (PynamoDB).

Tables (names ``timebank-<community>-<logical>``):

- ``logins``            openid → resident link, status, stored roles, token version. Authentication
                        reads exactly this one item per call.
- ``household-members`` (household_id, member_id): residents and dependants of a household, so a
                        household is ONE strongly consistent Query. Indexes: ``by-member-id``
                        (find a member from its id alone) and ``by-status`` (residents only — a
                        sparse index, dependants have no status — for the admin review queue).
                        ``by-phone-hash`` (sparse: residents whose keyed phone hash is known) finds
                        the same person after a move to another community of the district (通存通兑).
                        ``by-phone`` (sparse, keys only: written once per resident, never on a
                        status change) checks a roster import's phones against the residents
                        already there and finds the imported record a registration takes over.
- ``households``        household_id (derived from the normalised address) → address as first
                        registered, starting-credits mark.
- ``household-relatives`` (household_id, relative_household_id): one side's declaration; index
                        ``by-relative`` lists who declared a household.
- ``reputation-marks``  ``<resident>#<request>#<outcome>``: each outcome of a request counted once
                        in the resident's reputation counters (kept on the member item, ADDed in
                        the same transaction as the mark).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from functions.adapters.dynamo import (CONFLICT_RETRIES, Put, Update, bad_cursor, cancelled_by_condition,
                                       condition_failed, dt as _dt, index_meta, iso as _iso, make_meta,
                                       new_transaction, only_conflicts, retry_on_conflict, table)
from functions.core.errors import AlreadyExists, Conflict, LimitExceeded
from functions.core import clock
from functions.identity.model import (
    KIND_DEPENDANT, KIND_RESIDENT, NO_SHOW, ROLE_RESIDENT, VERIFIED, Address, Dependant, Household, Login, Member,
    RelativeDeclaration, Reputation, ReputationChange, Resident,
)


PHONE_LOOKUP_THREADS = 8

# --- models ----------------------------------------------------------------------------------

REVOCATION_KEY = "#revocation-version"   # WeChat openids are [A-Za-z0-9_-]: no login has this key
REVOCATION_CACHE_SECONDS = 15.0          # a warm function re-reads the counter at most this often
_revocation: dict[str, float] = {"version": 0.0, "read_at": float("-inf")}


def forget_revocation() -> None:
    """This process wrote a revocation: its next authenticated call reads the counter again."""
    _revocation["read_at"] = float("-inf")


@table
class LoginItem(Model):
    Meta = make_meta("logins")
    openid = UnicodeAttribute(hash_key=True)
    resident_id = UnicodeAttribute(null=True)
    household_id = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)
    roles = UnicodeSetAttribute(null=True)
    token_version = NumberAttribute(null=True)


class MemberByMemberId(GlobalSecondaryIndex):
    Meta = index_meta("by-member-id")

    member_id = UnicodeAttribute(hash_key=True)


class MemberByPhoneHash(GlobalSecondaryIndex):
    Meta = index_meta("by-phone-hash")

    phone_hash = UnicodeAttribute(hash_key=True)


class MemberByPhone(GlobalSecondaryIndex):
    """Residents by phone (sparse: dependants have none; keys only, so it is written once per
    resident and never on a status change): a roster import checks its phones against it and a
    registration finds the imported record it takes over."""
    Meta = index_meta("by-phone", projection="keys")

    phone = UnicodeAttribute(hash_key=True)


class MemberByStatus(GlobalSecondaryIndex):
    Meta = index_meta("by-status")

    status = UnicodeAttribute(hash_key=True)
    # Member ids are time-ordered (``core.ids.new_id``): oldest first, and unique unlike a timestamp.
    member_id = UnicodeAttribute(range_key=True)


@table
class MemberItem(Model):
    Meta = make_meta("household-members")
    household_id = UnicodeAttribute(hash_key=True)
    member_id = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()
    name = UnicodeAttribute()
    birth_year = NumberAttribute()
    created_at = UnicodeAttribute()
    # residents
    openid = UnicodeAttribute(null=True)
    phone = UnicodeAttribute(null=True)
    building = UnicodeAttribute(null=True)
    unit = UnicodeAttribute(null=True)
    room = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)
    roles = UnicodeSetAttribute(null=True)
    reviewed_at = UnicodeAttribute(null=True)
    reviewed_by = UnicodeAttribute(null=True)
    rejection_reason = UnicodeAttribute(null=True)
    phone_hash = UnicodeAttribute(null=True)
    import_id = UnicodeAttribute(null=True)   # imported from a roster, unclaimed while openid is null
    # dependants
    relation = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute(null=True)
    content_hash = UnicodeAttribute(null=True)
    # family role and reputation (residents)
    proxy_since = UnicodeAttribute(null=True)
    rep_completed = NumberAttribute(null=True)
    rep_no_shows = NumberAttribute(null=True)
    rep_rating_sum = NumberAttribute(null=True)
    rep_rating_count = NumberAttribute(null=True)

    by_member_id = MemberByMemberId()
    by_status = MemberByStatus()
    by_phone_hash = MemberByPhoneHash()
    by_phone = MemberByPhone()


@table
class HouseholdItem(Model):
    Meta = make_meta("households")
    household_id = UnicodeAttribute(hash_key=True)
    building = UnicodeAttribute()
    unit = UnicodeAttribute()
    room = UnicodeAttribute()
    created_at = UnicodeAttribute()
    credits_granted_at = UnicodeAttribute(null=True)
    # Counted in the transaction that adds one, so a limit holds under concurrency.
    dependants = NumberAttribute(null=True)
    relatives = NumberAttribute(null=True)


@table
class HouseholdAddressItem(Model):
    """Which household a flat's residents join (key: ``model.address_key``, never exposed)."""
    Meta = make_meta("household-addresses")
    address_key = UnicodeAttribute(hash_key=True)
    household_id = UnicodeAttribute()


class RelativeByRelative(GlobalSecondaryIndex):
    Meta = index_meta("by-relative")

    relative_household_id = UnicodeAttribute(hash_key=True)
    household_id = UnicodeAttribute(range_key=True)


@table
class RelativeItem(Model):
    Meta = make_meta("household-relatives")
    household_id = UnicodeAttribute(hash_key=True)
    relative_household_id = UnicodeAttribute(range_key=True)
    relation = UnicodeAttribute()
    declared_by = UnicodeAttribute()
    created_at = UnicodeAttribute()

    by_relative = RelativeByRelative()


@table
class ReputationMarkItem(Model):
    Meta = make_meta("reputation-marks")
    mark = UnicodeAttribute(hash_key=True)
    resident_id = UnicodeAttribute()
    request_id = UnicodeAttribute()
    outcome = UnicodeAttribute()
    counted_at = UnicodeAttribute()


# --- conversions -----------------------------------------------------------------------------


def _member(record: MemberItem) -> Member:
    if record.kind == KIND_RESIDENT:
        return Resident(
            id=record.member_id, openid=record.openid or "", household_id=record.household_id, name=record.name,
            phone=record.phone or "", address=Address(record.building or "", record.unit or "", record.room or ""),
            birth_year=int(record.birth_year), status=record.status or "", roles=frozenset(record.roles or ()),
            created_at=_dt(record.created_at), reviewed_at=_dt(record.reviewed_at),
            reviewed_by=record.reviewed_by, rejection_reason=record.rejection_reason,
            proxy_since=_dt(record.proxy_since),
            reputation=Reputation(int(record.rep_completed or 0), int(record.rep_no_shows or 0),
                                  int(record.rep_rating_sum or 0), int(record.rep_rating_count or 0)),
            phone_hash=record.phone_hash, import_id=record.import_id)
    return Dependant(
        id=record.member_id, household_id=record.household_id, name=record.name,
        birth_year=int(record.birth_year), relation=record.relation or "", created_by=record.created_by or "",
        created_at=_dt(record.created_at), content_hash=record.content_hash or "")


def _household(record: HouseholdItem) -> Household:
    return Household(id=record.household_id, address=Address(record.building, record.unit, record.room),
                     created_at=_dt(record.created_at), credits_granted_at=_dt(record.credits_granted_at))


def _declaration(record: RelativeItem) -> RelativeDeclaration:
    return RelativeDeclaration(household_id=record.household_id,
                               relative_household_id=record.relative_household_id, relation=record.relation,
                               declared_by=record.declared_by, created_at=_dt(record.created_at))


class RoleGrant:
    """Adds a stored role to a login, as a write of another domain's transaction."""

    def __init__(self, openid: str, role: str):
        self.openid, self.role = openid, role

    def add_to(self, transaction: TransactWrite) -> None:
        transaction.update(LoginItem(self.openid), actions=[LoginItem.roles.add({self.role})])


# --- the store -------------------------------------------------------------------------------


class DynamoIdentityStore:
    def _tx(self) -> TransactWrite:
        return new_transaction()

    # logins

    def get_login(self, openid: str) -> Login | None:
        try:
            record = LoginItem.get(openid, consistent_read=True)
        except LoginItem.DoesNotExist:
            return None
        return Login(openid=record.openid, resident_id=record.resident_id, household_id=record.household_id,
                     status=record.status, roles=frozenset(record.roles or ()),
                     token_version=int(record.token_version or 0))

    def grant_role(self, openid: str, role: str) -> RoleGrant:
        return RoleGrant(openid, role)

    def bump_token_version(self, openid: str) -> int:
        # Revocation first: a crash between the two leaves old tokens on the login read (safe).
        self.bump_revocation()
        record = LoginItem(openid)
        record.update(actions=[LoginItem.token_version.add(1)])
        return int(record.token_version)

    # The community's revocation version: one counter item on the logins table (a key no WeChat
    # openid has). Every logout and every downgrade (status away from verified, roles set) adds
    # one in the same transaction; a token issued before the current version is checked against
    # its login item again (identity.auth).
    def revocation_version(self, max_age: float = REVOCATION_CACHE_SECONDS) -> int:
        # The community clock, not time.monotonic(): on AWS the same, and under a test's fake clock
        # the cache ages with the scenario's time instead of the machine's load.
        now = clock.now().timestamp()
        if max_age <= 0 or not 0 <= now - _revocation["read_at"] <= max_age:
            try:
                version = int(LoginItem.get(REVOCATION_KEY, consistent_read=True).token_version or 0)
            except LoginItem.DoesNotExist:
                version = 0
            _revocation.update(version=version, read_at=now)
        return int(_revocation["version"])

    def bump_revocation(self) -> None:
        LoginItem(REVOCATION_KEY).update(actions=[LoginItem.token_version.add(1)])
        forget_revocation()

    @staticmethod
    def revocation_write() -> "Update":
        forget_revocation()
        return Update(LoginItem(REVOCATION_KEY), [LoginItem.token_version.add(1)], None)

    # residents

    def create_resident(self, resident: Resident, household: Household, address_key: str) -> str:
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                found = HouseholdAddressItem.get(address_key, consistent_read=True)
                household_id = found.household_id
            except HouseholdAddressItem.DoesNotExist:
                found, household_id = None, household.id
            try:
                self._register(resident, household_id, household if found is None else None, address_key)
                return household_id
            except TransactWriteError as error:
                login = self.get_login(resident.openid)
                if login is not None and login.resident_id is not None:
                    raise AlreadyExists("您已登记过居民信息", {"resident_id": login.resident_id}) from None
                # Two first registrations of one flat at once: the other created its household
                # (our address entry's condition failed) or touched the same items (a conflict).
                # Nothing was written: read the address again and join that household.
                if attempt == CONFLICT_RETRIES:
                    raise Conflict("操作冲突，请重试") from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _register(self, resident: Resident, household_id: str, new_household: Household | None,
                  address_key: str) -> None:
        record = MemberItem(
            household_id, resident.id, kind=KIND_RESIDENT, name=resident.name,
            birth_year=resident.birth_year, created_at=_iso(resident.created_at), openid=resident.openid,
            phone=resident.phone, building=resident.address.building, unit=resident.address.unit,
            room=resident.address.room, status=resident.status, roles=set(resident.roles) or None,
            phone_hash=resident.phone_hash)
        with self._tx() as tx:
            tx.update(LoginItem(resident.openid), actions=[
                LoginItem.resident_id.set(resident.id),
                LoginItem.household_id.set(household_id),
                LoginItem.status.set(resident.status),
                LoginItem.roles.add({ROLE_RESIDENT}),
            ], condition=LoginItem.resident_id.does_not_exist())
            tx.save(record, condition=MemberItem.member_id.does_not_exist())
            if new_household is None:
                tx.condition_check(HouseholdItem, household_id, condition=HouseholdItem.household_id.exists())
            else:
                address = new_household.address
                tx.save(HouseholdItem(household_id, building=address.building, unit=address.unit, room=address.room,
                                      created_at=_iso(new_household.created_at)),
                        condition=HouseholdItem.household_id.does_not_exist())
                tx.save(HouseholdAddressItem(address_key, household_id=household_id),
                        condition=HouseholdAddressItem.address_key.does_not_exist())

    def get_resident(self, household_id: str, resident_id: str, consistent: bool = True) -> Resident | None:
        member = self.get_member(household_id, resident_id, consistent)
        return member if isinstance(member, Resident) else None

    def get_member(self, household_id: str, member_id: str, consistent: bool = True) -> Member | None:
        try:
            return _member(MemberItem.get(household_id, member_id, consistent_read=consistent))
        except MemberItem.DoesNotExist:
            return None

    def find_member(self, member_id: str) -> Member | None:
        for record in MemberItem.by_member_id.query(member_id, limit=1):
            return _member(record)
        return None

    def find_by_phone_hash(self, phone_hash: str) -> list[Resident]:
        """Residents with this keyed phone hash (eventually consistent index read)."""
        return [m for m in (_member(r) for r in MemberItem.by_phone_hash.query(phone_hash, limit=10))
                if isinstance(m, Resident)]

    def residents_with_phone(self, phone: str) -> list[Resident]:
        """Residents registered or imported with this phone: the keys from the index, each item
        then read consistently (the index may lag a write just made)."""
        found = []
        for key in MemberItem.by_phone.query(phone, limit=10):
            current = self.get_resident(key.household_id, key.member_id)
            if current is not None and current.phone == phone:
                found.append(current)
        return found

    def residents_with_phones(self, phones: list[str]) -> dict[str, list[Resident]]:
        """``residents_with_phone`` for many phones: an index has no batch read, so the Queries
        run ``PHONE_LOOKUP_THREADS`` at a time (2,000 phones: ~1.3 s at 5 ms, not 10 s in a row)."""
        from concurrent.futures import ThreadPoolExecutor

        unique = list(dict.fromkeys(phones))
        if len(unique) <= 1:
            return {phone: self.residents_with_phone(phone) for phone in unique}
        with ThreadPoolExecutor(max_workers=min(PHONE_LOOKUP_THREADS, len(unique))) as pool:
            return dict(zip(unique, pool.map(self.residents_with_phone, unique)))

    def households_at(self, address_keys: list[str]) -> dict[str, str]:
        """address key → the household registered there, for those that have one (BatchGetItem
        of 100 keys per call)."""
        return {r.address_key: r.household_id
                for r in HouseholdAddressItem.batch_get(list(dict.fromkeys(address_keys)), consistent_read=True)}

    def get_households(self, household_ids: list[str]) -> dict[str, Household]:
        return {r.household_id: _household(r)
                for r in HouseholdItem.batch_get(list(dict.fromkeys(household_ids)), consistent_read=True)}

    def import_writes(self, residents: list[Resident], new_household: Household | None, address_key: str,
                      grant_mark_at: datetime | None) -> list[Any]:
        """One household's share of an import batch: its residents (each put only if absent),
        and either the new household with its address entry, or — joining a household that
        exists — its "credits granted" mark when this import brings them."""
        writes: list[Any] = [Put(MemberItem(
            r.household_id, r.id, kind=KIND_RESIDENT, name=r.name, birth_year=r.birth_year,
            created_at=_iso(r.created_at), phone=r.phone, building=r.address.building, unit=r.address.unit,
            room=r.address.room, status=r.status, roles=set(r.roles) or None, reviewed_at=_iso(r.reviewed_at),
            reviewed_by=r.reviewed_by, phone_hash=r.phone_hash, import_id=r.import_id),
            MemberItem.member_id.does_not_exist()) for r in residents]
        if new_household is not None:
            address = new_household.address
            writes.append(Put(HouseholdItem(new_household.id, building=address.building, unit=address.unit,
                                            room=address.room, created_at=_iso(new_household.created_at),
                                            credits_granted_at=_iso(new_household.credits_granted_at)),
                              HouseholdItem.household_id.does_not_exist()))
            writes.append(Put(HouseholdAddressItem(address_key, household_id=new_household.id),
                              HouseholdAddressItem.address_key.does_not_exist()))
        elif grant_mark_at is not None:
            household_id = residents[0].household_id
            writes.append(Update(HouseholdItem(household_id), [HouseholdItem.credits_granted_at.set(_iso(grant_mark_at))],
                                 HouseholdItem.household_id.exists() & HouseholdItem.credits_granted_at.does_not_exist()))
        return writes

    def claim_resident(self, resident: Resident, openid: str) -> bool:
        """The login takes over an imported, unclaimed resident (the login gains the link, the
        resident the openid) — only if the login has no resident and the record no login; False
        if the record was claimed meanwhile (``AlreadyExists`` if the login registered)."""
        try:
            with self._tx() as tx:
                tx.update(LoginItem(openid), actions=[
                    LoginItem.resident_id.set(resident.id), LoginItem.household_id.set(resident.household_id),
                    LoginItem.status.set(resident.status), LoginItem.roles.add(set(resident.roles) | {ROLE_RESIDENT}),
                ], condition=LoginItem.resident_id.does_not_exist())
                tx.update(MemberItem(resident.household_id, resident.id), actions=[MemberItem.openid.set(openid)],
                          condition=MemberItem.openid.does_not_exist() & (MemberItem.kind == KIND_RESIDENT))
        except TransactWriteError:
            login = self.get_login(openid)
            if login is not None and login.resident_id is not None:
                raise AlreadyExists("您已登记过居民信息", {"resident_id": login.resident_id}) from None
            return False
        return True

    def list_members(self, household_id: str) -> list[Member]:
        return [_member(r) for r in MemberItem.query(household_id, consistent_read=True)]

    def create_dependant(self, dependant: Dependant, limit: int) -> bool:
        record = MemberItem(
            dependant.household_id, dependant.id, kind=KIND_DEPENDANT, name=dependant.name,
            birth_year=dependant.birth_year, created_at=_iso(dependant.created_at), relation=dependant.relation,
            created_by=dependant.created_by, content_hash=dependant.content_hash)

        def add() -> None:
            with self._tx() as tx:
                tx.save(record, condition=MemberItem.member_id.does_not_exist())
                tx.update(HouseholdItem(dependant.household_id), actions=[HouseholdItem.dependants.add(1)],
                          condition=HouseholdItem.household_id.exists() & (
                              HouseholdItem.dependants.does_not_exist() | (HouseholdItem.dependants < limit)))

        return self._counted(add, lambda: self.get_member(dependant.household_id, dependant.id) is not None,
                             LimitExceeded("家庭成员数量已达上限", {"max_dependants": limit}))

    @staticmethod
    def _counted(add: Any, existed: Any, at_limit: Exception) -> bool:
        """Run a counted insert; False when the item existed, ``at_limit`` when the count did."""
        try:
            retry_on_conflict(add)
        except TransactWriteError as error:
            if not cancelled_by_condition(error):
                raise Conflict("操作冲突，请重试") from error
            if existed():
                return False
            raise at_limit from None
        return True

    def update_resident_status(self, resident: Resident, expected_status: str) -> bool:
        reason_action = (MemberItem.rejection_reason.set(resident.rejection_reason)
                         if resident.rejection_reason is not None else MemberItem.rejection_reason.remove())
        # A resident registered before the keyed phone hash existed gets it on this write.
        backfill = [MemberItem.phone_hash.set(resident.phone_hash)] if resident.phone_hash else []
        try:
            with self._tx() as tx:
                tx.update(MemberItem(resident.household_id, resident.id), actions=[
                    MemberItem.status.set(resident.status),
                    MemberItem.reviewed_at.set(_iso(resident.reviewed_at)),
                    MemberItem.reviewed_by.set(resident.reviewed_by),
                    reason_action,
                    *backfill,
                ], condition=MemberItem.status == expected_status)
                tx.update(LoginItem(resident.openid), actions=[LoginItem.status.set(resident.status)],
                          condition=LoginItem.resident_id == resident.id)
                if resident.status != VERIFIED:
                    self.revocation_write().add_to(tx)
        except TransactWriteError:
            # Condition failed or a concurrent transaction touched the items: the caller re-reads.
            return False
        return True

    def set_roles(self, resident: Resident, roles: frozenset[str]) -> None:
        with self._tx() as tx:
            tx.update(MemberItem(resident.household_id, resident.id), actions=[MemberItem.roles.set(set(roles))],
                      condition=MemberItem.member_id.exists())
            if resident.openid:  # an imported resident nobody has claimed yet has no login
                tx.update(LoginItem(resident.openid), actions=[LoginItem.roles.set(set(roles))],
                          condition=LoginItem.resident_id == resident.id)
                self.revocation_write().add_to(tx)

    def set_proxy(self, resident: Resident) -> bool:
        """Name (``proxy_since`` set; only while verified) or withdraw (None) a proxy."""
        item = MemberItem(resident.household_id, resident.id)
        try:
            if resident.proxy_since is not None:
                item.update(actions=[MemberItem.proxy_since.set(_iso(resident.proxy_since))],
                            condition=(MemberItem.kind == KIND_RESIDENT) & (MemberItem.status == VERIFIED))
            else:
                item.update(actions=[MemberItem.proxy_since.remove()], condition=MemberItem.member_id.exists())
        except UpdateError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def add_reputation(self, change: ReputationChange) -> bool:
        """Count one outcome: the mark (once, forever) and the counters in one transaction;
        False when the mark existed (a redelivered event) or the resident is gone."""
        no_show = change.outcome == NO_SHOW
        actions = [MemberItem.rep_no_shows.add(1)] if no_show else [MemberItem.rep_completed.add(1)]
        if not no_show and change.rating is not None:
            actions += [MemberItem.rep_rating_sum.add(change.rating), MemberItem.rep_rating_count.add(1)]
        try:
            with self._tx() as tx:
                tx.save(ReputationMarkItem(change.mark, resident_id=change.resident_id,
                                           request_id=change.request_id, outcome=change.outcome,
                                           counted_at=_iso(clock.now())),
                        condition=ReputationMarkItem.mark.does_not_exist())
                tx.update(MemberItem(change.household_id, change.resident_id), actions=actions,
                          condition=MemberItem.kind == KIND_RESIDENT)
        except TransactWriteError as error:
            if only_conflicts(error):
                raise Conflict("操作冲突，请重试") from error  # the queue retries the message
            return False
        return True

    def list_residents_by_status(self, status: str, limit: int,
                                 cursor: dict[str, Any] | None) -> tuple[list[Resident], dict[str, Any] | None]:
        start = self._status_start_key(status, cursor)
        # One more than asked tells whether a next page exists without an empty last page.
        records = list(MemberItem.by_status.query(status, limit=limit + 1, page_size=limit + 1,
                                                    last_evaluated_key=start))
        page = [_member(r) for r in records[:limit]]
        residents = [m for m in page if isinstance(m, Resident)]
        if len(records) <= limit:
            return residents, None
        last = records[limit - 1]
        return residents, {"h": last.household_id, "m": last.member_id}

    @staticmethod
    def _status_start_key(status: str, cursor: dict[str, Any] | None) -> dict[str, Any] | None:
        if cursor is None:
            return None
        if set(cursor) != {"h", "m"} or not all(isinstance(v, str) and 0 < len(v) <= 200
                                                    for v in cursor.values()):
            raise bad_cursor()
        return {"household_id": {"S": cursor["h"]}, "member_id": {"S": cursor["m"]}, "status": {"S": status}}

    # households

    def get_household(self, household_id: str, consistent: bool = True) -> Household | None:
        try:
            record = HouseholdItem.get(household_id, consistent_read=consistent)
        except HouseholdItem.DoesNotExist:
            return None
        return _household(record)

    def status_writes(self, resident: Resident, expected_status: str | None,
                      grant_mark_at: datetime | None) -> list[Any]:
        writes: list[Any] = []
        if expected_status is not None:
            reason_action = (MemberItem.rejection_reason.set(resident.rejection_reason)
                             if resident.rejection_reason is not None else MemberItem.rejection_reason.remove())
            # A resident registered before the keyed phone hash existed gets it on this write.
            backfill = [MemberItem.phone_hash.set(resident.phone_hash)] if resident.phone_hash else []
            writes.append(Update(MemberItem(resident.household_id, resident.id), [
                MemberItem.status.set(resident.status), MemberItem.reviewed_at.set(_iso(resident.reviewed_at)),
                MemberItem.reviewed_by.set(resident.reviewed_by), reason_action, *backfill,
            ], MemberItem.status == expected_status))
            writes.append(Update(LoginItem(resident.openid), [LoginItem.status.set(resident.status)],
                                 LoginItem.resident_id == resident.id))
            if resident.status != VERIFIED:
                writes.append(self.revocation_write())
        if grant_mark_at is not None:
            writes.append(Update(HouseholdItem(resident.household_id),
                                 [HouseholdItem.credits_granted_at.set(_iso(grant_mark_at))],
                                 HouseholdItem.household_id.exists() & HouseholdItem.credits_granted_at.does_not_exist()))
        return writes

    # relatives

    def put_declaration(self, declaration: RelativeDeclaration, limit: int) -> bool:
        record = RelativeItem(declaration.household_id, declaration.relative_household_id,
                              relation=declaration.relation, declared_by=declaration.declared_by,
                              created_at=_iso(declaration.created_at))

        def add() -> None:
            with self._tx() as tx:
                tx.save(record, condition=RelativeItem.household_id.does_not_exist())
                tx.update(HouseholdItem(declaration.household_id), actions=[HouseholdItem.relatives.add(1)],
                          condition=HouseholdItem.household_id.exists() & (
                              HouseholdItem.relatives.does_not_exist() | (HouseholdItem.relatives < limit)))

        return self._counted(
            add, lambda: self.get_declaration(declaration.household_id, declaration.relative_household_id) is not None,
            LimitExceeded("亲属住户数量已达上限", {"max_relatives": limit}))

    def get_declaration(self, household_id: str, relative_household_id: str) -> RelativeDeclaration | None:
        try:
            return _declaration(RelativeItem.get(household_id, relative_household_id, consistent_read=True))
        except RelativeItem.DoesNotExist:
            return None

    def declarations_between(self, first: str, second: str) -> set[tuple[str, str]]:
        records = RelativeItem.batch_get([(first, second), (second, first)], consistent_read=True)
        return {(r.household_id, r.relative_household_id) for r in records}

    def declarations_by(self, household_id: str) -> list[RelativeDeclaration]:
        return [_declaration(r) for r in RelativeItem.query(household_id, consistent_read=True)]

    def declarations_of(self, relative_household_id: str) -> list[RelativeDeclaration]:
        return [_declaration(r) for r in RelativeItem.by_relative.query(relative_household_id)]

    def delete_declaration(self, household_id: str, relative_household_id: str) -> bool:
        def remove() -> None:
            with self._tx() as tx:
                tx.delete(RelativeItem(household_id, relative_household_id),
                          condition=RelativeItem.household_id.exists())
                tx.update(HouseholdItem(household_id), actions=[HouseholdItem.relatives.add(-1)],
                          condition=HouseholdItem.relatives > 0)
        try:
            retry_on_conflict(remove)
        except TransactWriteError as error:
            if cancelled_by_condition(error):
                return False
            raise
        return True

