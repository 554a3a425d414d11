"""Per-community deployment configuration: ``infra/communities/<id>.toml``.

One file per community. Loading validates every value and reports every problem at once, each
naming the file and the field, so district IT can fix a file in one pass. Tariff overrides are
checked by the same validator the admin API uses (``functions.requests.model``), so a
value that deploys is a value the running system accepts.
"""
from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

COMMUNITIES_DIR = Path(__file__).resolve().parent / "communities"
HUBS_DIR = Path(__file__).resolve().parent / "hubs"

APPLICATION = "timebank"
STAGE = "prod"

# Resource names are "timebank-<id>-<logical>"; the longest (Lambda function names, 64
# characters; S3 bucket names with the account id, 63) leave room for 20 characters of id.
COMMUNITY_ID = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
MAX_COMMUNITY_ID_LENGTH = 20
REGION = re.compile(r"^(?:us|eu|ap|sa|ca|me|af|il|mx|cn)-[a-z]+(?:-[a-z]+)?-\d$")
# WeChat openids are 28 characters of [A-Za-z0-9_-]; shorter ids are allowed for test users.
OPENID = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
POLICY_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/_-]{3,39}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

# The tariff fields a community may override; the others (name, insurance/evidence flags)
# are product decisions made by admins at run time.
TARIFF_FIELDS = ("credit_mode", "multiplier", "rounding", "max_minutes", "credit_eligible",
                 "credit_per_service")

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)

TOP_LEVEL_KEYS = {
    "id", "display_name", "region", "admin_openids", "starting_credits",
    "evidence_retention_days", "reminder_lead_minutes", "log_retention_days",
    "insurance", "tariffs", "alarms", "deploy", "wechat", "lifecycle", "assets", "min_redeem_age", "zyh", "family", "risk",
    "district",
}
# Family rules (API.md "Family rules"): [family] table, key → (low, high, default).
FAMILY_SETTINGS = {
    "household_balance_cap": (0, 1_000_000, 0),   # minutes of 服务时; 0 = no cap
    "elderly_age": (50, 100, 60),                  # residents this old may be served through a proxy
}
# Risk controls (API.md "Risk controls"): [risk] table; a limit of 0 switches it off.
RISK_SETTINGS = {
    "daily_minutes": (0, 24 * 60, 480),            # credited minutes per volunteer per day
    "daily_services": (0, 100, 6),                 # credited services per volunteer per day
    "pair_daily": (0, 100, 2),                     # services between the same two households per day
    "repeated_pair_count": (0, 1000, 5),           # flag: this many services of one pair within the window
    "flag_window_days": (1, 90, 7),                # the window of the repeated-pair flag
    "rapid_cycle_hours": (0, 24 * 30, 24),         # flag: services both ways between two households this close
}
# [lifecycle]: the time limits of a service (functions.requests.model.Limits), with their ranges.
LIFECYCLE_LIMITS = {
    "request_horizon_days": (1, 365, 90),
    "checkin_early_minutes": (0, 24 * 60, 120),
    "backdating_window_hours": (1, 30 * 24, 48),
    "claim_tolerance_minutes": (0, 120, 15),
    "no_show_after_minutes": (5, 24 * 60, 30),
    "overdue_after_hours": (1, 7 * 24, 12),
}
LIFECYCLE_CHOICES = {"no_show_action": ("release", "cancel"), "overdue_action": ("flag", "complete")}
ZYH_KEYS = {"api_base", "timeout_minutes", "coins_per_minute"}
HTTPS_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9._~/-]*)?$")
# 通存通兑: [district] of a community file (the hub is infra/hubs/<district>.toml).
DISTRICT_KEYS = {"id", "hub_url", "max_transfer_minutes"}
URL = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d+)?(/[A-Za-z0-9._~\-/]*)?$")
# Subscribe-message templates the mini-program asks consent for (logical name → WeChat id).
WECHAT_TEMPLATES = ("match", "reminder")
TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_-]{10,64}$")


