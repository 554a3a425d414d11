"""The composition root: the one place that builds every service and adapter and hands each
domain the ports it needs.

Each factory builds its object on first use and keeps it for the life of the process (a warm
Lambda); ``use(name, obj)`` installs a replacement (tests: fakes, hooks) and ``reset()``
forgets everything (tests that change settings or start a fresh moto account). Naming: one
factory per thing, named for the thing (``bootstrap.ledger()``, ``bootstrap.requests()``).

Domains never import each other's services or adapters; what one needs of another it gets
here, as a port (a Protocol of its own ``ports.py``) implemented by the other's service or by
an adapter class below, or it reacts to the other's domain events (``core.events``).

Modules are imported inside the factories: the HTTP function imports what its routes use when
a route first runs, and queue- or admin-only code is never imported by a function that does not
run it.
"""
from __future__ import annotations

import importlib
import threading
from datetime import timedelta
from typing import Any, Callable, Mapping, TypeVar

from functions.core.caller import Auth, Caller
from functions.core.settings import get_settings

T = TypeVar("T")

# Every module that defines tables (``@table``): what tests, ``make run`` and infra create.
# Each stack owns its own: a community's (MODEL_MODULES) and the district hub's
# (HUB_MODEL_MODULES); a process that imported both (tests) still creates only its stack's.
MODEL_MODULES = (
    "functions.adapters.outbox",
    "functions.adapters.audit",
    "functions.adapters.signed_calls",
    "functions.identity.dynamo",
    "functions.ledger.dynamo",
    "functions.requests.dynamo",
    "functions.volunteers.dynamo",
    "functions.safety.dynamo",
    "functions.notifications.dynamo",
    "functions.rewards.dynamo",
    "functions.activities.dynamo",
    "functions.risk.dynamo",
    "functions.district.dynamo",
    "functions.stats.dynamo",
)
HUB_MODEL_MODULES = (
    "functions.adapters.outbox",
    "functions.adapters.signed_calls",
    "functions.hub.dynamo",
)

_built: dict[str, Any] = {}
_lock = threading.RLock()


def _once(name: str, build: Callable[[], T]) -> T:
    try:
        return _built[name]
    except KeyError:
        pass
    with _lock:
        if name not in _built:
            _built[name] = build()
        return _built[name]


def use(name: str, obj: Any) -> None:
    """Install ``obj`` as what the factory ``name`` returns (tests)."""
    with _lock:
        _built[name] = obj


def reset() -> None:
    """Forget every built object: the next call builds it again from the current settings."""
    with _lock:
        _built.clear()
    get_settings.cache_clear()
    # The revocation version is cached per process (identity.dynamo): a rebuilt world (another
    # table, another test) must not trust the counter read from the one before.
    from functions.identity.dynamo import forget_revocation

    forget_revocation()


def model_modules(stack: str | None = None) -> tuple[str, ...]:
    """The modules defining the tables of a stack (default: this process's ``settings.stack``)."""
    return HUB_MODEL_MODULES if (stack or get_settings().stack) == "hub" else MODEL_MODULES


def table_definitions(stack: str | None = None) -> list[dict[str, Any]]:
    """Every table of a stack (boto3 ``create_table`` arguments, plus logical name and TTL)."""
    modules = model_modules(stack)
    for module in modules:
        importlib.import_module(module)
    from functions.adapters.dynamo import registered_models
    from functions.adapters.dynamo import table_definitions as definitions

    return definitions(registered_models(modules))


# --- platform ----------------------------------------------------------------------------------

def secrets() -> Any:
    from functions.adapters.secrets import ParameterStoreSecrets

    return _once("secrets", ParameterStoreSecrets)


def publisher() -> Any:
    from functions.adapters.sqs import SqsPublisher

    return _once("publisher", SqsPublisher)


def outbox() -> Any:
    from functions.adapters.outbox import DynamoOutbox

    return _once("outbox", DynamoOutbox)


def relay() -> Any:
    from functions.adapters.outbox import Relay

    return _once("relay", lambda: Relay(publisher()))


