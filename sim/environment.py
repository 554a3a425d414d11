"""The simulated community's environment, set before ``functions`` is imported (settings and
table names are fixed at import time): the demo community's file as ``make run`` reads it, on
an in-process moto, without the district (see sim/README.md: cross-community transfers)."""
from __future__ import annotations

import os

ADMIN = "admin-demo"
MERCHANT_OWNER = "sim-merchant-owner"

# What only a district member has: the hub's URL and keys. Left out (no hub in this world).
DISTRICT_ONLY = ("TIMEBANK_DISTRICT", "TIMEBANK_HUB_URL", "TIMEBANK_HUB_KEY_SECRET", "TIMEBANK_PHONE_HASH_SECRET")


def use_simulation_environment() -> None:
    from local.environment import community_file_environment

    keep = {k: v for k, v in os.environ.items()
            if k not in ("AWS_ENDPOINT_URL", "AWS_PROFILE") and not k.startswith(("TIMEBANK_", "AWS_", "POWERTOOLS_"))}
    env = {name: value for name, value in community_file_environment("demo").items()
           if name not in DISTRICT_ONLY and not name.startswith("TIMEBANK_DISTRICT")}
    env.update({
        "AWS_ACCESS_KEY_ID": "sim", "AWS_SECRET_ACCESS_KEY": "sim", "AWS_SESSION_TOKEN": "sim",
        "AWS_DEFAULT_REGION": "cn-north-1", "AWS_REGION": "cn-north-1",
        "TIMEBANK_COMMUNITY": "demo", "TIMEBANK_STAGE": "local", "TIMEBANK_ADMIN_OPENIDS": ADMIN,
        "TIMEBANK_TOKEN_SECRET": "sim-token-secret",
        # The business metrics' EMF lines are not the simulation's output.
        "POWERTOOLS_METRICS_DISABLED": "true",
    })
    os.environ.clear()
    os.environ.update(keep)
    os.environ.update(env)