class ConfigError(ValueError):
    """A community file is missing or has invalid values; ``problems`` lists each one."""

    def __init__(self, source: str, problems: Mapping[str, str]):
        self.source = source
        self.problems = dict(problems)
        lines = [f"{source}: {len(self.problems)} invalid value(s):"]
        lines += [f"  {name}: {message}" for name, message in sorted(self.problems.items())]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class CommunityConfig:
    id: str
    display_name: str
    region: str
    admin_openids: tuple[str, ...]
    insurer: str
    insurance_policy_number: str
    starting_credits: int = 300
    evidence_retention_days: int = 180
    reminder_lead_minutes: int = 60
    log_retention_days: int = 90
    tariff_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarm_emails: tuple[str, ...] = ()
    artifact_bucket: str = ""
    wechat_templates: dict[str, str] = field(default_factory=dict)
    lifecycle: dict[str, Any] = field(default_factory=dict)
    assets: dict[str, Any] = field(default_factory=dict)  # [assets]: point kinds, as validated
    min_redeem_age: int = 0
    zyh_api_base: str = ""
    zyh_timeout_minutes: int = 15
    zyh_coins_per_minute: int = 1
    family: dict[str, int] = field(default_factory=lambda: {k: v[2] for k, v in FAMILY_SETTINGS.items()})
    risk: dict[str, int] = field(default_factory=lambda: {k: v[2] for k, v in RISK_SETTINGS.items()})
    district: "DistrictLink | None" = None

    @property
    def key(self) -> str:
        """What names this stack in build/, deploy and `make package COMMUNITY=`."""
        return self.id

    @property
    def partition(self) -> str:
        return "aws-cn" if self.region.startswith("cn-") else "aws"

    @property
    def resource_prefix(self) -> str:
        return f"{APPLICATION}-{self.id}"

    @property
    def stack_name(self) -> str:
        return self.resource_prefix

    @property
    def parameter_path(self) -> str:
        """SSM path holding this community's secrets (names only ever reach the template)."""
        return f"/{APPLICATION}/{self.id}/"

    @property
    def secret_parameters(self) -> dict[str, str]:
        """Environment variable → SSM SecureString parameter name."""
        parameters = {
            "TIMEBANK_TOKEN_SECRET_PARAMETER": f"{self.parameter_path}token-secret",
            "TIMEBANK_WECHAT_APP_ID_PARAMETER": f"{self.parameter_path}wechat-app-id",
            "TIMEBANK_WECHAT_APP_SECRET_PARAMETER": f"{self.parameter_path}wechat-app-secret",
        }
        if self.zyh_api_base:  # only a community that exchanges with 志愿汇 needs its signing key
            parameters["TIMEBANK_ZYH_KEY_PARAMETER"] = f"{self.parameter_path}zyh-key"
        return parameters

    def environment(self) -> dict[str, str]:
        """The functions' environment (plain strings; resource references are added later)."""
        return {
            "TIMEBANK_COMMUNITY": self.id,
            "TIMEBANK_COMMUNITY_NAME": self.display_name,
            "TIMEBANK_STAGE": STAGE,
            "TIMEBANK_RESOURCE_PREFIX": self.resource_prefix,
            "TIMEBANK_ADMIN_OPENIDS": ",".join(self.admin_openids),
            "TIMEBANK_STARTING_CREDITS": str(self.starting_credits),
            "TIMEBANK_EVIDENCE_RETENTION_DAYS": str(self.evidence_retention_days),
            "TIMEBANK_REMINDER_LEAD_MINUTES": str(self.reminder_lead_minutes),
            "TIMEBANK_INSURER": self.insurer,
            "TIMEBANK_INSURANCE_POLICY_NUMBER": self.insurance_policy_number,
            "TIMEBANK_TARIFF_OVERRIDES": json.dumps(self.tariff_overrides, ensure_ascii=False,
                                                    sort_keys=True, separators=(",", ":")),
            "TIMEBANK_WECHAT_TEMPLATES": json.dumps(self.wechat_templates, sort_keys=True,
                                                    separators=(",", ":")),
            **{f"TIMEBANK_{name.upper()}": str(value) for name, value in sorted(self.lifecycle.items())},
            "TIMEBANK_ASSETS": json.dumps(self.assets, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
            "TIMEBANK_MIN_REDEEM_AGE": str(self.min_redeem_age),
            "TIMEBANK_ZYH_API_BASE": self.zyh_api_base,
            "TIMEBANK_ZYH_TIMEOUT_MINUTES": str(self.zyh_timeout_minutes),
            "TIMEBANK_ZYH_COINS_PER_MINUTE": str(self.zyh_coins_per_minute),
            "TIMEBANK_HOUSEHOLD_BALANCE_CAP": str(self.family["household_balance_cap"]),
            "TIMEBANK_PROXY_ELDERLY_AGE": str(self.family["elderly_age"]),
            **{f"TIMEBANK_RISK_{name.upper()}": str(value) for name, value in sorted(self.risk.items())},
            **self.secret_parameters,
            **(self.district.environment(self.id) if self.district else {}),
            "POWERTOOLS_SERVICE_NAME": APPLICATION,
            "POWERTOOLS_METRICS_NAMESPACE": "Timebank",
        }

    @property
    def secret_names(self) -> list[str]:
        """Secrets Manager names (never values) the functions read: the district's keys."""
        return sorted(district_secret_names(self.id).values()) if self.district else []


def district_secret_names(community_id: str) -> dict[str, str]:
    """A community's copies of its district keys, in Secrets Manager (names only)."""
    return {"TIMEBANK_HUB_KEY_SECRET": f"{APPLICATION}/{community_id}/hub-key",
            "TIMEBANK_PHONE_HASH_SECRET": f"{APPLICATION}/{community_id}/phone-hash-key"}


def hub_key_secret_name(district_id: str, community_id: str) -> str:
    """The hub's copy of the key it shares with one community."""
    return f"{APPLICATION}/hub-{district_id}/{community_id}"


@dataclass(frozen=True)
class DistrictLink:
    """[district] of a community file: which district hub it clears through."""
    id: str
    hub_url: str
    max_transfer_minutes: int = 0

    def environment(self, community_id: str) -> dict[str, str]:
        return {"TIMEBANK_DISTRICT": self.id, "TIMEBANK_HUB_URL": self.hub_url,
                "TIMEBANK_DISTRICT_MAX_TRANSFER": str(self.max_transfer_minutes),
                **district_secret_names(community_id)}


HUB_KEYS = {"id", "display_name", "region", "log_retention_days", "alarms", "deploy", "communities"}


@dataclass(frozen=True)
class HubConfig:
    """``infra/hubs/<district>.toml``: the district clearing hub's own stack."""
    id: str
    display_name: str
    region: str
    communities: dict[str, str]            # community id → its API URL (…/api)
    log_retention_days: int = 90
    alarm_emails: tuple[str, ...] = ()
    artifact_bucket: str = ""
    is_hub = True

    @property
    def key(self) -> str:
        """``hub-<district>``: what names the hub stack in build/ and deploy (never a community id)."""
        return f"hub-{self.id}"

    @property
    def partition(self) -> str:
        return "aws-cn" if self.region.startswith("cn-") else "aws"

    @property
    def resource_prefix(self) -> str:
        return f"{APPLICATION}-hub-{self.id}"

    @property
    def stack_name(self) -> str:
        return self.resource_prefix

    @property
    def parameter_path(self) -> str:
        return f"/{APPLICATION}/hub-{self.id}/"

    @property
    def secret_parameters(self) -> dict[str, str]:
        return {}  # the hub reads no SSM parameter: its keys are in Secrets Manager

    @property
    def secret_names(self) -> list[str]:
        return [hub_key_secret_name(self.id, community) for community in sorted(self.communities)]

    def environment(self) -> dict[str, str]:
        registry = {community: {"url": url, "key_secret": hub_key_secret_name(self.id, community)}
                    for community, url in sorted(self.communities.items())}
        return {
            "TIMEBANK_STACK": "hub",
            "TIMEBANK_COMMUNITY": f"hub-{self.id}",
            "TIMEBANK_COMMUNITY_NAME": self.display_name,
            "TIMEBANK_STAGE": STAGE,
            "TIMEBANK_RESOURCE_PREFIX": self.resource_prefix,
            "TIMEBANK_DISTRICT": self.id,
            "TIMEBANK_HUB_COMMUNITIES": json.dumps(registry, sort_keys=True, separators=(",", ":")),
            "POWERTOOLS_SERVICE_NAME": APPLICATION,
            "POWERTOOLS_METRICS_NAMESPACE": "Timebank",
        }


def load_stack(key: str) -> "CommunityConfig | HubConfig":
    """A community (``demo``) or a district hub (``hub-demo``: ``infra/hubs/demo.toml``)."""
    if key.startswith("hub-"):
        return load_hub(key[len("hub-"):])
    return load_community(key)


def hub_ids(directory: Path = HUBS_DIR) -> list[str]:
    return sorted(path.stem for path in directory.glob("*.toml"))


def load_hub(district_id: str, directory: Path = HUBS_DIR) -> HubConfig:
    path = directory / f"{district_id}.toml"
    if not path.is_file():
        known = ", ".join(hub_ids(directory)) or "none"
        raise ConfigError(str(path), {"file": f"no such hub file (known: {known})"})
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), {"file": f"not valid TOML: {exc}"}) from None
    return parse_hub(data, source=str(path), expected_id=district_id)


