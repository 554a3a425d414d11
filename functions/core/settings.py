"""Per-community settings, read from the environment of the function.

Deployment (infra/) and the local runtime (local/) both set these variables; nothing else
reads ``os.environ``. Secrets are never values here, only the names of SSM parameters /
Secrets Manager secrets that adapters resolve at run time.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache

LOCAL_STAGES = frozenset({"local", "test"})
# Local and test stages insure against a placeholder policy; deployed stages must configure one.
LOCAL_INSURER = "本地测试保险（非真实保单）"
LOCAL_POLICY_NUMBER = "LOCAL-TEST-POLICY"
LOCAL_ZYH_KEY = "local-zyh-signing-key"


@dataclass(frozen=True)
class Settings:
    community_id: str = "demo"
    community_name: str = ""   # display_name of infra/communities/<id>.toml (exports' 服务组织)
    stage: str = "local"
    resource_prefix: str = "timebank-demo"
    admin_openids: tuple[str, ...] = ()
    starting_credits: int = 300
    household_balance_cap: int = 0  # 0 = no cap
    token_ttl_seconds: int = 7 * 24 * 3600
    # In deployed stages these are SSM parameter names; locally the values themselves.
    token_secret: str = "local-dev-token-secret-change-me"
    token_secret_parameter: str = ""
    wechat_app_id_parameter: str = ""
    wechat_app_secret_parameter: str = ""
    wechat_api_base: str = "https://api.weixin.qq.com"
    ledger_shards: int = 8
    evidence_bucket: str = ""
    evidence_retention_days: int = 180
    # The community's group accident policy (infra/ sets both from [insurance] of the community).
    insurer: str = ""
    insurance_policy_number: str = ""
    insurance_buffer_minutes: int = 30
    # Notifications: logical template ("match", "reminder") → WeChat subscribe template id, or
    # {"id": ..., "fields": {logical field: WeChat key}} (see functions/notifications/templates.py).
    wechat_templates: dict = field(default_factory=dict)
    wechat_miniprogram_state: str = "formal"  # formal / trial / developer: which build a tap opens
    reminder_lead_minutes: int = 60
    match_notify_count: int = 3
    # The lifecycle's time limits (functions.requests.model.Limits).
    request_horizon_days: int = 90
    checkin_early_minutes: int = 120
    backdating_window_hours: int = 48
    claim_tolerance_minutes: int = 15
    no_show_after_minutes: int = 30
    no_show_action: str = "release"
    overdue_after_hours: int = 12
    overdue_action: str = "flag"
    # Family rules: residents at least this old may be served through a proxy (亲情代理).
    proxy_elderly_age: int = 60
    # Risk controls (0 switches a limit off): per volunteer per day, per pair of households per
    # day; flags for repeated pairs within a window and for services both ways in a short time.
    risk_daily_minutes: int = 480
    risk_daily_services: int = 6
    risk_pair_daily: int = 2
    risk_repeated_pair_count: int = 5
    risk_flag_window_days: int = 7
    risk_rapid_cycle_hours: int = 24
    queue_urls: dict[str, str] = field(default_factory=dict)
    # Point kinds: the [assets] table of the community file (functions.ledger.model.point_kinds_from).
    assets: dict = field(default_factory=dict)
    # Minimum age (calendar years) for converting points and redeeming vouchers; 0 = none.
    min_redeem_age: int = 0
    # 志愿汇: the partner's API (empty = no exchange outside the local stages), the HMAC key
    # (locally the value, deployed an SSM parameter name), and the exchange's terms.
    zyh_api_base: str = ""
    zyh_key: str = LOCAL_ZYH_KEY
    zyh_key_parameter: str = ""
    zyh_timeout_minutes: int = 15
    zyh_coins_per_minute: int = 1
    # Which stack this process is: "community" or "hub" (the district clearing hub). Each stack
    # creates and uses only its own tables and queues.
    stack: str = "community"
    # 通存通兑: the district this community belongs to ("" = none, cross-community transfers are
    # refused), the hub's URL, and Secrets Manager names (never values) of the key this community
    # shares with the hub and of the district-wide key of the keyed phone hash.
    district_id: str = ""
    hub_url: str = ""
    hub_key_secret: str = ""
    phone_hash_secret: str = ""
    district_max_transfer: int = 0   # minutes per cross-community transfer, 0 = no limit
    # The hub: community id -> {"url": its API, "key_secret": name of the key shared with it}.
    hub_communities: dict = field(default_factory=dict)
    signature_window_seconds: int = 300

    @property
    def is_local(self) -> bool:
        return self.stage in LOCAL_STAGES

    def table_name(self, logical: str) -> str:
        return f"{self.resource_prefix}-{logical}"


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "cn-north-1"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _list(name: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in os.environ.get(name, "").split(",") if v.strip())


def _json_object(name: str) -> dict:
    raw = os.environ.get(name, "")
    if not raw.strip():
        return {}
    value = json.loads(raw)  # a malformed value is a deployment fault: fail loudly
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object")
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    community = os.environ.get("TIMEBANK_COMMUNITY", "demo")
    stage = os.environ.get("TIMEBANK_STAGE", "local")
    queue_urls = {
        key[len("TIMEBANK_QUEUE_URL_"):].lower(): value
        for key, value in os.environ.items() if key.startswith("TIMEBANK_QUEUE_URL_")
    }
    return Settings(
        community_id=community,
        community_name=os.environ.get("TIMEBANK_COMMUNITY_NAME", ""),
        stage=stage,
        resource_prefix=os.environ.get("TIMEBANK_RESOURCE_PREFIX", f"timebank-{community}"),
        admin_openids=_list("TIMEBANK_ADMIN_OPENIDS"),
        starting_credits=_int("TIMEBANK_STARTING_CREDITS", 300),
        household_balance_cap=_int("TIMEBANK_HOUSEHOLD_BALANCE_CAP", 0),
        token_ttl_seconds=_int("TIMEBANK_TOKEN_TTL_SECONDS", 7 * 24 * 3600),
        token_secret=os.environ.get("TIMEBANK_TOKEN_SECRET", "") if stage not in LOCAL_STAGES
        else os.environ.get("TIMEBANK_TOKEN_SECRET", "local-dev-token-secret-change-me"),
        token_secret_parameter=os.environ.get("TIMEBANK_TOKEN_SECRET_PARAMETER", ""),
        wechat_app_id_parameter=os.environ.get("TIMEBANK_WECHAT_APP_ID_PARAMETER", ""),
        wechat_app_secret_parameter=os.environ.get("TIMEBANK_WECHAT_APP_SECRET_PARAMETER", ""),
        wechat_api_base=os.environ.get("TIMEBANK_WECHAT_API_BASE", "https://api.weixin.qq.com"),
        ledger_shards=_int("TIMEBANK_LEDGER_SHARDS", 8),
        evidence_bucket=os.environ.get("TIMEBANK_EVIDENCE_BUCKET", f"timebank-{community}-evidence"),
        evidence_retention_days=_int("TIMEBANK_EVIDENCE_RETENTION_DAYS", 180),
        insurer=os.environ.get("TIMEBANK_INSURER", "") or (LOCAL_INSURER if stage in LOCAL_STAGES else ""),
        insurance_policy_number=(os.environ.get("TIMEBANK_INSURANCE_POLICY_NUMBER")
                                 or os.environ.get("TIMEBANK_INSURANCE_POLICY", "")
                                 or (LOCAL_POLICY_NUMBER if stage in LOCAL_STAGES else "")),
        insurance_buffer_minutes=_int("TIMEBANK_INSURANCE_BUFFER_MINUTES", 30),
        wechat_templates=_json_object("TIMEBANK_WECHAT_TEMPLATES"),
        wechat_miniprogram_state=os.environ.get("TIMEBANK_WECHAT_MINIPROGRAM_STATE", "formal"),
        reminder_lead_minutes=_int("TIMEBANK_REMINDER_LEAD_MINUTES", 60),
        match_notify_count=_int("TIMEBANK_MATCH_NOTIFY_COUNT", 3),
        request_horizon_days=_int("TIMEBANK_REQUEST_HORIZON_DAYS", 90),
        checkin_early_minutes=_int("TIMEBANK_CHECKIN_EARLY_MINUTES", 120),
        backdating_window_hours=_int("TIMEBANK_BACKDATING_WINDOW_HOURS", 48),
        claim_tolerance_minutes=_int("TIMEBANK_CLAIM_TOLERANCE_MINUTES", 15),
        no_show_after_minutes=_int("TIMEBANK_NO_SHOW_AFTER_MINUTES", 30),
        no_show_action=os.environ.get("TIMEBANK_NO_SHOW_ACTION", "release"),
        overdue_after_hours=_int("TIMEBANK_OVERDUE_AFTER_HOURS", 12),
        overdue_action=os.environ.get("TIMEBANK_OVERDUE_ACTION", "flag"),
        proxy_elderly_age=_int("TIMEBANK_PROXY_ELDERLY_AGE", 60),
        risk_daily_minutes=_int("TIMEBANK_RISK_DAILY_MINUTES", 480),
        risk_daily_services=_int("TIMEBANK_RISK_DAILY_SERVICES", 6),
        risk_pair_daily=_int("TIMEBANK_RISK_PAIR_DAILY", 2),
        risk_repeated_pair_count=_int("TIMEBANK_RISK_REPEATED_PAIR_COUNT", 5),
        risk_flag_window_days=_int("TIMEBANK_RISK_FLAG_WINDOW_DAYS", 7),
        risk_rapid_cycle_hours=_int("TIMEBANK_RISK_RAPID_CYCLE_HOURS", 24),
        queue_urls=queue_urls,
        assets=_json_object("TIMEBANK_ASSETS"),
        min_redeem_age=_int("TIMEBANK_MIN_REDEEM_AGE", 0),
        zyh_api_base=os.environ.get("TIMEBANK_ZYH_API_BASE", ""),
        zyh_key=os.environ.get("TIMEBANK_ZYH_KEY", LOCAL_ZYH_KEY if stage in LOCAL_STAGES else ""),
        zyh_key_parameter=os.environ.get("TIMEBANK_ZYH_KEY_PARAMETER", ""),
        zyh_timeout_minutes=_int("TIMEBANK_ZYH_TIMEOUT_MINUTES", 15),
        zyh_coins_per_minute=_int("TIMEBANK_ZYH_COINS_PER_MINUTE", 1),
        stack=os.environ.get("TIMEBANK_STACK", "community") or "community",
        district_id=os.environ.get("TIMEBANK_DISTRICT", ""),
        hub_url=os.environ.get("TIMEBANK_HUB_URL", "").rstrip("/"),
        hub_key_secret=os.environ.get("TIMEBANK_HUB_KEY_SECRET", ""),
        phone_hash_secret=os.environ.get("TIMEBANK_PHONE_HASH_SECRET", ""),
        district_max_transfer=_int("TIMEBANK_DISTRICT_MAX_TRANSFER", 0),
        hub_communities=_json_object("TIMEBANK_HUB_COMMUNITIES"),
        signature_window_seconds=_int("TIMEBANK_SIGNATURE_WINDOW_SECONDS", 300),
    )


def reset_settings() -> None:
    """Tests and the local runtime change the environment, then call this."""
    get_settings.cache_clear()
