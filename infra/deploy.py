"""Deploy or tear down one community's stack with the standard AWS CLI.

    python -m infra.deploy deploy  --community demo [--dry-run] [--artifact-bucket B] [--profile P]
    python -m infra.deploy destroy --community demo --confirm demo [--delete-data] [--dry-run]

``--dry-run`` prints the exact commands as a bash script (review it, or run it by hand); without
it the same commands run, in the same order, stopping at the first failure.

Tear-down is deliberately two-staged. ``destroy`` deletes the stack (API, functions, queues,
schedules, alarms) but CloudFormation RETAINS the tables (ledger, residents) and the evidence
bucket, and it refuses to start unless ``--confirm`` repeats the community id.
``--delete-data`` additionally lifts the tables' deletion protection, deletes them and
empties and deletes the evidence bucket: irreversible (see infra/README.md, "Tear-down").
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from infra.config import APPLICATION, CommunityConfig, ConfigError, load_stack
from infra.lint import PARTITION_REGIONS, lint_template
from infra.vendoring import REPO_ROOT

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]  # roles; the SAM transform
LOOP_VARIABLE = "ITEM"
_VARIABLE = re.compile(r"\$\{?([A-Z_]+)\}?")


@dataclass(frozen=True)
class Step:
    """One command line. ``capture`` stores its output (words) in a variable; ``for_each`` runs
    it once per word of a variable, with ``$ITEM`` standing for the word."""
    argv: tuple[str, ...]
    capture: str | None = None
    for_each: str | None = None


def _quote(token: str) -> str:
    # Tokens naming a variable are double-quoted so the shell expands them; JMESPath queries
    # with 'literals' are double-quoted to stay readable; everything else is shlex-quoted.
    if _VARIABLE.search(token) or ("'" in token and not set(token) & set('"$`\\!')):
        return '"' + token + '"'
    return shlex.quote(token)


def render(step: Step) -> str:
    line = " ".join(_quote(token) for token in step.argv)
    if step.capture:
        return f"{step.capture}=$({line})"
    if step.for_each:
        return f"for {LOOP_VARIABLE} in ${step.for_each}; do {line}; done"
    return line


def render_script(steps: list[Step]) -> str:
    return "\n".join(["set -euo pipefail", *(render(step) for step in steps)]) + "\n"


class _Aws:
    def __init__(self, config: CommunityConfig, profile: str | None):
        self._region = config.region
        self._profile = profile

    def __call__(self, service: str, command: str, *args: str) -> tuple[str, ...]:
        # ``command`` may be two words ("wait stack-delete-complete"): options come after it.
        base = ["aws", service, *command.split(), "--region", self._region]
        if self._profile:
            base += ["--profile", self._profile]
        return tuple(base + list(args))


def deploy_steps(config: CommunityConfig, build_dir: Path, artifact_bucket: str,
                 profile: str | None = None) -> list[Step]:
    aws = _Aws(config, profile)
    target = build_dir / config.key
    template = target / "template.json"
    packaged = target / "packaged.json"
    # The secrets must exist before the functions need them; only names are read, never values.
    steps = [Step(aws("ssm", "get-parameter", "--name", name, "--query", "Parameter.Name",
                       "--output", "text"))
              for name in config.secret_parameters.values()]
    # 通存通兑: the district keys (Secrets Manager) must exist too (infra/README.md, District hub).
    steps += [Step(aws("secretsmanager", "describe-secret", "--secret-id", name, "--query", "Name",
                       "--output", "text"))
              for name in config.secret_names]
    steps += [
        Step(aws("cloudformation", "package", "--template-file", str(template),
                 "--s3-bucket", artifact_bucket, "--s3-prefix", f"{APPLICATION}/{config.key}",
                 "--output-template-file", str(packaged), "--use-json")),
        Step(aws("cloudformation", "deploy", "--template-file", str(packaged),
                 "--stack-name", config.stack_name, "--capabilities", *CAPABILITIES,
                 "--no-fail-on-empty-changeset",
                 "--tags", f"Application={APPLICATION}", f"Community={config.key}")),
        Step(aws("cloudformation", "describe-stacks", "--stack-name", config.stack_name,
                 "--query", "Stacks[0].Outputs", "--output", "table")),
    ]
    return steps


def destroy_steps(config: CommunityConfig, delete_data: bool, profile: str | None = None) -> list[Step]:
    aws = _Aws(config, profile)
    stack = config.stack_name
    steps: list[Step] = []
    if delete_data:
        # Read the retained resources' names from the stack before it is gone (list-, not
        # describe-stack-resources: the latter stops at 100 resources).
        steps += [
            Step(aws("cloudformation", "list-stack-resources", "--stack-name", stack, "--query",
                     "StackResourceSummaries[?ResourceType=='AWS::DynamoDB::Table']"
                     ".PhysicalResourceId", "--output", "text"), capture="TABLES"),
            Step(aws("cloudformation", "list-stack-resources", "--stack-name", stack, "--query",
                     "StackResourceSummaries[?LogicalResourceId=='EvidenceBucket']"
                     ".PhysicalResourceId", "--output", "text"), capture="BUCKET"),
        ]
    steps += [
        Step(aws("cloudformation", "delete-stack", "--stack-name", stack)),
        Step(aws("cloudformation", "wait stack-delete-complete", "--stack-name", stack)),
    ]
    if delete_data:
        item = "$" + LOOP_VARIABLE
        steps += [
            Step(aws("dynamodb", "update-table", "--table-name", item,
                     "--no-deletion-protection-enabled"), for_each="TABLES"),
            Step(aws("dynamodb", "wait table-exists", "--table-name", item), for_each="TABLES"),
            Step(aws("dynamodb", "delete-table", "--table-name", item), for_each="TABLES"),
            Step(aws("s3", "rb", "s3://$BUCKET", "--force")),
        ]
    return steps


Runner = Callable[[list[str]], str]


def run_aws(argv: list[str]) -> str:
    completed = subprocess.run(argv, cwd=REPO_ROOT, check=True, text=True,
                               stdout=subprocess.PIPE)
    if completed.stdout:
        print(completed.stdout, end="", flush=True)
    return completed.stdout


def execute(steps: list[Step], runner: Runner = run_aws) -> None:
    """Run the steps as the rendered script would: same commands, same order."""
    variables: dict[str, list[str]] = {}

    def expand(token: str, item: str | None) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == LOOP_VARIABLE and item is not None:
                return item
            return " ".join(variables[name])
        return _VARIABLE.sub(value, token)

    for step in steps:
        if step.for_each:
            for item in variables[step.for_each]:
                runner([expand(token, item) for token in step.argv])
            continue
        output = runner([expand(token, None) for token in step.argv])
        if step.capture:
            words = output.split()
            if not words or words == ["None"]:
                raise RuntimeError(f"{render(step)} returned nothing")
            variables[step.capture] = words


def main(argv: list[str] | None = None, runner: Runner = run_aws) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["deploy", "destroy"])
    parser.add_argument("--community", required=True)
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--profile", help="AWS CLI profile (credentials of the target account)")
    parser.add_argument("--build-dir", type=Path, default=Path("build"),
                        help="where `make package` wrote the artefacts (default: build)")
    parser.add_argument("--artifact-bucket",
                        help="S3 bucket for the code package (default: [deploy] of the community)")
    parser.add_argument("--confirm", metavar="ID", help="destroy: repeat the community id")
    parser.add_argument("--delete-data", action="store_true",
                        help="destroy: also delete the retained tables and evidence bucket")
    args = parser.parse_args(argv)

    try:
        config = load_stack(args.community)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.action == "deploy":
        bucket = args.artifact_bucket or config.artifact_bucket
        if not bucket:
            print("error: no artifact bucket: set [deploy] artifact_bucket in "
                  f"infra/communities/{config.key}.toml or pass --artifact-bucket", file=sys.stderr)
            return 2
        steps = deploy_steps(config, args.build_dir, bucket, args.profile)
        template = args.build_dir / config.key / "template.json"
        if args.dry_run:
            print(f"# pre-flight, in-process: cfn-lint {template} for {' '.join(PARTITION_REGIONS)}")
        else:
            problems = _check_build(config, args.build_dir) or lint_template(template)
            if problems:
                print("error: " + "\n  ".join(problems), file=sys.stderr)
                return 2
    else:
        if args.confirm != config.key:
            what = ("the stack AND, irreversibly, the ledger tables and the evidence bucket"
                    if args.delete_data else
                    "the stack (API, functions, queues, schedules, alarms); tables and the "
                    "evidence bucket are retained")
            print(f"error: destroying community {config.key} ({config.display_name}) in "
                  f"{config.region} deletes {what}. Repeat the id to confirm: "
                  f"--confirm {config.key}", file=sys.stderr)
            return 2
        steps = destroy_steps(config, args.delete_data, args.profile)

    if args.dry_run:
        print(render_script(steps), end="")
        return 0
    try:
        execute(steps, runner)
    except subprocess.CalledProcessError as exc:
        print(f"error: {shlex.join(exc.cmd)} failed with exit code {exc.returncode}", file=sys.stderr)
        return 1
    if args.action == "destroy" and not args.delete_data:
        print(f"Stack {config.stack_name} deleted. Retained: the {APPLICATION}-{config.key}-* tables "
              "and the evidence bucket (see infra/README.md, Tear-down).")
    return 0


def _check_build(config: CommunityConfig, build_dir: Path) -> list[str]:
    summary_path = build_dir / config.key / "build.json"
    if not summary_path.is_file():
        return [f"{summary_path} not found: run `make package COMMUNITY={config.key}` first"]
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    if summary.get("community") != config.key:
        return [f"{summary_path} was built for {summary.get('community')!r}"]
    return []


if __name__ == "__main__":
    sys.exit(main())
