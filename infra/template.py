"""Post-processing of the SAM template ``chalice package`` generates.

Chalice knows the functions, the API, the schedules and the queue subscriptions; it knows
nothing of the tables, the queues themselves, the evidence bucket, alarms or partitions. This
module adds those, generically from the registries (``table_definitions()``, ``QUEUES``) and
the app's inventory, so a new table, queue, consumer or schedule in the code is deployed with
no change here. It finishes by checking that every handler of the inventory is wired and that
no ARN names the ``aws`` partition literally (the same template deploys to ``aws-cn``).
"""
from __future__ import annotations

import copy
import json
import re
from typing import TYPE_CHECKING, Any, Iterator

from infra.config import APPLICATION, CommunityConfig
from infra.errors import BuildError

if TYPE_CHECKING:
    from infra.build import Inventory

FUNCTION = "AWS::Serverless::Function"
DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # the SQS maximum: time for IT to inspect and redrive
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600
LAMBDA_ENVIRONMENT_LIMIT = 4096  # bytes, all keys and values together
ARN_PLACEHOLDER_LENGTH = 128  # what a Ref/GetAtt in the environment resolves to, at most

DYNAMODB_ACTIONS = [
    # PynamoDB reads the key schema with DescribeTable; transactions authorise per item action.
    "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
    "dynamodb:Scan", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem",
]
SQS_ACTIONS = [
    # Publishing, plus what the Lambda event source mapping does with the function's role.
    "sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:ReceiveMessage",
    "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
]
EVIDENCE_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
PARAMETER_ACTIONS = ["ssm:GetParameter", "ssm:GetParameters"]
SECRET_ACTIONS = ["secretsmanager:GetSecretValue"]
LOG_ACTIONS = ["logs:CreateLogStream", "logs:PutLogEvents"]

TRANSIENT = {"DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"}

EVIDENCE_BUCKET = "EvidenceBucket"
ALARM_TOPIC = "AlarmTopic"


def camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)


def table_id(definition: dict[str, Any]) -> str:
    return "Table" + camel(definition["LogicalName"])


def queue_id(logical: str) -> str:
    return "Queue" + camel(logical)


def dead_letter_id(logical: str) -> str:
    return queue_id(logical) + "DeadLetter"


def queue_url_variable(logical: str) -> str:
    # functions.core.settings reads TIMEBANK_QUEUE_URL_<logical with "_" for "-">.
    return "TIMEBANK_QUEUE_URL_" + logical.replace("-", "_").upper()


def evidence_bucket_name(config: CommunityConfig) -> dict[str, str]:
    # Bucket names are global in a partition: the account id keeps two districts running a
    # community of the same id apart.
    return {"Fn::Sub": f"{config.resource_prefix}-evidence-${{AWS::AccountId}}"}


def _tags(config: CommunityConfig) -> list[dict[str, str]]:
    return [{"Key": "Application", "Value": APPLICATION}, {"Key": "Community", "Value": config.key}]


def _tag_map(config: CommunityConfig) -> dict[str, str]:
    return {"Application": APPLICATION, "Community": config.key}


# ---- IAM ------------------------------------------------------------------------------------