def audit_log() -> Any:
    """Where audit entries no transaction carried are written (``core.audit``)."""
    from functions.adapters.audit import DynamoAuditLog

    return _once("audit_log", DynamoAuditLog)


def signature_keys() -> Any:
    """HMAC keys (通存通兑) from Secrets Manager, by version stage."""
    from functions.adapters.secrets import SecretsManagerKeys

    return _once("signature_keys", SecretsManagerKeys)


def transport() -> Any:
    """How signed calls reach another stack (HTTP; tests hand them to an in-process stack)."""
    from functions.adapters.signed_calls import HttpTransport

    return _once("transport", HttpTransport)


def nonces() -> Any:
    from functions.adapters.signed_calls import DynamoNonces

    return _once("nonces", DynamoNonces)


# --- ledger ------------------------------------------------------------------------------------

def ledger() -> Any:
    def build() -> Any:
        from functions.ledger.dynamo import DynamoLedgerStore
        from functions.ledger.model import point_kinds_from
        from functions.ledger.service import Ledger

        settings = get_settings()
        return Ledger(DynamoLedgerStore(), shards=settings.ledger_shards,
                      household_cap=settings.household_balance_cap, point_kinds=point_kinds_from(settings.assets))

    return _once("ledger", build)


def ledger_checks() -> Any:
    from functions.ledger.dynamo import DynamoCheckReports

    return _once("ledger_checks", DynamoCheckReports)


def account_owners() -> Any:
    """The ledger's ``AccountOwners`` port: identity knows who owns resident and household accounts."""
    return identity()


# --- identity ----------------------------------------------------------------------------------

def identity() -> Any:
    def build() -> Any:
        from functions.identity.dynamo import DynamoIdentityStore
        from functions.identity.service import IdentityConfig, IdentityService

        settings = get_settings()
        return IdentityService(
            DynamoIdentityStore(), ledger(),
            IdentityConfig(community_id=settings.community_id, admin_openids=settings.admin_openids,
                           starting_credits=settings.starting_credits, elderly_age=settings.proxy_elderly_age,
                           district_id=settings.district_id),
            phone_hasher=phone_hasher())

    return _once("identity", build)


def tokens() -> Any:
    def build() -> Any:
        from functions.identity.tokens import TokenSigner, secret_source

        settings = get_settings()
        return TokenSigner(secret_source(settings, secrets()), settings.token_ttl_seconds)

    return _once("tokens", build)


def wechat_login() -> Any:
    def build() -> Any:
        from functions.identity.wechat import wechat_client

        settings = get_settings()
        return wechat_client(settings, None if settings.is_local else secrets())

    return _once("wechat_login", build)


def authenticate(headers: Mapping[str, str], level: Auth) -> Caller:
    """``core.web``'s authenticator: the bearer token and identity's login state."""
    from functions.identity.auth import authenticate as identity_authenticate

    return identity_authenticate(headers, level, identity=identity(), tokens=tokens())


# --- requests ----------------------------------------------------------------------------------

def catalog() -> Any:
    def build() -> Any:
        from functions.requests.dynamo import DynamoCategoryStore
        from functions.requests.service import CategoryCatalog, configured_overrides

        return CategoryCatalog(DynamoCategoryStore(), configured_overrides())

    return _once("catalog", build)


def request_store() -> Any:
    def build() -> Any:
        from functions.requests.dynamo import DynamoRequestStore
        from functions.requests.service import auto_confirm_period

        return DynamoRequestStore(auto_confirm_period())

    return _once("request_store", build)


