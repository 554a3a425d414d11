"""The packaged stacks: what the templates declare, and that the zip runs on its own.

Expectations come from the app and registries as a fresh process imports them (``app_facts``,
community "facts"), not from what the packager reports about itself.
"""
from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from infra.config import COMMUNITIES_DIR, community_ids, district_secret_names
from infra.lint import lint_template
from infra.template import iter_strings

COMMUNITIES = community_ids()
DATA_PLANE = ("dynamodb:", "sqs:", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "ssm:GetParameter",
              "secretsmanager:")


def community_file(community: str) -> dict:
    return tomllib.loads((COMMUNITIES_DIR / f"{community}.toml").read_text(encoding="utf-8"))


def builds(packaged):
    return [*packaged.communities.values(), packaged.sample]


def functions_by_handler(built):
    return {r["Properties"]["Handler"]: r for r in built.of_type("AWS::Serverless::Function").values()}


def logical(name: str, community: str) -> str:
    prefix = f"timebank-{community}-"
    assert name.startswith(prefix), name
    return name[len(prefix):]


def test_make_package_builds_every_community_file(packaged):
    assert COMMUNITIES and set(COMMUNITIES) >= {"demo", "fuyuan"}
    for community in COMMUNITIES:
        built = packaged.communities[community]
        assert built.summary["community"] == community
        assert built.zip_path.stat().st_size > 0
        assert built.template["Transform"] == "AWS::Serverless-2016-10-31"
        stacks = len(COMMUNITIES) + len(packaged.hubs)   # --all: every community and district hub
        assert f"packaged {stacks} of {stacks}" in packaged.output


@pytest.mark.parametrize("which", [*COMMUNITIES, "sample"])
def test_cfn_lint_clean_in_global_and_china_regions(packaged, which):
    built = packaged.sample if which == "sample" else packaged.communities[which]
    assert lint_template(built.template_path, ("us-east-1", "cn-north-1", "cn-northwest-1")) == []


# ---- tables ---------------------------------------------------------------------------------

def test_tables_are_the_registry_with_protection(packaged, app_facts):
    expected = {logical(d["TableName"], "facts"): d for d in app_facts["tables"]}
    assert expected
    for community, built in packaged.communities.items():
        tables = {logical(t["Properties"]["TableName"], community): t
                  for t in built.of_type("AWS::DynamoDB::Table").values()}
        assert set(tables) == set(expected)
        for name, table in tables.items():
            definition, properties = expected[name], table["Properties"]
            assert properties["KeySchema"] == definition["KeySchema"]
            assert properties["AttributeDefinitions"] == definition["AttributeDefinitions"]
            assert properties.get("GlobalSecondaryIndexes") == definition.get("GlobalSecondaryIndexes")
            assert properties["BillingMode"] == "PAY_PER_REQUEST"
            assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
            assert properties["DeletionProtectionEnabled"] is True
            assert properties["SSESpecification"] == {"SSEEnabled": True}
            ttl = definition.get("TimeToLiveAttribute")
            assert properties.get("TimeToLiveSpecification") == (
                {"AttributeName": ttl, "Enabled": True} if ttl else None)
            assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"


# ---- queues ---------------------------------------------------------------------------------

def _queue_by_id(built, queue_ref):
    assert set(queue_ref) == {"Fn::GetAtt"} and queue_ref["Fn::GetAtt"][1] == "Arn"
    return built.resources[queue_ref["Fn::GetAtt"][0]]


def test_every_queue_has_a_dead_letter_queue_and_safe_visibility(packaged, app_facts):
    for built in builds(packaged):
        queues = built.of_type("AWS::SQS::Queue")
        main = {k: q for k, q in queues.items() if "RedrivePolicy" in q["Properties"]}
        dead_letters = {k for k in queues if k not in main}
        names = {logical(q["Properties"]["QueueName"], built.community) for q in main.values()}
        if built is packaged.sample:
            assert {"sample-slow-jobs", "sample-fast-jobs"} <= names
        else:
            assert names == set(app_facts["queues"])
        consumers = {}
        for function in functions_by_handler(built).values():
            for event in function["Properties"].get("Events", {}).values():
                if event["Type"] == "SQS":
                    consumers[event["Properties"]["Queue"]["Fn::GetAtt"][0]] = function
        for queue_id, queue in main.items():
            redrive = queue["Properties"]["RedrivePolicy"]
            spec = app_facts["queues"].get(logical(queue["Properties"]["QueueName"], built.community), {})
            assert redrive["maxReceiveCount"] == spec.get("max_receive_count", 5)
            target = redrive["deadLetterTargetArn"]["Fn::GetAtt"]
            assert target[1] == "Arn" and target[0] in dead_letters
            assert queues[target[0]]["Properties"]["QueueName"] == queue["Properties"]["QueueName"] + "-dlq"
            if queue_id in consumers:
                timeout = consumers[queue_id]["Properties"]["Timeout"]
                assert queue["Properties"]["VisibilityTimeout"] >= 6 * timeout
            for q in (queue, queues[target[0]]):
                assert q["Properties"]["SqsManagedSseEnabled"] is True


