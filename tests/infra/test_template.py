"""Post-processing rules of infra.template that Chalice's current output does not exercise."""
from __future__ import annotations

import pytest

from infra.build import BuildError, build
from infra.template import partition_neutral


def test_literal_arns_are_rewritten_for_every_partition():
    template = {
        "Role": {"ManagedPolicyArns": ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]},
        "Sub": {"Fn::Sub": "arn:aws:sqs:${AWS::Region}:${AWS::AccountId}:q"},
        "SubWithVariables": {"Fn::Sub": ["arn:aws:s3:::${B}/*", {"B": "arn:aws:s3:::x"}]},
        "Plain": "lambda.amazonaws.com",
        "Number": 5,
    }
    assert partition_neutral(template) == {
        "Role": {"ManagedPolicyArns": [
            {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}]},
        "Sub": {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:q"},
        "SubWithVariables": {"Fn::Sub": ["arn:${AWS::Partition}:s3:::${B}/*",
                                         {"B": {"Fn::Sub": "arn:${AWS::Partition}:s3:::x"}}]},
        "Plain": "lambda.amazonaws.com",
        "Number": 5,
    }


def test_a_literal_dollar_brace_survives_the_rewrite():
    assert partition_neutral("arn:aws:s3:::bucket/${literal}") == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::bucket/${!literal}"}


def test_a_process_that_imported_the_app_refuses_to_build_another_community(tmp_path):
    import functions.app  # noqa: F401  (as every test process has)

    with pytest.raises(BuildError, match="one community per process"):
        build("demo", tmp_path)
    assert not any(tmp_path.iterdir())
