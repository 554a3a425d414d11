"""``make import-residents COMMUNITY=<id> FILE=<path> [DRY_RUN=1]``: the roster import of
``functions.identity.cli`` with the community's settings read from ``infra/communities/<id>.toml``
first (its starting credits, admins, district), as its deployed stack has them.

Where it writes: ``AWS_ENDPOINT_URL`` when set (``make run``'s moto: http://127.0.0.1:5005),
otherwise the account and region of the caller's AWS credentials (the community's tables,
``timebank-<id>-…``)."""
from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    community = os.environ.setdefault("TIMEBANK_COMMUNITY", "demo")
    from local.environment import community_file_environment

    for name, value in community_file_environment(community).items():
        os.environ.setdefault(name, value)  # an explicit environment variable still wins
    if os.environ.get("AWS_REGION"):
        # boto3 reads AWS_DEFAULT_REGION (the Lambda runtime sets both): the secrets client too.
        os.environ.setdefault("AWS_DEFAULT_REGION", os.environ["AWS_REGION"])
    from functions.identity.cli import main as cli_main  # after the environment: settings are read at import

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