def requests() -> Any:
    def build() -> Any:
        from functions.requests.model import Limits
        from functions.requests.service import RequestService

        settings = get_settings()
        limits = Limits(horizon=timedelta(days=settings.request_horizon_days),
                        check_in_early=timedelta(minutes=settings.checkin_early_minutes),
                        backdating=timedelta(hours=settings.backdating_window_hours),
                        claim_tolerance=timedelta(minutes=settings.claim_tolerance_minutes),
                        no_show_after=timedelta(minutes=settings.no_show_after_minutes),
                        no_show_action=settings.no_show_action,
                        overdue_after=timedelta(hours=settings.overdue_after_hours),
                        overdue_action=settings.overdue_action)
        return RequestService(request_store(), ledger(), catalog(), outbox(), relay(), insurance=insurance(),
                              households=identity(), evidence=evidence(), risk=risk(), limits=limits)

    return _once("requests", build)


# --- risk ---------------------------------------------------------------------------------------

def risk() -> Any:
    """Risk controls: requests' ``RiskControls`` port (limits inside the settlement) and the flags."""
    def build() -> Any:
        from functions.risk.dynamo import DynamoCounterStore, DynamoFlagStore
        from functions.risk.model import RiskLimits
        from functions.risk.service import RiskService

        s = get_settings()
        limits = RiskLimits(daily_minutes=s.risk_daily_minutes, daily_services=s.risk_daily_services,
                            pair_daily=s.risk_pair_daily, repeated_pair_count=s.risk_repeated_pair_count,
                            flag_window_days=s.risk_flag_window_days, rapid_cycle_hours=s.risk_rapid_cycle_hours)
        return RiskService(DynamoCounterStore(), DynamoFlagStore(), request_store(), ledger(), limits)

    return _once("risk", build)


# --- activities ---------------------------------------------------------------------------------

def activity_store() -> Any:
    from functions.activities.dynamo import DynamoActivityStore

    return _once("activity_store", DynamoActivityStore)


class _AssetRules:
    """Activities' ``AssetRules`` port: every asset rounds attended time as the design rounds
    service time; when point kinds (rewards) carry a rounding of their own, read it here."""

    def rounding(self, asset: str) -> tuple[tuple[int, int], ...]:
        from functions.activities.model import DEFAULT_ROUNDING

        return DEFAULT_ROUNDING


def activity_codes() -> Any:
    def build() -> Any:
        from functions.activities.codes import OnSiteCodes
        from functions.identity.tokens import secret_source

        # Keyed from the stack's signing secret (a derived key): nothing new to provision.
        return OnSiteCodes(secret_source(get_settings(), secrets()))

    return _once("activity_codes", build)


def activities() -> Any:
    def build() -> Any:
        from functions.activities.service import ActivityService

        return ActivityService(activity_store(), ledger(), activity_codes(), outbox(), relay(), _AssetRules(),
                               backdating_window_hours=get_settings().backdating_window_hours)

    return _once("activities", build)


class _ActivityReminderChannel:
    """Activities' ``ReminderChannel`` port: notifications' one-time-consent ``deliver_once``."""

    def already_sent(self, keys: Any) -> set[str]:
        return notifications().already_claimed(keys)

    def remind(self, key: str, participant: Any, data: Mapping[str, str], page: str) -> str:
        from functions.notifications.model import REMINDER, DeliveryOutcome

        outcome = notifications().deliver_once(key, openid=participant.openid, template=REMINDER, data=data,
                                               page=page, recipient_id=participant.resident_id)
        return "already" if outcome is DeliveryOutcome.DUPLICATE else outcome.value


def activity_reminders() -> Any:
    def build() -> Any:
        from functions.activities.reminders import ActivityReminders

        return ActivityReminders(activity_store(), _ActivityReminderChannel(),
                                 lead=timedelta(minutes=get_settings().reminder_lead_minutes))

    return _once("activity_reminders", build)


class _ActivitySignups:
    """Safety's ``ActivitySignups`` port: whether a sign-up still stands (one GetItem)."""

    def is_active(self, activity_id: str, resident_id: str, seq: int) -> bool:
        from functions.activities.model import ACTIVE

        participant = activity_store().participant(activity_id, resident_id)
        return participant is not None and participant.seq == seq and participant.status in ACTIVE


# --- volunteers --------------------------------------------------------------------------------