def parse_hub(data: Mapping[str, Any], source: str = "<hub>", expected_id: str | None = None) -> HubConfig:
    problems: dict[str, str] = {}
    check = _Checker(problems)
    for unknown in sorted(set(data) - HUB_KEYS):
        problems[unknown] = f"unknown setting (allowed: {', '.join(sorted(HUB_KEYS))})"
    district_id = check.value(data, "id", _district_id)
    if district_id is not None and expected_id is not None and district_id != expected_id:
        problems["id"] = f"must equal the file name {expected_id!r} (got {district_id!r})"
    display_name = check.value(data, "display_name", lambda v: _text(v, 1, 40))
    region = check.value(data, "region", _region)
    log_days = check.value(data, "log_retention_days", _log_retention, 90)
    alarms = check.table(data, "alarms", {"emails"}, required=False)
    emails = check.value(alarms, "alarms.emails", _emails, ())
    deploy = check.table(data, "deploy", {"artifact_bucket"}, required=False)
    artifact_bucket = check.value(deploy, "deploy.artifact_bucket", _bucket, "")
    communities = check.table(data, "communities", None, required=True)
    members: dict[str, str] = {}
    for community, entry in sorted((communities or {}).items()):
        name = f"communities.{community}"
        try:
            _community_id(community)
        except ValueError as exc:
            problems[name] = str(exc)
            continue
        if not isinstance(entry, dict) or set(entry) != {"url"}:
            problems[name] = "must be a table with url = the community's API endpoint"
            continue
        try:
            members[community] = _url(entry["url"])
        except ValueError as exc:
            problems[f"{name}.url"] = f"{exc} (got {entry['url']!r})"
    if communities is not None and not members and not problems:
        problems["communities"] = "must list at least one community"
    if problems:
        raise ConfigError(source, problems)
    return HubConfig(id=district_id, display_name=display_name, region=region, communities=members,
                     log_retention_days=log_days, alarm_emails=emails, artifact_bucket=artifact_bucket)