def role_policy(config: CommunityConfig, inventory: Inventory) -> dict[str, Any]:
    """The functions' policy: each data-plane action on this community's resources only."""
    statements: list[dict[str, Any]] = [{
        "Sid": "OwnLogs",
        "Effect": "Allow",
        "Action": LOG_ACTIONS,
        # Functions are named "<stack>-<logical id>-<suffix>" by CloudFormation.
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}"
                                ":log-group:/aws/lambda/${AWS::StackName}-*:*"},
    }]
    tables: list[Any] = []
    for definition in inventory.tables:
        tables.append({"Fn::GetAtt": [table_id(definition), "Arn"]})
        if definition.get("GlobalSecondaryIndexes"):
            tables.append({"Fn::Sub": "${%s.Arn}/index/*" % table_id(definition)})
    if tables:
        statements.append({"Sid": "CommunityTables", "Effect": "Allow",
                           "Action": DYNAMODB_ACTIONS, "Resource": tables})
    queues = [{"Fn::GetAtt": [queue_id(logical), "Arn"]} for logical in sorted(inventory.queues)]
    if queues:
        statements.append({"Sid": "CommunityQueues", "Effect": "Allow",
                           "Action": SQS_ACTIONS, "Resource": queues})
    if getattr(config, "is_hub", False):
        return {"Version": "2012-10-17", "Statement": statements + _secret_statements(config)}
    statements.append({"Sid": "EvidenceObjects", "Effect": "Allow", "Action": EVIDENCE_ACTIONS,
                       "Resource": {"Fn::Sub": "${%s.Arn}/*" % EVIDENCE_BUCKET}})
    # Listing a request's photos and the retention sweep list the bucket; without it S3 also
    # answers 403 instead of 404 to a HeadObject of a photo that was never uploaded.
    statements.append({"Sid": "EvidenceListing", "Effect": "Allow", "Action": ["s3:ListBucket"],
                       "Resource": {"Fn::GetAtt": [EVIDENCE_BUCKET, "Arn"]}})
    statements.append({"Sid": "CommunitySecrets", "Effect": "Allow", "Action": PARAMETER_ACTIONS,
                       "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:"
                                               "${AWS::AccountId}:parameter" + config.parameter_path + "*"}})
    return {"Version": "2012-10-17", "Statement": statements + _secret_statements(config)}


def _secret_statements(config: Any) -> list[dict[str, Any]]:
    """通存通兑: reading the district keys (Secrets Manager), by name; Secrets Manager appends
    a random six-character suffix to a secret's ARN."""
    names = getattr(config, "secret_names", [])
    if not names:
        return []
    return [{"Sid": "DistrictKeys", "Effect": "Allow", "Action": SECRET_ACTIONS,
             "Resource": [{"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}"
                                      ":secret:" + name + "-??????"} for name in names]}]


# ---- resources ------------------------------------------------------------------------------

def _table(definition: dict[str, Any], config: CommunityConfig) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "TableName": definition["TableName"],
        "AttributeDefinitions": definition["AttributeDefinitions"],
        "KeySchema": definition["KeySchema"],
        "BillingMode": "PAY_PER_REQUEST",
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "DeletionProtectionEnabled": True,
        "SSESpecification": {"SSEEnabled": True},
        "Tags": _tags(config),
    }
    if definition.get("GlobalSecondaryIndexes"):
        properties["GlobalSecondaryIndexes"] = definition["GlobalSecondaryIndexes"]
    if definition.get("TimeToLiveAttribute"):
        properties["TimeToLiveSpecification"] = {
            "AttributeName": definition["TimeToLiveAttribute"], "Enabled": True}
    # The ledger outlives the stack: deleting the stack keeps the data (see infra/README.md).
    return {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain", "Properties": properties}


def _queues(logical: str, spec: Any, consumer_timeout: int, config: CommunityConfig,
            name: str) -> dict[str, Any]:
    visibility = max(spec.visibility_timeout_seconds, 6 * consumer_timeout)
    # In-flight messages are transient: they go with the stack (explicitly, unlike the data).
    return {
        dead_letter_id(logical): {"Type": "AWS::SQS::Queue", **TRANSIENT, "Properties": {
            "QueueName": f"{name}-dlq",
            "MessageRetentionPeriod": DLQ_RETENTION_SECONDS,
            "SqsManagedSseEnabled": True,
            "Tags": _tags(config),
        }},
        queue_id(logical): {"Type": "AWS::SQS::Queue", **TRANSIENT, "Properties": {
            "QueueName": name,
            "VisibilityTimeout": visibility,
            "MessageRetentionPeriod": QUEUE_RETENTION_SECONDS,
            "SqsManagedSseEnabled": True,
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": [dead_letter_id(logical), "Arn"]},
                "maxReceiveCount": spec.max_receive_count,
            },
            "Tags": _tags(config),
        }},
    }


