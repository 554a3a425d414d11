"""make deploy / make destroy: the exact AWS CLI commands, and the guards around tear-down."""
from __future__ import annotations

import subprocess

from infra.deploy import destroy_steps, execute, main, render
from infra.config import load_community


def dry_run(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = main(list(argv), runner=_no_aws)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def _no_aws(argv):
    raise AssertionError(f"a dry run ran {argv}")


def test_deploy_dry_run_prints_package_and_deploy_commands(capsys):
    code, lines, _ = dry_run(capsys, "deploy", "--community", "demo", "--dry-run")
    assert code == 0
    assert lines[0].startswith("# pre-flight") and "cfn-lint build/demo/template.json" in lines[0]
    assert lines[1:] == [
        "set -euo pipefail",
        "aws ssm get-parameter --region cn-north-1 --name /timebank/demo/token-secret --query Parameter.Name --output text",
        "aws ssm get-parameter --region cn-north-1 --name /timebank/demo/wechat-app-id --query Parameter.Name --output text",
        "aws ssm get-parameter --region cn-north-1 --name /timebank/demo/wechat-app-secret --query Parameter.Name --output text",
        # 通存通兑: the district keys' names (infra/README.md, District hub)
        "aws secretsmanager describe-secret --region cn-north-1 --secret-id timebank/demo/hub-key --query Name --output text",
        "aws secretsmanager describe-secret --region cn-north-1 --secret-id timebank/demo/phone-hash-key --query Name --output text",
        "aws cloudformation package --region cn-north-1 --template-file build/demo/template.json "
        "--s3-bucket timebank-artifacts-demo --s3-prefix timebank/demo "
        "--output-template-file build/demo/packaged.json --use-json",
        "aws cloudformation deploy --region cn-north-1 --template-file build/demo/packaged.json "
        "--stack-name timebank-demo --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND "
        "--no-fail-on-empty-changeset --tags Application=timebank Community=demo",
        "aws cloudformation describe-stacks --region cn-north-1 --stack-name timebank-demo "
        "--query 'Stacks[0].Outputs' --output table",
    ]


def test_deploy_uses_the_communitys_region_and_the_given_bucket_and_profile(capsys):
    code, lines, _ = dry_run(capsys, "deploy", "--community", "fuyuan", "--dry-run",
                             "--artifact-bucket", "other-bucket", "--profile", "district-it")
    assert code == 0
    package = next(line for line in lines if "cloudformation package" in line)
    assert "--region cn-northwest-1 --profile district-it" in package
    assert "--s3-bucket other-bucket" in package
    assert all("--region cn-northwest-1" in line for line in lines[2:])


def test_deploy_refuses_without_a_build(capsys, tmp_path):
    code, _, err = dry_run(capsys, "deploy", "--community", "demo", "--build-dir", str(tmp_path))
    assert code == 2 and "make package COMMUNITY=demo" in err


def test_destroy_refuses_without_confirmation(capsys):
    for confirm in ([], ["--confirm", "fuyuan"]):
        code, lines, err = dry_run(capsys, "destroy", "--community", "demo", "--dry-run", *confirm)
        assert code == 2 and lines == []
        assert "--confirm demo" in err


def test_destroy_keeps_the_data_by_default(capsys):
    code, lines, _ = dry_run(capsys, "destroy", "--community", "demo", "--confirm", "demo", "--dry-run")
    assert code == 0
    assert lines == [
        "set -euo pipefail",
        "aws cloudformation delete-stack --region cn-north-1 --stack-name timebank-demo",
        "aws cloudformation wait stack-delete-complete --region cn-north-1 --stack-name timebank-demo",
    ]


def test_destroy_with_delete_data_lifts_protection_then_deletes_tables_and_bucket(capsys):
    code, lines, _ = dry_run(capsys, "destroy", "--community", "fuyuan", "--confirm", "fuyuan",
                             "--delete-data", "--dry-run")
    assert code == 0
    assert lines == [
        "set -euo pipefail",
        "TABLES=$(aws cloudformation list-stack-resources --region cn-northwest-1 --stack-name timebank-fuyuan "
        "--query \"StackResourceSummaries[?ResourceType=='AWS::DynamoDB::Table'].PhysicalResourceId\" --output text)",
        "BUCKET=$(aws cloudformation list-stack-resources --region cn-northwest-1 --stack-name timebank-fuyuan "
        "--query \"StackResourceSummaries[?LogicalResourceId=='EvidenceBucket'].PhysicalResourceId\" --output text)",
        "aws cloudformation delete-stack --region cn-northwest-1 --stack-name timebank-fuyuan",
        "aws cloudformation wait stack-delete-complete --region cn-northwest-1 --stack-name timebank-fuyuan",
        'for ITEM in $TABLES; do aws dynamodb update-table --region cn-northwest-1 --table-name "$ITEM" '
        "--no-deletion-protection-enabled; done",
        'for ITEM in $TABLES; do aws dynamodb wait table-exists --region cn-northwest-1 --table-name "$ITEM"; done',
        'for ITEM in $TABLES; do aws dynamodb delete-table --region cn-northwest-1 --table-name "$ITEM"; done',
        'aws s3 rb --region cn-northwest-1 "s3://$BUCKET" --force',
    ]


def test_the_dry_run_script_is_valid_bash(capsys, tmp_path):
    main(["destroy", "--community", "demo", "--confirm", "demo", "--delete-data", "--dry-run"])
    script = tmp_path / "destroy.sh"
    script.write_text(capsys.readouterr().out, encoding="utf-8")
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


def test_execution_runs_what_the_dry_run_prints_with_captured_names():
    steps = destroy_steps(load_community("demo"), delete_data=True)
    ran: list[list[str]] = []

    def fake_aws(argv):
        ran.append(argv)
        if "ResourceType=='AWS::DynamoDB::Table'" in " ".join(argv):
            return "timebank-demo-requests\ttimebank-demo-ledger-transfers\n"
        if "LogicalResourceId=='EvidenceBucket'" in " ".join(argv):
            return "timebank-demo-evidence-123456789012\n"
        return ""

    execute(steps, fake_aws)
    commands = [" ".join(argv) for argv in ran]
    assert commands[2:] == [
        "aws cloudformation delete-stack --region cn-north-1 --stack-name timebank-demo",
        "aws cloudformation wait stack-delete-complete --region cn-north-1 --stack-name timebank-demo",
        "aws dynamodb update-table --region cn-north-1 --table-name timebank-demo-requests --no-deletion-protection-enabled",
        "aws dynamodb update-table --region cn-north-1 --table-name timebank-demo-ledger-transfers --no-deletion-protection-enabled",
        "aws dynamodb wait table-exists --region cn-north-1 --table-name timebank-demo-requests",
        "aws dynamodb wait table-exists --region cn-north-1 --table-name timebank-demo-ledger-transfers",
        "aws dynamodb delete-table --region cn-north-1 --table-name timebank-demo-requests",
        "aws dynamodb delete-table --region cn-north-1 --table-name timebank-demo-ledger-transfers",
        "aws s3 rb --region cn-north-1 s3://timebank-demo-evidence-123456789012 --force",
    ]
    assert len(ran) == len(commands) and render(steps[0]).startswith("TABLES=$(aws cloudformation")


def test_execution_stops_when_a_name_cannot_be_read():
    steps = destroy_steps(load_community("demo"), delete_data=True)
    ran: list[list[str]] = []

    def stack_without_tables(argv):
        ran.append(argv)
        return "None\n"

    try:
        execute(steps, stack_without_tables)
    except RuntimeError as error:
        assert "returned nothing" in str(error)
    else:
        raise AssertionError("execution went on without table names")
    assert not any("delete-stack" in argv for argv in ran)