def community_ids(directory: Path = COMMUNITIES_DIR) -> list[str]:
    return sorted(path.stem for path in directory.glob("*.toml"))


def load_community(community_id: str, directory: Path = COMMUNITIES_DIR) -> CommunityConfig:
    path = directory / f"{community_id}.toml"
    if not path.is_file():
        known = ", ".join(community_ids(directory)) or "none"
        raise ConfigError(str(path), {"file": f"no such community file (known: {known})"})
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), {"file": f"not valid TOML: {exc}"}) from None
    return parse_community(data, source=str(path), expected_id=community_id)


def parse_community(data: Mapping[str, Any], source: str = "<config>",
                    expected_id: str | None = None) -> CommunityConfig:
    """Validate a parsed community file; raise ``ConfigError`` listing every bad value."""
    problems: dict[str, str] = {}
    check = _Checker(problems)

    for unknown in sorted(set(data) - TOP_LEVEL_KEYS):
        problems[unknown] = f"unknown setting (allowed: {', '.join(sorted(TOP_LEVEL_KEYS))})"

    community_id = check.value(data, "id", _community_id)
    if community_id is not None and expected_id is not None and community_id != expected_id:
        problems["id"] = f"must equal the file name {expected_id!r} (got {community_id!r})"
    display_name = check.value(data, "display_name", lambda v: _text(v, 1, 40))
    region = check.value(data, "region", _region)
    admins = check.value(data, "admin_openids", _openids)
    starting_credits = check.value(data, "starting_credits", lambda v: _int(v, 0, 6000), 300)
    retention = check.value(data, "evidence_retention_days", lambda v: _int(v, 1, 3650), 180)
    lead = check.value(data, "reminder_lead_minutes", lambda v: _int(v, 5, 7 * 24 * 60), 60)
    log_days = check.value(data, "log_retention_days", _log_retention, 90)

    insurance = check.table(data, "insurance", {"insurer", "policy_number"}, required=True)
    insurer = check.value(insurance, "insurance.insurer", lambda v: _text(v, 2, 50))
    policy = check.value(insurance, "insurance.policy_number", _policy_number)

    alarms = check.table(data, "alarms", {"emails"}, required=False)
    emails = check.value(alarms, "alarms.emails", _emails, ())

    deploy = check.table(data, "deploy", {"artifact_bucket"}, required=False)
    artifact_bucket = check.value(deploy, "deploy.artifact_bucket", _bucket, "")

    wechat = check.table(data, "wechat", {"templates"}, required=False)
    templates = check.value(wechat, "wechat.templates", _templates, {})

    family = _bounded_table(check, data, "family", FAMILY_SETTINGS)
    risk = _bounded_table(check, data, "risk", RISK_SETTINGS)

    tariffs = check.table(data, "tariffs", None, required=False)
    overrides = _tariff_overrides(tariffs or {}, problems)

    lifecycle = _bounded_table(check, data, "lifecycle", LIFECYCLE_LIMITS, LIFECYCLE_CHOICES)
    assets = _assets(check.table(data, "assets", None, required=False) or {}, problems)
    min_age = check.value(data, "min_redeem_age", lambda v: _int(v, 0, 120), 0)
    zyh = check.table(data, "zyh", ZYH_KEYS, required=False)
    zyh_api_base = check.value(zyh, "zyh.api_base", _https_url, "")
    zyh_timeout = check.value(zyh, "zyh.timeout_minutes", lambda v: _int(v, 1, 24 * 60), 15)
    zyh_coins = check.value(zyh, "zyh.coins_per_minute", lambda v: _int(v, 1, 1000), 1)
    district = check.table(data, "district", DISTRICT_KEYS, required=False)
    district_id = check.value(district, "district.id", _district_id)
    hub_url = check.value(district, "district.hub_url", _url)
    max_transfer = check.value(district, "district.max_transfer_minutes", lambda v: _int(v, 0, 100_000), 0)

    if problems:
        raise ConfigError(source, problems)
    return CommunityConfig(
        id=community_id, display_name=display_name, region=region, admin_openids=admins,
        insurer=insurer, insurance_policy_number=policy, starting_credits=starting_credits,
        evidence_retention_days=retention, reminder_lead_minutes=lead,
        log_retention_days=log_days, tariff_overrides=overrides, alarm_emails=emails,
        artifact_bucket=artifact_bucket, wechat_templates=templates, lifecycle=lifecycle, assets=assets,
        min_redeem_age=min_age, zyh_api_base=zyh_api_base, zyh_timeout_minutes=zyh_timeout,
        zyh_coins_per_minute=zyh_coins, family=family, risk=risk,
        district=DistrictLink(district_id, hub_url, max_transfer) if district is not None else None,
    )