def _evidence_bucket(config: CommunityConfig) -> dict[str, Any]:
    bucket_arn = {"Fn::GetAtt": [EVIDENCE_BUCKET, "Arn"]}
    return {
        EVIDENCE_BUCKET: {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketName": evidence_bucket_name(config),
                "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True, "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "LifecycleConfiguration": {"Rules": [{
                    # 影像留存: photos are kept for the community's retention period, then deleted.
                    "Id": "ExpireEvidence",
                    "Status": "Enabled",
                    "ExpirationInDays": config.evidence_retention_days,
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }]},
                "Tags": _tags(config),
            },
        },
        EVIDENCE_BUCKET + "Policy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": EVIDENCE_BUCKET},
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, {"Fn::Sub": "${%s.Arn}/*" % EVIDENCE_BUCKET}],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }]},
            },
        },
    }


def _alarm(description: str, namespace: str, metric: str, dimension: tuple[str, Any],
           statistic: str, config: CommunityConfig) -> dict[str, Any]:
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmDescription": f"{config.resource_prefix}: {description}",
        "Namespace": namespace,
        "MetricName": metric,
        "Dimensions": [{"Name": dimension[0], "Value": dimension[1]}],
        "Statistic": statistic,
        "Period": 300,
        "EvaluationPeriods": 1,
        "Threshold": 0,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [{"Ref": ALARM_TOPIC}],
        "OKActions": [{"Ref": ALARM_TOPIC}],
        "Tags": _tags(config),
    }}


def _alarms(resources: dict[str, Any], config: CommunityConfig) -> dict[str, Any]:
    out: dict[str, Any] = {
        ALARM_TOPIC: {"Type": "AWS::SNS::Topic", "Properties": {
            "TopicName": f"{config.resource_prefix}-alarms", "Tags": _tags(config)}},
    }
    for number, email in enumerate(config.alarm_emails, start=1):
        out[f"{ALARM_TOPIC}Email{number}"] = {"Type": "AWS::SNS::Subscription", "Properties": {
            "TopicArn": {"Ref": ALARM_TOPIC}, "Protocol": "email", "Endpoint": email}}
    for logical_id, resource in sorted(resources.items()):
        if resource["Type"] == FUNCTION:
            out[f"{logical_id}ErrorsAlarm"] = _alarm(
                f"function {logical_id} raised errors", "AWS/Lambda", "Errors",
                ("FunctionName", {"Ref": logical_id}), "Sum", config)
        elif resource["Type"] == "AWS::SQS::Queue" and logical_id.endswith("DeadLetter"):
            out[f"{logical_id}Alarm"] = _alarm(
                f"messages in dead-letter queue {resource['Properties']['QueueName']}",
                "AWS/SQS", "ApproximateNumberOfMessagesVisible",
                ("QueueName", {"Fn::GetAtt": [logical_id, "QueueName"]}), "Maximum", config)
    return out


# ---- the whole post-processing --------------------------------------------------------------

def functions_by_handler(template: dict[str, Any]) -> dict[str, str]:
    return {resource["Properties"]["Handler"]: logical_id
            for logical_id, resource in template["Resources"].items()
            if resource["Type"] == FUNCTION}