class _IdentityPlaces:
    """Volunteers' ``Places`` port: buildings from identity's households, normalised so "3幢"
    and "3栋" are one building."""

    def building_of(self, household_id: str) -> str | None:
        return identity().building_of(household_id)


def volunteer_store() -> Any:
    from functions.volunteers.dynamo import DynamoVolunteerStore

    return _once("volunteer_store", DynamoVolunteerStore)


def volunteers() -> Any:
    def build() -> Any:
        from functions.volunteers.service import VolunteerService

        return VolunteerService(volunteer_store(), _IdentityPlaces(),
                                category_ids=lambda: [c.id for c in catalog().all()],
                                requests=request_store())

    return _once("volunteers", build)


def matcher() -> Any:
    def build() -> Any:
        from functions.volunteers.matching import Matcher

        return Matcher(request_store(), _IdentityPlaces(), volunteer_store(), volunteer_store(),
                       notifications(), category_name=lambda c: catalog().get(c).name,
                       notify_count=get_settings().match_notify_count)

    return _once("matcher", build)


# --- safety ------------------------------------------------------------------------------------

def _category_name(category_id: str) -> str:
    from functions.core.errors import NotFound

    try:
        return catalog().get(category_id).name
    except NotFound:
        return category_id  # a category removed since: the id still identifies it


def insurance() -> Any:
    def build() -> Any:
        from functions.safety.dynamo import DynamoInsuranceRecordStore
        from functions.safety.model import InsurancePolicy
        from functions.safety.service import InsuranceRegister

        settings = get_settings()
        policy = InsurancePolicy(settings.insurer, settings.insurance_policy_number,
                                 timedelta(minutes=settings.insurance_buffer_minutes))
        return InsuranceRegister(DynamoInsuranceRecordStore(), request_store(), _category_name, policy,
                                 signups=_ActivitySignups())

    return _once("insurance", build)


def evidence() -> Any:
    def build() -> Any:
        from functions.safety.dynamo import DynamoAccessLog, DynamoUploadRegister
        from functions.safety.service import EvidenceService
        from functions.safety.s3 import S3ObjectStorage

        settings = get_settings()
        return EvidenceService(request_store(), S3ObjectStorage(settings.evidence_bucket), DynamoAccessLog(),
                               DynamoUploadRegister(), retention_days=settings.evidence_retention_days)

    return _once("evidence", build)


# --- notifications -----------------------------------------------------------------------------

def templates() -> Any:
    def build() -> Any:
        from functions.notifications.model import TemplateRegistry

        settings = get_settings()
        return TemplateRegistry(settings.wechat_templates, local_defaults=settings.is_local)

    return _once("templates", build)


def notifier() -> Any:
    def build() -> Any:
        settings = get_settings()
        if settings.is_local:
            from functions.notifications.dynamo import OutboxNotifier

            return OutboxNotifier(templates())
        from functions.notifications.wechat import WeChatSubscribeNotifier

        store = secrets()
        return WeChatSubscribeNotifier(
            settings.wechat_api_base,
            app_id=lambda: store.get(settings.wechat_app_id_parameter),
            app_secret=lambda: store.get(settings.wechat_app_secret_parameter),
            templates=templates(), miniprogram_state=settings.wechat_miniprogram_state)

    return _once("notifier", build)


def notifications() -> Any:
    def build() -> Any:
        from functions.notifications.dynamo import DynamoConsentStore, DynamoDeliveryStore
        from functions.notifications.service import NotificationService

        return NotificationService(DynamoConsentStore(), DynamoDeliveryStore(), notifier())

    return _once("notifications", build)


def outbox_reader() -> Any:
    from functions.notifications.dynamo import DynamoOutboxReader

    return _once("outbox_reader", DynamoOutboxReader)