def test_sample_consumer_timeouts_follow_their_queue_specs(packaged):
    functions = functions_by_handler(packaged.sample)
    slow = functions["app.sample_slow_consumer"]
    assert slow["Properties"]["Timeout"] == 120
    queue = _queue_by_id(packaged.sample, next(iter(slow["Properties"]["Events"].values()))
                         ["Properties"]["Queue"])
    assert queue["Properties"]["VisibilityTimeout"] == 720


def test_every_queue_event_source_reports_batch_item_failures(packaged):
    seen = 0
    for built in builds(packaged):
        for function in functions_by_handler(built).values():
            for event in function["Properties"].get("Events", {}).values():
                if event["Type"] != "SQS":
                    continue
                seen += 1
                assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
                queue = _queue_by_id(built, event["Properties"]["Queue"])
                assert "RedrivePolicy" in queue["Properties"]  # the work queue, not its DLQ
    assert seen >= 2  # the sample's two consumers at least


# ---- every handler wired --------------------------------------------------------------------

def test_every_route_queue_consumer_and_schedule_of_the_app_is_wired(packaged, app_facts):
    assert app_facts["routes"] and app_facts["sources"]
    for built in packaged.communities.values():
        functions = functions_by_handler(built)
        paths = built.resources["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
        for path, method in app_facts["routes"]:
            assert method.lower() in paths.get(path, {}), f"{method} {path}"
        assert functions["app.app"]
        for source in app_facts["sources"]:
            events = list(functions[source["handler"]]["Properties"].get("Events", {}).values())
            if source["kind"] == "SQSEventConfig":
                queues = [_queue_by_id(built, e["Properties"]["Queue"])["Properties"]["QueueName"]
                          for e in events if e["Type"] == "SQS"]
                assert queues == [f"timebank-{built.community}-{logical(source['queue'], 'facts')}"]
            elif source["kind"] == "ScheduledEventConfig":
                assert [e["Properties"]["Schedule"] for e in events
                        if e["Type"] == "Schedule"] == [source["expression"]]
            else:
                pytest.fail(f"unexpected event source {source}")
        for handler in app_facts["pure_functions"]:
            assert handler in functions
        assert len(functions) == 1 + len(app_facts["sources"]) + len(app_facts["pure_functions"])


def test_handlers_added_to_the_app_are_wired_without_infra_changes(packaged):
    functions = functions_by_handler(packaged.sample)
    schedules = [e["Properties"]["Schedule"] for e in
                 functions["app.sample_nightly"]["Properties"]["Events"].values()]
    assert schedules == ["cron(0 2 * * ? *)"]
    for handler, queue in [("app.sample_slow_consumer", "timebank-demo-sample-slow-jobs"),
                           ("tests.infra.sample_app.sample_fast_consumer", "timebank-demo-sample-fast-jobs")]:
        (event,) = functions[handler]["Properties"]["Events"].values()
        assert _queue_by_id(packaged.sample, event["Properties"]["Queue"])["Properties"]["QueueName"] == queue
    # ... and the product's own handlers are all still there.
    for handler in functions_by_handler(packaged.communities["demo"]):
        assert handler in functions


def test_schedules_become_eventbridge_rules(packaged, app_facts):
    expected = {s["handler"] for s in app_facts["sources"] if s["kind"] == "ScheduledEventConfig"}
    assert expected
    for built in packaged.communities.values():
        scheduled = {h for h, f in functions_by_handler(built).items()
                     if any(e["Type"] == "Schedule" for e in f["Properties"].get("Events", {}).values())}
        assert scheduled == expected


# ---- evidence bucket ------------------------------------------------------------------------

def test_evidence_bucket_private_encrypted_tls_only_with_retention(packaged):
    for community, built in packaged.communities.items():
        (bucket_id, bucket), = built.of_type("AWS::S3::Bucket").items()
        properties = bucket["Properties"]
        assert properties["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True,
            "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        encryption = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert encryption[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
        (rule,) = properties["LifecycleConfiguration"]["Rules"]
        assert rule["Status"] == "Enabled"
        assert rule["ExpirationInDays"] == community_file(community)["evidence_retention_days"]
        (policy,) = built.of_type("AWS::S3::BucketPolicy").values()
        assert policy["Properties"]["Bucket"] == {"Ref": bucket_id}
        (deny,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert deny["Principal"] == "*" and deny["Action"] == "s3:*"
        assert {"Fn::GetAtt": [bucket_id, "Arn"]} in deny["Resource"]
        assert {"Fn::Sub": "${%s.Arn}/*" % bucket_id} in deny["Resource"]


# ---- IAM ------------------------------------------------------------------------------------

def _references_own_resource(resource, built) -> bool:
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return resource["Fn::GetAtt"][0] in built.resources
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        text = resource["Fn::Sub"]
        if text.startswith("${"):  # "${Resource.Arn}/..." of a resource of this template
            return any(text.startswith("${%s.Arn}/" % name) for name in built.resources)
        if text.startswith("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:"):
            return f":secret:timebank/{built.community}/" in text   # its own district keys
        return (text.startswith("arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:")
                and f":parameter/timebank/{built.community}/" in text)
    return False


def test_iam_grants_data_plane_actions_only_on_this_communitys_resources(packaged):
    for built in builds(packaged):
        roles = built.of_type("AWS::IAM::Role")
        assert roles
        data_plane_statements = 0
        for role in roles.values():
            for policy in role["Properties"]["Policies"]:
                for statement in policy["PolicyDocument"]["Statement"]:
                    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                    assert not any("*" in action for action in actions), actions
                    assert "*" not in resources
                    if any(action.startswith(DATA_PLANE) for action in actions):
                        data_plane_statements += 1
                        for resource in resources:
                            assert _references_own_resource(resource, built), (actions, resource)
        assert data_plane_statements >= 3  # tables, bucket, parameters (+ queues)
        listing = [st for role in roles.values() for policy in role["Properties"]["Policies"]
                   for st in policy["PolicyDocument"]["Statement"] if st["Action"] == ["s3:ListBucket"]]
        # Photos are listed per request and swept by age; only this community's bucket.
        assert listing and all(st["Resource"] == {"Fn::GetAtt": ["EvidenceBucket", "Arn"]} for st in listing)


# ---- alarms ---------------------------------------------------------------------------------

def test_alarms_on_every_dead_letter_queue_and_every_function(packaged):
    for built in builds(packaged):
        alarms = list(built.of_type("AWS::CloudWatch::Alarm").values())
        watched = {(a["Properties"]["MetricName"], json.dumps(a["Properties"]["Dimensions"][0]["Value"]))
                   for a in alarms}
        for alarm in alarms:
            assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        for queue_id, queue in built.of_type("AWS::SQS::Queue").items():
            if "RedrivePolicy" not in queue["Properties"]:
                assert ("ApproximateNumberOfMessagesVisible",
                        json.dumps({"Fn::GetAtt": [queue_id, "QueueName"]})) in watched
        for function_id in built.of_type("AWS::Serverless::Function"):
            assert ("Errors", json.dumps({"Ref": function_id})) in watched


# ---- secrets, environment, partitions, names ------------------------------------------------

def test_api_gateways_own_errors_use_the_contract_error_body(packaged):
    for built in builds(packaged):
        responses = {r["Properties"]["ResponseType"]: r["Properties"]
                     for r in built.of_type("AWS::ApiGateway::GatewayResponse").values()}
        assert set(responses) == {"MISSING_AUTHENTICATION_TOKEN", "DEFAULT_4XX", "DEFAULT_5XX"}
        unknown_route = responses["MISSING_AUTHENTICATION_TOKEN"]
        assert unknown_route["StatusCode"] == "404"
        for properties in responses.values():
            assert properties["RestApiId"] == {"Ref": "RestAPI"}
            body = json.loads(properties["ResponseTemplates"]["application/json"])
            assert set(body) == {"code", "message", "details"}


def test_functions_get_configuration_and_secret_names_never_secret_values(packaged):
    for community, built in packaged.communities.items():
        config = community_file(community)
        for function in built.of_type("AWS::Serverless::Function").values():
            variables = function["Properties"]["Environment"]["Variables"]
            assert variables["TIMEBANK_COMMUNITY"] == community
            assert variables["TIMEBANK_STAGE"] == "prod"
            assert variables["TIMEBANK_RESOURCE_PREFIX"] == f"timebank-{community}"
            assert variables["TIMEBANK_ADMIN_OPENIDS"] == ",".join(config["admin_openids"])
            assert variables["TIMEBANK_STARTING_CREDITS"] == str(config["starting_credits"])
            assert variables["TIMEBANK_INSURANCE_POLICY_NUMBER"] == config["insurance"]["policy_number"]
            assert variables["TIMEBANK_EVIDENCE_BUCKET"] == {"Ref": "EvidenceBucket"}
            assert json.loads(variables["TIMEBANK_TARIFF_OVERRIDES"]) == config.get("tariffs", {})
            secret_like = [k for k in variables if any(w in k for w in ("SECRET", "PASSWORD", "TOKEN"))]
            # SSM parameter names, and the Secrets Manager names of the district keys (通存通兑)
            district_keys = set(district_secret_names(community)) if "district" in config else set()
            assert secret_like and all(k.endswith("_PARAMETER") or k in district_keys for k in secret_like), secret_like
            for key in secret_like:
                assert variables[key].startswith(f"/timebank/{community}/" if key.endswith("_PARAMETER")
                                                 else f"timebank/{community}/")
        strings = set(iter_strings(built.template))
        for leaked in ("local-dev-token-secret-change-me", "test-token-secret"):
            assert not any(leaked in s for s in strings)
        assert "Parameters" not in built.template or all(
            "Default" not in p for p in built.template["Parameters"].values())


def test_queue_urls_reach_every_function(packaged):
    for function in packaged.sample.of_type("AWS::Serverless::Function").values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["TIMEBANK_QUEUE_URL_SAMPLE_SLOW_JOBS"] == {"Ref": "QueueSampleSlowJobs"}
        assert variables["TIMEBANK_QUEUE_URL_SAMPLE_FAST_JOBS"] == {"Ref": "QueueSampleFastJobs"}


def test_templates_name_no_partition_literally(packaged):
    for built in builds(packaged):
        text = built.template_path.read_text(encoding="utf-8")
        assert "arn:aws:" not in text
        assert "arn:${AWS::Partition}:" in text


def test_every_resource_is_named_or_tagged_for_its_community(packaged):
    # Parts of a tagged parent that CloudFormation cannot tag themselves.
    untaggable = {"AWS::Lambda::Permission", "AWS::S3::BucketPolicy", "AWS::SNS::Subscription",
                  "AWS::ApiGateway::GatewayResponse"}
    for built in builds(packaged):
        for resource_id, resource in built.resources.items():
            if resource["Type"] in untaggable:
                continue
            tags = resource["Properties"].get("Tags")
            tag_map = ({t["Key"]: t["Value"] for t in tags} if isinstance(tags, list) else tags) or {}
            assert tag_map.get("Community") == built.community, resource_id


def test_two_communities_get_distinct_queue_table_and_bucket_names(packaged):
    def names(built, resource_type, prop):
        return {json.dumps(r["Properties"][prop]) for r in built.of_type(resource_type).values()}

    demo, fuyuan = packaged.communities["demo"], packaged.communities["fuyuan"]
    for resource_type, prop in [("AWS::DynamoDB::Table", "TableName"), ("AWS::SQS::Queue", "QueueName"),
                                ("AWS::S3::Bucket", "BucketName"), ("AWS::SNS::Topic", "TopicName")]:
        assert not names(demo, resource_type, prop) & names(fuyuan, resource_type, prop), resource_type
        assert len(names(demo, resource_type, prop)) == len(demo.of_type(resource_type))
    assert "timebank-demo-evidence-" in json.dumps(demo.of_type("AWS::S3::Bucket"))
    assert "timebank-fuyuan-evidence-" in json.dumps(fuyuan.of_type("AWS::S3::Bucket"))


# ---- the code package -----------------------------------------------------------------------

# Run with -I -S: no site-packages, no PYTHON* variables, no current directory. The only
# non-stdlib code is the unzipped package, as on Lambda (whose runtime boto3 we do not rely on).
ZIP_PROBE = r"""
import importlib, json, sys
root, stdlib, handlers = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
sys.path.insert(0, root)
resolved = {}
for handler in handlers:
    module, name = handler.rsplit(".", 1)
    resolved[handler] = callable(getattr(importlib.import_module(module), name))
import app
event = {"resource": "/v1/health", "path": "/v1/health", "httpMethod": "GET",
         "headers": {"Host": "example"}, "multiValueHeaders": {}, "queryStringParameters": None,
         "multiValueQueryStringParameters": None, "pathParameters": None, "stageVariables": None,
         "requestContext": {"resourcePath": "/v1/health", "httpMethod": "GET", "stage": "api",
                            "requestId": "probe", "identity": {"sourceIp": "127.0.0.1"}},
         "body": None, "isBase64Encoded": False}
response = app.app(event, None)
served = {}
for path in ("/admin", "/admin/echarts.min.js"):   # the staff dashboard's files, from the zip alone
    if path in app.app.routes:
        got = app.app({**event, "resource": path, "path": path + ("/" if path == "/admin" else ""),
                       "requestContext": {**event["requestContext"], "resourcePath": path,
                                          "path": "/api" + path + ("/" if path == "/admin" else "")}}, None)
        served[path] = [got["statusCode"], got["headers"].get("Content-Type"), len(got["body"].encode("utf-8")),
                        '<base href="/api/admin/">' in got["body"]]
outside = sorted({m.__file__ for m in list(sys.modules.values())
                  if getattr(m, "__file__", None) and not m.__file__.startswith((root, *stdlib))})
print(json.dumps({"resolved": resolved, "status": response["statusCode"],
                  "body": json.loads(response["body"]), "outside": outside, "served": served}))
"""


@pytest.mark.parametrize("which", [*COMMUNITIES, "sample"])
def test_zip_alone_imports_every_handler_and_serves(packaged, which, tmp_path):
    built = packaged.sample if which == "sample" else packaged.communities[which]
    with zipfile.ZipFile(built.zip_path) as archive:
        names = archive.namelist()
        assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".so"))]
        archive.extractall(tmp_path)
    handlers = sorted(functions_by_handler(built))
    api = functions_by_handler(built)["app.app"]["Properties"]["Environment"]["Variables"]
    environment = {k: v for k, v in api.items() if isinstance(v, str)}
    environment.update({"AWS_REGION": "cn-north-1", "AWS_DEFAULT_REGION": "cn-north-1",
                        "PATH": "/usr/bin:/bin"})
    stdlib = sorted({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})
    completed = subprocess.run(
        [sys.executable, "-I", "-S", "-c", ZIP_PROBE, str(tmp_path), json.dumps(stdlib),
         json.dumps(handlers)],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["resolved"] == {h: True for h in handlers}
    assert result["status"] == 200 and result["body"] == {"status": "ok"}
    assert result["outside"] == []
    assert Path(tmp_path / "functions" / "openapi.json").is_file()
    if which != "sample":
        # The dashboard's page and the vendored ECharts ship in the package and are served from it
        # (under API Gateway's stage prefix, the page's <base> keeps it).
        assert result["served"]["/admin"][:2] == [200, "text/html; charset=utf-8"] and result["served"]["/admin"][3]
        script = (tmp_path / "functions" / "system" / "dashboard" / "echarts.min.js").stat().st_size
        assert result["served"]["/admin/echarts.min.js"][:3] == [200, "text/javascript; charset=utf-8", script]


def test_the_wiring_check_catches_what_a_broken_post_processing_would_leave(packaged):
    import copy

    from infra.build import Inventory, QueueConsumer, Schedule
    from infra.template import wiring_problems

    inventory = Inventory(
        routes=[("/v1/health", "GET")],
        consumers=[QueueConsumer("sample_slow_consumer", "app.sample_slow_consumer",
                                 "sample-slow-jobs", 5, 120)],
        schedules=[Schedule("sample-nightly", "app.sample_nightly", "cron(0 2 * * ? *)")])

    def queue_name(logical):
        return f"timebank-demo-{logical}"

    template = copy.deepcopy(packaged.sample.template)
    assert wiring_problems(template, inventory, queue_name) == []

    resources = template["Resources"]
    consumer = next(r for r in resources.values() if r["Type"] == "AWS::Serverless::Function"
                    and r["Properties"]["Handler"] == "app.sample_slow_consumer")
    del next(iter(consumer["Properties"]["Events"].values()))["Properties"]["FunctionResponseTypes"]
    nightly = next(r for r in resources.values() if r["Type"] == "AWS::Serverless::Function"
                   and r["Properties"]["Handler"] == "app.sample_nightly")
    nightly["Properties"]["Events"] = {}
    del resources["RestAPI"]["Properties"]["DefinitionBody"]["paths"]["/v1/health"]
    resources["Extra"] = {"Type": "AWS::IAM::ManagedPolicy",
                          "Properties": {"Path": "arn:aws:iam::aws:policy/x"}}
    problems = wiring_problems(template, inventory, queue_name)
    assert problems == [
        "route GET /v1/health is not in the API definition",
        "app.sample_slow_consumer is not subscribed to queue sample-slow-jobs",
        "app.sample_nightly has no schedule cron(0 2 * * ? *)",
        "hard-coded partition in 'arn:aws:iam::aws:policy/x'",
    ]