def finalize(sam: dict[str, Any], config: CommunityConfig, inventory: Inventory) -> dict[str, Any]:
    from functions.core.messaging import queue_name  # names fixed by the community's environment

    template = copy.deepcopy(sam)
    hub = getattr(config, "is_hub", False)
    template["Description"] = (
        f"Timebank (时间银行) district hub {config.id} ({config.display_name}): 通存通兑 clearing between "
        "communities: signed API, queues, schedules, tables" if hub else
        f"Timebank (时间银行) community {config.id} ({config.display_name}): "
        "API, queues, schedules, tables and evidence storage")
    resources: dict[str, Any] = template["Resources"]
    functions = functions_by_handler(template)
    missing = [h for h in inventory.handlers() if h not in functions]
    if missing:
        raise BuildError(f"chalice package produced no function for {', '.join(missing)}")

    for definition in inventory.tables:
        resources[table_id(definition)] = _table(definition, config)

    timeouts = {c.queue: resources[functions[c.handler]]["Properties"]["Timeout"]
                for c in inventory.consumers}
    for logical, spec in sorted(inventory.queues.items()):
        resources.update(_queues(logical, spec, timeouts.get(logical, 0), config,
                                 queue_name(logical)))

    for consumer in inventory.consumers:
        _wire_queue_event(resources[functions[consumer.handler]], consumer)

    environment_refs: dict[str, Any] = {}
    if not hub:   # the hub keeps no evidence
        resources.update(_evidence_bucket(config))
        environment_refs["TIMEBANK_EVIDENCE_BUCKET"] = {"Ref": EVIDENCE_BUCKET}
    environment_refs.update({queue_url_variable(logical): {"Ref": queue_id(logical)}
                             for logical in sorted(inventory.queues)})
    for logical_id in functions.values():
        properties = resources[logical_id]["Properties"]
        variables = properties.setdefault("Environment", {}).setdefault("Variables", {})
        variables.update(environment_refs)
        _check_environment_size(logical_id, variables)
        properties["Tags"] = {**properties.get("Tags", {}), **_tag_map(config)}

    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::IAM::Role":
            properties = resource["Properties"]
            for policy in properties.get("Policies", []):
                policy["PolicyDocument"] = role_policy(config, inventory)
            properties["Tags"] = _tags(config)
        elif resource["Type"] == "AWS::Logs::LogGroup":
            _fix_log_group_name(resource, resources)
            resource.update(TRANSIENT)  # logs expire by retention; they go with the stack
            resource["Properties"]["Tags"] = _tags(config)
        elif resource["Type"] == "AWS::Serverless::Api":
            resource["Properties"]["Tags"] = _tag_map(config)

    resources.update(_alarms(resources, config))
    resources.update(_gateway_responses())

    template["Outputs"].update({"Hub": {"Value": config.id}, "AlarmTopicArn": {"Value": {"Ref": ALARM_TOPIC}}}
                               if hub else {
        "Community": {"Value": config.id},
        "EvidenceBucketName": {"Value": {"Ref": EVIDENCE_BUCKET}},
        "AlarmTopicArn": {"Value": {"Ref": ALARM_TOPIC}},
    })
    template = partition_neutral(template)
    problems = wiring_problems(template, inventory, queue_name)
    if problems:
        raise BuildError("template does not wire the app:\n  " + "\n  ".join(problems))
    return template


# API Gateway answers some requests itself (an unknown path is "Missing Authentication Token",
# 403, echoing the Authorization header); API.md promises {code, message, details} everywhere.
_GATEWAY_RESPONSES = {
    "MISSING_AUTHENTICATION_TOKEN": ("404", "NOT_FOUND", "接口不存在"),
    "DEFAULT_4XX": (None, "BAD_REQUEST", "请求无效"),
    "DEFAULT_5XX": (None, "INTERNAL_ERROR", "服务器内部错误，请稍后再试"),
}


def _gateway_responses() -> dict[str, Any]:
    resources = {}
    for response_type, (status, code, message) in _GATEWAY_RESPONSES.items():
        properties: dict[str, Any] = {
            "RestApiId": {"Ref": "RestAPI"},
            "ResponseType": response_type,
            "ResponseParameters": {"gatewayresponse.header.Content-Type": "'application/json'"},
            "ResponseTemplates": {"application/json": json.dumps(
                {"code": code, "message": message, "details": {}}, ensure_ascii=False)},
        }
        if status:
            properties["StatusCode"] = status
        resources[f"GatewayResponse{camel(response_type.lower())}"] = {
            "Type": "AWS::ApiGateway::GatewayResponse", "Properties": properties}
    return resources


def _wire_queue_event(function: dict[str, Any], consumer: Any) -> None:
    events = function["Properties"].get("Events", {})
    sqs_events = [event for event in events.values() if event["Type"] == "SQS"]
    if len(sqs_events) != 1:
        raise BuildError(f"{consumer.handler}: expected one SQS event from chalice, got {len(sqs_events)}")
    properties = sqs_events[0]["Properties"]
    # Chalice points at an ARN built from the queue name; point at the queue of this template
    # so CloudFormation creates the queue before the subscription.
    properties["Queue"] = {"Fn::GetAtt": [queue_id(consumer.queue), "Arn"]}
    # Chalice has no option for partial batch responses; handlers return batchItemFailures.
    properties["FunctionResponseTypes"] = ["ReportBatchItemFailures"]