class _IdentityContacts:
    """Notifications' ``Contacts`` port: openids of residents, from identity (one GetItem when
    the household is known)."""

    def openid_of(self, resident_id: str, household_id: str | None) -> str | None:
        from functions.core.errors import NotFound

        service = identity()
        if household_id is not None:
            # Eventually consistent: an openid is written once, when the resident registers or
            # takes an imported record over; a lagging read finds none, and the reminder is
            # tried again by the next run (it claims nothing without a recipient).
            resident = service.store.get_resident(household_id, resident_id, consistent=False)
            return resident.openid if resident is not None else None
        try:
            return service.resident(resident_id).openid
        except NotFound:
            return None


def reminders() -> Any:
    def build() -> Any:
        from functions.notifications.reminders import ReminderService

        return ReminderService(requests(), _IdentityContacts(), notifications(),
                               lead=timedelta(minutes=get_settings().reminder_lead_minutes))

    return _once("reminders", build)


# --- rewards -----------------------------------------------------------------------------------

class _IdentityResidents:
    """Rewards' ``Residents`` port: birth years (minimum age) and the merchant role of a login,
    from identity."""

    def birth_year(self, household_id: str, resident_id: str) -> int | None:
        resident = identity().store.get_resident(household_id, resident_id)
        return resident.birth_year if resident is not None else None

    def role_grant(self, openid: str, role: str) -> Any:
        return identity().role_grant(openid, role)


def rewards_store() -> Any:
    from functions.rewards.dynamo import DynamoRewardsStore

    return _once("rewards_store", DynamoRewardsStore)


def _age_rule() -> Any:
    from functions.rewards.service import AgeRule

    return AgeRule(_IdentityResidents(), get_settings().min_redeem_age)


def points() -> Any:
    def build() -> Any:
        from functions.rewards.service import PointsService

        return PointsService(ledger(), _age_rule())

    return _once("points", build)


def merchants() -> Any:
    def build() -> Any:
        from functions.rewards.service import MerchantService

        return MerchantService(rewards_store(), ledger(), _IdentityResidents(), _age_rule())

    return _once("merchants", build)


def zyh_key() -> Callable[[], str]:
    """The 志愿汇 HMAC key: locally the setting's value, deployed the SSM parameter's."""
    settings = get_settings()
    if settings.is_local:
        return lambda: settings.zyh_key
    store = secrets()
    return lambda: store.get(settings.zyh_key_parameter)


def zyh_partner() -> Any:
    def build() -> Any:
        settings = get_settings()
        if settings.is_local and not settings.zyh_api_base:
            from functions.rewards.zyh import LocalZyhPartner

            return LocalZyhPartner()
        from functions.rewards.zyh import HttpZyhPartner

        return HttpZyhPartner(settings.zyh_api_base, zyh_key())

    return _once("zyh_partner", build)


def exchanges() -> Any:
    def build() -> Any:
        from functions.rewards.service import ExchangeService

        settings = get_settings()
        return ExchangeService(rewards_store(), ledger(), zyh_partner(), outbox(), relay(),
                               coins_per_minute=settings.zyh_coins_per_minute,
                               timeout=timedelta(minutes=settings.zyh_timeout_minutes),
                               available=settings.is_local or bool(settings.zyh_api_base))

    return _once("exchanges", build)

# --- statistics -----------------------------------------------------------------------------------

class _IdentityNames:
    """Statistics' ``Names`` port: the names of the few residents a figure shows (top volunteers)."""

    def names_of(self, resident_ids: Any) -> dict[str, str]:
        from functions.core.errors import NotFound

        out = {}
        for resident_id in resident_ids:
            try:
                out[resident_id] = identity().resident(resident_id).name
            except NotFound:
                continue
        return out


class _LedgerLiabilities:
    """Statistics' ``Liabilities`` port: what issuance has issued, per asset, is what the
    community's accounts hold (one BatchGetItem of issuance's shards)."""

    def outstanding(self) -> dict[str, int]:
        from functions.ledger.accounts import ISSUANCE

        return {asset: -totals.posted for asset, totals in ledger().balances(ISSUANCE).items() if totals.posted}