def _choice(value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}")
    return value


def _https_url(value: Any) -> str:
    if not isinstance(value, str) or not HTTPS_URL.match(value):
        raise ValueError("must be an https:// URL")
    return value.rstrip("/")


def _assets(assets: Mapping[str, Any], problems: dict[str, str]) -> dict[str, Any]:
    # The ledger's own parser: a point kind that deploys is one the running ledger accepts.
    from functions.core.errors import ValidationError
    from functions.ledger.model import point_kinds_from

    try:
        point_kinds_from(assets)
    except ValidationError as exc:
        problems.update(exc.details.get("fields", {}))
        return {}
    return json.loads(json.dumps(assets))


def _bounded_table(check: "_Checker", data: Mapping[str, Any], name: str,
                   settings: Mapping[str, tuple[int, int, int]],
                   choices: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, Any]:
    """A table of bounded integers (key → (low, high, default)) and of choices (key → allowed
    values, the first the default)."""
    choices = choices or {}
    table = check.table(data, name, set(settings) | set(choices), required=False)
    values: dict[str, Any] = {
        key: check.value(table, f"{name}.{key}", lambda v, lo=lo, hi=hi: _int(v, lo, hi), default)
        for key, (lo, hi, default) in settings.items()}
    values.update({key: check.value(table, f"{name}.{key}", lambda v, allowed=allowed: _choice(v, allowed), allowed[0])
                   for key, allowed in choices.items()})
    return values


