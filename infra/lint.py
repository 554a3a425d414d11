"""cfn-lint, offline, for the regions a community stack must deploy to.

    python -m infra.lint build/demo/template.json [--regions us-east-1 cn-north-1 ...]

The same template serves the global partition and China (``aws-cn``): it is linted against a
global region and both China regions, whatever the community's own region is.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PARTITION_REGIONS = ("us-east-1", "cn-north-1", "cn-northwest-1")


def lint_template(path: Path, regions: tuple[str, ...] = PARTITION_REGIONS) -> list[str]:
    """Errors and warnings of cfn-lint (informational findings are not reported)."""
    from cfnlint.api import ManualArgs, lint

    matches = lint(path.read_text(encoding="utf-8"),
                   config=ManualArgs(regions=list(regions)))
    return [f"{m.rule.id} {m.message} ({path.name}:{m.linenumber})" for m in matches
            if m.rule.severity in ("error", "warning")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.lint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("templates", nargs="+", type=Path)
    parser.add_argument("--regions", nargs="+", default=list(PARTITION_REGIONS))
    args = parser.parse_args(argv)
    failed = False
    for template in args.templates:
        problems = lint_template(template, tuple(args.regions))
        for problem in problems:
            print(problem)
        failed = failed or bool(problems)
        print(f"{template}: {'FAILED' if problems else 'ok'} ({', '.join(args.regions)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
