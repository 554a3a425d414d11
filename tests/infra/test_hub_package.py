"""The district hub (通存通兑) is a stack of its own: ``make package COMMUNITY=hub-demo`` (and
``--all``) builds ``infra/hubs/demo.toml`` from ``functions/hub_app.py``, with the hub's own
tables and queues only, cfn-lint clean for global and China regions."""
from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from infra.config import ConfigError, district_secret_names, hub_key_secret_name, load_hub, parse_hub
from infra.lint import lint_template
from tests.infra.test_package import ZIP_PROBE, functions_by_handler

HUB_TABLES = {"timebank-hub-demo-events", "timebank-hub-demo-hub-positions", "timebank-hub-demo-hub-transfers",
              "timebank-hub-demo-signature-nonces"}


@pytest.fixture(scope="module")
def hub(packaged):
    return packaged.hubs["demo"]


def test_the_hub_is_packaged_from_its_own_file_and_app(hub):
    assert hub.summary["community"] == "hub-demo"
    assert set(hub.summary["tables"]) == HUB_TABLES
    assert hub.summary["queues"] == ["hub-deliveries", "hub-outcomes"]
    assert set(hub.summary["schedules"]) == {"hub-sweep", "hub-reconcile", "hub-relay-events"}
    assert "district hub demo" in hub.template["Description"]


def test_the_hub_template_is_cfn_lint_clean_in_global_and_china_regions(hub):
    assert lint_template(hub.template_path, ("us-east-1", "cn-north-1", "cn-northwest-1")) == []


def test_the_hub_has_no_community_resources(hub):
    assert not hub.of_type("AWS::S3::Bucket")
    names = {r["Properties"]["TableName"] for r in hub.of_type("AWS::DynamoDB::Table").values()}
    assert names == HUB_TABLES
    queues = {r["Properties"]["QueueName"] for r in hub.of_type("AWS::SQS::Queue").values()}
    assert all(q.startswith("timebank-hub-demo-") for q in queues), queues
    routes = {path for path in json.dumps(hub.template).split('"') if path.startswith("/v1/")}
    assert "/v1/requests" not in routes


def test_the_hub_reads_only_the_keys_it_shares_with_its_communities(hub):
    statements = [st for role in hub.of_type("AWS::IAM::Role").values()
                  for policy in role["Properties"]["Policies"] for st in policy["PolicyDocument"]["Statement"]]
    keys = [st for st in statements if st["Sid"] == "DistrictKeys"]
    assert keys and all(st == keys[0] for st in keys)   # the same statement in every function's role
    assert keys[0]["Action"] == ["secretsmanager:GetSecretValue"]
    resources = [r["Fn::Sub"] for r in keys[0]["Resource"]]
    assert resources == [f"arn:${{AWS::Partition}}:secretsmanager:${{AWS::Region}}:${{AWS::AccountId}}:secret:"
                         f"{hub_key_secret_name('demo', c)}-??????" for c in ("demo", "demo-east")]
    assert not [st for st in statements if str(st["Action"]).startswith("['s3:") or "ssm:" in str(st["Action"])]


def test_a_community_of_a_district_reads_its_own_district_keys_only(packaged):
    built = packaged.communities["demo"]
    statements = [st for role in built.of_type("AWS::IAM::Role").values()
                  for policy in role["Properties"]["Policies"] for st in policy["PolicyDocument"]["Statement"]]
    keys = [st for st in statements if st["Sid"] == "DistrictKeys"]
    assert keys and all(st == keys[0] for st in keys)
    names = sorted(district_secret_names("demo").values())
    assert [r["Fn::Sub"].rsplit(":secret:", 1)[1] for r in keys[0]["Resource"]] == [f"{n}-??????" for n in names]
    api = functions_by_handler(built)["app.app"]["Properties"]["Environment"]["Variables"]
    assert api["TIMEBANK_HUB_KEY_SECRET"] == "timebank/demo/hub-key"   # a name, never a key


def test_the_hub_zip_alone_imports_every_handler_and_serves(hub, tmp_path):
    with zipfile.ZipFile(hub.zip_path) as archive:
        archive.extractall(tmp_path)
    handlers = sorted(functions_by_handler(hub))
    api = functions_by_handler(hub)["app.app"]["Properties"]["Environment"]["Variables"]
    environment = {k: v for k, v in api.items() if isinstance(v, str)}
    environment.update({"AWS_REGION": "cn-north-1", "AWS_DEFAULT_REGION": "cn-north-1", "PATH": "/usr/bin:/bin"})
    stdlib = sorted({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})
    completed = subprocess.run(
        [sys.executable, "-I", "-S", "-c", ZIP_PROBE, str(tmp_path), json.dumps(stdlib), json.dumps(handlers)],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["resolved"] == {h: True for h in handlers}
    assert result["status"] == 200 and result["body"] == {"status": "ok", "stack": "hub"}
    assert {"app.hub_deliver", "app.hub_notify"} <= set(handlers) or len(handlers) >= 6


def test_a_hub_file_is_validated_before_anything_is_built():
    assert load_hub("demo").communities.keys() == {"demo", "demo-east"}
    with pytest.raises(ConfigError) as error:
        parse_hub({"id": "demo", "display_name": "x", "region": "cn-north-1",
                   "communities": {"Bad_Id": {"url": "https://x.example"}, "ok": {"url": "ftp://x"}}})
    assert set(error.value.problems) >= {"communities.Bad_Id", "communities.ok.url"}


def test_deploying_the_hub_checks_its_keys_exist_first(capsys):
    from infra.deploy import main

    assert main(["deploy", "--community", "hub-demo", "--dry-run"]) == 0
    script = capsys.readouterr().out
    for community in ("demo", "demo-east"):
        assert (f"secretsmanager describe-secret --region cn-north-1 --secret-id "
                f"{hub_key_secret_name('demo', community)}") in script
    assert "--stack-name timebank-hub-demo" in script and "Community=hub-demo" in script