def _fix_log_group_name(log_group: dict[str, Any], resources: dict[str, Any]) -> None:
    # Chalice renames the API function to "APIHandler" after naming its log group
    # "/aws/lambda/${ApiHandler}": point every log group at a function that exists.
    name = log_group["Properties"]["LogGroupName"]
    match = re.fullmatch(r"/aws/lambda/\$\{(\w+)\}", name.get("Fn::Sub", "")) if isinstance(name, dict) else None
    if match is None or match.group(1) in resources:
        return
    candidates = [logical_id for logical_id, resource in resources.items()
                  if resource["Type"] == FUNCTION and logical_id.lower() == match.group(1).lower()]
    if len(candidates) != 1:
        raise BuildError(f"log group {name} names no function of the template")
    log_group["Properties"]["LogGroupName"] = {"Fn::Sub": "/aws/lambda/${%s}" % candidates[0]}


def _check_environment_size(logical_id: str, variables: dict[str, Any]) -> None:
    size = sum(len(key.encode()) + (len(value.encode()) if isinstance(value, str)
                                    else ARN_PLACEHOLDER_LENGTH)
               for key, value in variables.items())
    if size > LAMBDA_ENVIRONMENT_LIMIT:
        raise BuildError(f"{logical_id}: environment of ~{size} bytes exceeds Lambda's 4 KB")


# ---- partitions -----------------------------------------------------------------------------

HARD_CODED_ARN = re.compile(r"arn:aws:")


def partition_neutral(node: Any) -> Any:
    """Replace every literal ``arn:aws:`` by ``arn:${AWS::Partition}:`` (``aws-cn`` in China)."""
    if isinstance(node, dict):
        if set(node) == {"Fn::Sub"}:
            value = node["Fn::Sub"]
            if isinstance(value, str):
                return {"Fn::Sub": HARD_CODED_ARN.sub("arn:${AWS::Partition}:", value)}
            return {"Fn::Sub": [HARD_CODED_ARN.sub("arn:${AWS::Partition}:", value[0]),
                                partition_neutral(value[1])]}
        return {key: partition_neutral(value) for key, value in node.items()}
    if isinstance(node, list):
        return [partition_neutral(item) for item in node]
    if isinstance(node, str) and HARD_CODED_ARN.search(node):
        escaped = node.replace("${", "${!")
        return {"Fn::Sub": HARD_CODED_ARN.sub("arn:${AWS::Partition}:", escaped)}
    return node


# ---- checks (also used by the tests) --------------------------------------------------------

def iter_strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from iter_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from iter_strings(item)
    elif isinstance(node, str):
        yield node


def wiring_problems(template: dict[str, Any], inventory: Inventory, queue_name) -> list[str]:
    problems: list[str] = []
    resources = template["Resources"]
    functions = functions_by_handler(template)
    paths = resources["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    for path, method in inventory.routes:
        if method.lower() not in paths.get(path, {}):
            problems.append(f"route {method} {path} is not in the API definition")
    for consumer in inventory.consumers:
        events = resources[functions[consumer.handler]]["Properties"].get("Events", {})
        wired = [e for e in events.values() if e["Type"] == "SQS"
                 and e["Properties"]["Queue"] == {"Fn::GetAtt": [queue_id(consumer.queue), "Arn"]}
                 and e["Properties"].get("FunctionResponseTypes") == ["ReportBatchItemFailures"]]
        queue = resources.get(queue_id(consumer.queue), {}).get("Properties", {})
        if not wired or queue.get("QueueName") != queue_name(consumer.queue):
            problems.append(f"{consumer.handler} is not subscribed to queue {consumer.queue}")
    for schedule in inventory.schedules:
        events = resources[functions[schedule.handler]]["Properties"].get("Events", {})
        if not any(e["Type"] == "Schedule" and e["Properties"]["Schedule"] == schedule.expression
                   for e in events.values()):
            problems.append(f"{schedule.handler} has no schedule {schedule.expression}")
    leftovers = [s for s in iter_strings(template) if HARD_CODED_ARN.search(s)]
    problems += [f"hard-coded partition in {s!r}" for s in leftovers]
    return problems


def dumps(template: dict[str, Any]) -> str:
    return json.dumps(template, indent=2, ensure_ascii=False)