def _templates(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError("must be a table of template name = WeChat template id")
    unknown = sorted(set(value) - set(WECHAT_TEMPLATES))
    if unknown:
        raise ValueError(f"unknown template(s) {', '.join(unknown)} (known: {', '.join(WECHAT_TEMPLATES)})")
    for name, template_id in value.items():
        if not isinstance(template_id, str) or not TEMPLATE_ID.fullmatch(template_id):
            raise ValueError(f"{name}: not a WeChat template id")
    return dict(value)


_REQUIRED = object()


class _Checker:
    """Records one problem per bad value instead of stopping at the first."""

    def __init__(self, problems: dict[str, str]):
        self._problems = problems

    def value(self, scope: Mapping[str, Any] | None, label: str, parse: Any,
              default: Any = _REQUIRED) -> Any:
        if scope is None:  # the enclosing table is absent or bad: reported once by table()
            return None if default is _REQUIRED else default
        key = label.rsplit(".", 1)[-1]
        if key not in scope:
            if default is _REQUIRED:
                self._problems[label] = "is required"
                return None
            return default
        try:
            return parse(scope[key])
        except (ValueError, TypeError) as exc:
            self._problems[label] = f"{exc} (got {scope[key]!r})"
            return None

    def table(self, data: Mapping[str, Any], name: str, allowed: set[str] | None,
              required: bool) -> Mapping[str, Any] | None:
        if name not in data:
            if required:
                self._problems[name] = f"is required (a [{name}] table)"
            return None
        value = data[name]
        if not isinstance(value, dict):
            self._problems[name] = f"must be a table, e.g. [{name}] (got {value!r})"
            return None
        for key in sorted(set(value) - allowed) if allowed is not None else ():
            self._problems[f"{name}.{key}"] = f"unknown setting (allowed: {', '.join(sorted(allowed))})"
        return value


def _community_id(value: Any) -> str:
    if not isinstance(value, str) or not COMMUNITY_ID.match(value):
        raise ValueError("must be lowercase letters, digits and single hyphens, starting with a letter")
    if len(value) > MAX_COMMUNITY_ID_LENGTH:
        raise ValueError(f"must be at most {MAX_COMMUNITY_ID_LENGTH} characters (resource name limits)")
    if value == "hub" or value.startswith("hub-"):
        raise ValueError("must not start with 'hub' (timebank-hub-<district> names the district hubs)")
    return value


def _district_id(value: Any) -> str:
    if not isinstance(value, str) or not COMMUNITY_ID.match(value):
        raise ValueError("must be lowercase letters, digits and single hyphens, starting with a letter")
    # "timebank-hub-<id>" must leave a community's room (20) in resource names.
    if len(value) > MAX_COMMUNITY_ID_LENGTH - 4:
        raise ValueError(f"must be at most {MAX_COMMUNITY_ID_LENGTH - 4} characters (resource name limits)")
    return value


def _url(value: Any) -> str:
    if not isinstance(value, str) or not URL.match(value):
        raise ValueError("must be an http(s) URL such as https://abc.execute-api.cn-north-1.amazonaws.com.cn/api")
    return value.rstrip("/")


def _text(value: Any, low: int, high: int) -> str:
    if not isinstance(value, str) or not low <= len(value.strip()) <= high:
        raise ValueError(f"must be text of {low} to {high} characters")
    if any(ch in value for ch in "\r\n\t"):
        raise ValueError("must be a single line")
    return value.strip()


def _region(value: Any) -> str:
    if not isinstance(value, str) or not REGION.match(value):
        raise ValueError("must be an AWS region code such as cn-north-1, cn-northwest-1 or ap-east-1")
    return value


def _openids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of WeChat openids (the first admins)")
    for item in value:
        if not isinstance(item, str) or not OPENID.match(item):
            raise ValueError(f"{item!r} is not an openid (6-64 characters of A-Z a-z 0-9 _ -)")
    if len(set(value)) != len(value):
        raise ValueError("lists an openid twice")
    return tuple(value)


def _int(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"must be an integer from {low} to {high}")
    return value


def _log_retention(value: Any) -> int:
    if isinstance(value, bool) or value not in LOG_RETENTION_DAYS:
        raise ValueError(f"must be one of the CloudWatch retention periods {LOG_RETENTION_DAYS}")
    return value


def _policy_number(value: Any) -> str:
    if not isinstance(value, str) or not POLICY_NUMBER.match(value):
        raise ValueError("must be 4-40 characters of letters, digits, '-', '_' or '/'")
    return value


def _emails(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and EMAIL.match(v) for v in value):
        raise ValueError("must be a list of e-mail addresses")
    return tuple(value)


def _bucket(value: Any) -> str:
    if not isinstance(value, str) or not BUCKET_NAME.match(value):
        raise ValueError("must be an S3 bucket name (3-63 lowercase letters, digits, '.', '-')")
    return value


def _tariff_overrides(tariffs: Mapping[str, Any], problems: dict[str, str]) -> dict[str, dict[str, Any]]:
    # Imported here: the categories module is domain code (no AWS, no Chalice), and only the
    # tariff check needs it.
    from functions.core.errors import ValidationError
    from functions.requests.model import BUILTIN_CATEGORIES, apply_changes

    overrides: dict[str, dict[str, Any]] = {}
    for category_id, changes in sorted(tariffs.items()):
        name = f"tariffs.{category_id}"
        if category_id not in BUILTIN_CATEGORIES:
            problems[name] = (f"unknown category (known: {', '.join(sorted(BUILTIN_CATEGORIES))})")
            continue
        if not isinstance(changes, dict) or not changes:
            problems[name] = f"must be a table of tariff settings (got {changes!r})"
            continue
        unknown = sorted(set(changes) - set(TARIFF_FIELDS))
        for key in unknown:
            problems[f"{name}.{key}"] = f"not a tariff setting (allowed: {', '.join(TARIFF_FIELDS)})"
        if unknown:
            continue
        try:
            apply_changes(BUILTIN_CATEGORIES[category_id], changes)
        except ValidationError as exc:
            for key, message in exc.details.get("fields", {}).items():
                problems[f"{name}.{key}"] = f"{message} (got {changes.get(key)!r})"
            continue
        overrides[category_id] = dict(changes)
    return overrides