class _CatalogCreditItems:
    """Statistics' ``CreditItems`` port: an accepted suggestion becomes a category of requests'
    catalogue (its id derived from the text, so a retry makes the same one)."""

    def make_credit_item(self, name: str, source_category: str, actor: str) -> str:
        from functions.core.ids import derived_id

        category_id = derived_id("cat", source_category, name)[:32]
        return catalog().add_credit_item(category_id, name, actor).id


def stats() -> Any:
    def build() -> Any:
        from functions.stats.dynamo import DynamoStatsStore
        from functions.stats.service import StatsService

        return StatsService(DynamoStatsStore(), _IdentityPlaces(), _IdentityNames(), _LedgerLiabilities(),
                            _CatalogCreditItems())

    return _once("stats", build)


# --- district (通存通兑, the community side) -----------------------------------------------------

class _IdentityPeople:
    """The district's ``People`` port: what identity knows of residents, as ids, a status and
    the keyed phone hash."""

    @staticmethod
    def _person(resident: Any) -> Any:
        from functions.district.ports import Person

        return Person(resident.id, resident.household_id, resident.status == "verified",
                      identity().phone_hash_of(resident))

    def caller(self, caller: Caller) -> Any:
        return self._person(identity().me(caller))

    def resident(self, resident_id: str) -> Any:
        from functions.core.errors import NotFound

        try:
            return self._person(identity().resident(resident_id))
        except NotFound:
            return None

    def household_exists(self, household_id: str) -> bool:
        return identity().store.get_household(household_id) is not None

    def by_phone_hash(self, phone_hash: str) -> Any:
        found = identity().resident_by_phone_hash(phone_hash)
        return self._person(found) if found is not None else None

    def remote_declarations(self, household_id: str, community: str) -> list[str]:
        return identity().remote_declarations(household_id, community)

    def declared_remote(self, household_id: str, community: str, remote_household_id: str) -> bool:
        return identity().declared_remote(household_id, community, remote_household_id)


def phone_hasher() -> Any:
    """Identity's ``PhoneHasher``: the keyed hash under the district-wide key; None outside a district."""
    def build() -> Any:
        from functions.core.signing import keyed_phone_hash

        secret = get_settings().phone_hash_secret
        if not secret:
            return None
        return lambda phone: keyed_phone_hash(signature_keys().current(secret), phone)

    return _once("phone_hasher", build)


def hub_client() -> Any:
    def build() -> Any:
        from functions.adapters.signed_calls import SignedClient
        from functions.core.signing import HUB
        from functions.district.hub_client import HubClient

        settings = get_settings()
        return HubClient(SignedClient(settings.community_id, HUB, settings.hub_url,
                                      lambda: signature_keys().current(settings.hub_key_secret), transport()))

    return _once("hub_client", build)


def district() -> Any:
    def build() -> Any:
        from functions.district.dynamo import DynamoDistrictStore
        from functions.district.service import DistrictConfig, DistrictService

        settings = get_settings()
        return DistrictService(
            DistrictConfig(settings.community_id, settings.district_id, settings.district_max_transfer),
            DynamoDistrictStore(), ledger(), _IdentityPeople(), hub_client(), outbox(), relay())

    return _once("district", build)


def cross_community() -> Any:
    """The ledger's ``CrossCommunity`` port: transfers to another community go to the district."""
    return district()


def district_verifier() -> Any:
    """Checks calls from the hub: signed with the key this community shares with it."""
    def build() -> Any:
        from functions.adapters.signed_calls import Verifier
        from functions.core.signing import HUB

        settings = get_settings()

        def keys_of(sender: str) -> list[bytes] | None:
            if sender != HUB or not settings.hub_key_secret:
                return None
            return signature_keys().accepted(settings.hub_key_secret)

        return Verifier(settings.community_id, keys_of, nonces(), settings.signature_window_seconds)

    return _once("district_verifier", build)


# --- admin (audit log, exports) -----------------------------------------------------------------

def audit_queries() -> Any:
    def build() -> Any:
        from functions.admin.dynamo import DynamoAuditReader
        from functions.admin.service import AuditQueries

        return AuditQueries(DynamoAuditReader())

    return _once("audit_queries", build)


