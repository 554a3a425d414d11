"""The process environment the functions read at import time.

``functions.core.settings`` and the PynamoDB table names are fixed when ``functions`` is first
imported, so this runs before that import.
"""
from __future__ import annotations

import os
from typing import MutableMapping

from local.config import RuntimeConfig

LOCAL_REGION = "cn-north-1"
# moto accepts any credentials; fixed fake ones guarantee a developer's real keys are never
# sent anywhere by the local runtime.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
}
# API.md: the local runtime's scheduler may shorten the 志愿汇 timeout, so a `timeout-…` exchange
# fails while one watches (the community file's 15 minutes is what deploys).
LOCAL_ZYH_TIMEOUT_MINUTES = "2"
COMMUNITY_DEFAULTS = {
    "TIMEBANK_COMMUNITY": "demo",
    "TIMEBANK_STAGE": "local",
    "TIMEBANK_ADMIN_OPENIDS": "admin-demo",
}


def community_file_environment(community_id: str) -> dict[str, str]:
    """What deploying ``infra/communities/<id>.toml`` would set, minus what only a deployed
    stack has (its stage, resource names, secret parameter names): ``make run`` and the
    package read the same file, so a tariff or an insurer is the same in both."""
    from infra.config import COMMUNITIES_DIR, load_community

    if not (COMMUNITIES_DIR / f"{community_id}.toml").is_file():
        return {}
    deployed_only = ("TIMEBANK_STAGE", "TIMEBANK_RESOURCE_PREFIX")
    return {name: value for name, value in load_community(community_id).environment().items()
            if name not in deployed_only and not name.endswith("_PARAMETER") and not name.startswith("POWERTOOLS_")}


def prepare_environment(config: RuntimeConfig, moto_endpoint: str | None,
                        env: MutableMapping[str, str] | None = None) -> None:
    """``moto_endpoint`` is the started server's URL (None in real-AWS mode)."""
    env = os.environ if env is None else env
    env.setdefault("TIMEBANK_COMMUNITY", COMMUNITY_DEFAULTS["TIMEBANK_COMMUNITY"])
    if not config.real_aws:
        # A local 志愿汇 exchange times out in minutes, not the deployed quarter hour.
        env.setdefault("TIMEBANK_ZYH_TIMEOUT_MINUTES", LOCAL_ZYH_TIMEOUT_MINUTES)
    for name, value in community_file_environment(env["TIMEBANK_COMMUNITY"]).items():
        env.setdefault(name, value)  # an explicit environment variable still wins
    for name, value in COMMUNITY_DEFAULTS.items():
        env.setdefault(name, value)  # after the file: its admins win over the demo's
    # Business metrics are CloudWatch EMF lines on stdout: on a laptop they only bury the log.
    env.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    if config.real_aws:
        # The developer's own credentials, profile and region reach the deployed stack.
        env.pop("AWS_ENDPOINT_URL", None)
        return
    assert moto_endpoint, "the moto server must be started first"
    env["AWS_ENDPOINT_URL"] = moto_endpoint
    env.update(FAKE_CREDENTIALS)
    env.pop("AWS_PROFILE", None)
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or LOCAL_REGION
    env["AWS_REGION"] = region
    env["AWS_DEFAULT_REGION"] = region
