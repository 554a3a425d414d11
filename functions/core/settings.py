"""Per-community settings, read from the environment of the function.

Deployment (infra/) and the local runtime (local/) both set these variables; nothing else
reads ``os.environ``. Secrets are never values here, only the names of SSM parameters /
Secrets Manager secrets that adapters resolve at run time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

LOCAL_STAGES = frozenset({"local", "test"})


@dataclass(frozen=True)
class Settings:
    community_id: str = "demo"
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
    queue_urls: dict[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.stage in LOCAL_STAGES

    def table_name(self, logical: str) -> str:
        return f"{self.resource_prefix}-{logical}"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _list(name: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in os.environ.get(name, "").split(",") if v.strip())


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
        queue_urls=queue_urls,
    )


def reset_settings() -> None:
    """Tests and the local runtime change the environment, then call this."""
    get_settings.cache_clear()