class _SettledServices:
    """Admin's ``EngagementSource`` for services: the insured list's service-date index (one
    record per accepted service, read page by page), then the requests themselves in batches
    (BatchGetItem) for which of them settled and with how many minutes."""

    def between(self, first_day: Any, last_day: Any) -> Any:
        from functions.requests.model import SETTLED
        from functions.safety.model import ExportRange

        records = [r for r in insurance().export_all(ExportRange(first_day, last_day))
                   if r.activity_id is None]
        for start in range(0, len(records), 100):
            chunk = records[start:start + 100]
            found = request_store().get_many([r.request_id for r in chunk])
            for record in chunk:
                request = found.get(record.request_id)
                if request is not None and request.status == SETTLED and request.completed_minutes \
                        and request.volunteer_id:
                    yield _engagement(request.volunteer_id, request.id, record.category_name,
                                      record.service_date.isoformat(), request.completed_minutes)


class _ClosedActivities:
    """Admin's ``EngagementSource`` for activities: the closed ones starting in the range (the
    status index, a Query), each participant who checked in and out, for the time attended."""

    def between(self, first_day: Any, last_day: Any) -> Any:
        from datetime import datetime, time

        from functions.activities.model import CLOSED, attended_minutes
        from functions.core.clock import CHINA_TZ

        start = datetime.combine(first_day, time(0), CHINA_TZ)
        end = datetime.combine(last_day, time(23, 59, 59), CHINA_TZ)
        store = activity_store()
        for activity in store.starting_between(start, end, CLOSED):
            for participant in store.participants(activity.id):
                minutes = attended_minutes(activity, participant)
                if minutes > 0:
                    yield _engagement(participant.resident_id, activity.id, f"社群活动：{activity.title}"[:60],
                                      activity.start_at.astimezone(CHINA_TZ).date().isoformat(), minutes)


def _engagement(volunteer_id: str, ref: str, content: str, day: str, minutes: int) -> Any:
    from functions.admin.model import Engagement

    return Engagement(volunteer_id=volunteer_id, ref=ref, content=content, service_date=day, minutes=minutes)


class _ResidentNames:
    """Admin's ``People`` port: names for the export, one resident at a time (the volunteers of
    a range, not its rows)."""

    def names(self, resident_ids: Any) -> dict[str, str]:
        from functions.core.errors import NotFound

        out = {}
        for resident_id in sorted(resident_ids):
            try:
                out[resident_id] = identity().resident(resident_id).name
            except NotFound:
                continue
        return out


def volunteer_records() -> Any:
    def build() -> Any:
        from functions.admin.service import VolunteerRecords

        settings = get_settings()
        return VolunteerRecords([_SettledServices(), _ClosedActivities()], _ResidentNames(), settings.community_id,
                                settings.community_name or f"{settings.community_id} 社区时间银行")

    return _once("volunteer_records", build)


# --- the district hub (its own stack: functions/hub_app.py) -----------------------------------

def hub() -> Any:
    def build() -> Any:
        from functions.hub.community_client import CommunityClients
        from functions.hub.dynamo import DynamoHubStore
        from functions.hub.service import HubService

        communities = CommunityClients(get_settings().hub_communities, lambda name: signature_keys().current(name),
                                       transport())
        return HubService(DynamoHubStore(), communities, outbox(), relay())

    return _once("hub", build)


def hub_verifier() -> Any:
    """Checks calls from communities: each signed with its own key (one community's key never
    verifies as another's)."""
    def build() -> Any:
        from functions.adapters.signed_calls import Verifier
        from functions.core.signing import HUB

        settings = get_settings()
        registry = settings.hub_communities

        def keys_of(sender: str) -> list[bytes] | None:
            entry = registry.get(sender)
            return signature_keys().accepted(entry["key_secret"]) if entry else None

        return Verifier(HUB, keys_of, nonces(), settings.signature_window_seconds)

    return _once("hub_verifier", build)
