"""Security posture and contract of template.yaml, the sample events and the example stack.

These read the files as data; nothing is deployed. CloudFormation short-form
tags (``!Ref``, ``!Sub``, ``!GetAtt`` ...) are loaded as their long forms.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
EXAMPLE = ROOT / "examples" / "membership.yaml"
EVENTS = sorted((ROOT / "events").glob("*.json"))

FUNCTION = "MembershipFunction"
ROLE = "FunctionRole"
TABLE = "IdempotencyTable"
LOG_GROUP = "FunctionLogGroup"
MEMBERSHIP_ARN = "arn:${AWS::Partition}:security-ir:${AWS::Region}:${AWS::AccountId}:membership/*"
CFN_MAX_SERVICE_TIMEOUT = 3600


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short-form tags into their long forms."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix == "Ref" or suffix == "Condition" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node!r}")
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_cfn(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=_CfnLoader)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_cfn(TEMPLATE)


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


@pytest.fixture(scope="module")
def function(resources: dict[str, Any]) -> dict[str, Any]:
    assert resources[FUNCTION]["Type"] == "AWS::Serverless::Function"
    return resources[FUNCTION]["Properties"]


@pytest.fixture(scope="module")
def statements(resources: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement the role gets: its inline policies and the policies attached to it."""
    role = resources[ROLE]["Properties"]
    attached = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::IAM::RolePolicy" and r["Properties"]["RoleName"] == {"Ref": ROLE}
    ]
    return [s for p in [*role["Policies"], *attached] for s in p["PolicyDocument"]["Statement"]]


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    return load_cfn(EXAMPLE)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- the function ------------------------------------------------------------


def test_loader_reads_short_form_tags() -> None:
    doc = yaml.load(
        "a: !Ref X\nb: !GetAtt T.Arn\nc: !Sub 'x-${Y}'\nd: !If [C, 1, 2]\n", Loader=_CfnLoader
    )
    assert doc == {
        "a": {"Ref": "X"},
        "b": {"Fn::GetAtt": ["T", "Arn"]},
        "c": {"Fn::Sub": "x-${Y}"},
        "d": {"Fn::If": ["C", 1, 2]},
    }


def test_function_runtime_and_packaging(function: dict[str, Any]) -> None:
    assert function["Handler"] == "sir_membership.app.handler"
    assert function["CodeUri"] == "src/"
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["Timeout"] == 300
    assert function["MemorySize"] == 256
    code = ROOT / function["CodeUri"]
    assert (code / "requirements.txt").is_file()
    assert (code / "sir_membership" / "__init__.py").is_file()


def test_function_is_built_by_the_lean_package_makefile(template: dict[str, Any]) -> None:
    resource = template["Resources"]["MembershipFunction"]
    assert resource["Metadata"] == {"BuildMethod": "makefile"}
    makefile = (ROOT / resource["Properties"]["CodeUri"] / "Makefile").read_text()
    assert "\nbuild-MembershipFunction:" in makefile
    assert "lean_package.py" in makefile


def test_function_uses_the_explicit_role_only(function: dict[str, Any]) -> None:
    assert function["Role"] == {"Fn::GetAtt": [ROLE, "Arn"]}
    assert "Policies" not in function  # no SAM policy templates


def test_function_environment(function: dict[str, Any], template: dict[str, Any]) -> None:
    # RESPONSE_URL_PATTERNS is not set: the function's default (CloudFormation's
    # response bucket of AWS_REGION, which Lambda sets) applies.
    assert function["Environment"]["Variables"] == {
        "IDEMPOTENCY_TABLE_NAME": {"Ref": TABLE},
        "ALLOWED_STACK_NAMES": {"Ref": "AllowedStackNames"},
        "POWERTOOLS_SERVICE_NAME": "sir-membership",
        "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
    }
    param = template["Parameters"]["LogLevel"]
    assert param["Default"] == "INFO"
    assert param["AllowedValues"] == ["DEBUG", "INFO", "WARNING", "ERROR"]


def test_lambda_log_level_follows_the_parameter(
    function: dict[str, Any], template: dict[str, Any]
) -> None:
    logging = function["LoggingConfig"]
    assert logging["LogGroup"] == {"Ref": LOG_GROUP}
    assert logging["LogFormat"] == "JSON"
    assert logging["ApplicationLogLevel"] == {
        "Fn::FindInMap": ["LambdaLogLevels", {"Ref": "LogLevel"}, "Name"]
    }
    levels = template["Mappings"]["LambdaLogLevels"]
    assert {k: v["Name"] for k, v in levels.items()} == {
        "DEBUG": "DEBUG",
        "INFO": "INFO",
        "WARNING": "WARN",
        "ERROR": "ERROR",
    }


def test_async_retries_are_a_bounded_backstop(
    function: dict[str, Any], example: dict[str, Any]
) -> None:
    config = function["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 2
    assert config["MaximumEventAgeInSeconds"] == 240
    # Every attempt (started at most MaximumEventAgeInSeconds after the request,
    # running at most Timeout) ends before CloudFormation stops waiting.
    timeout = example["Resources"]["Membership"]["Properties"]["ServiceTimeout"]
    assert config["MaximumEventAgeInSeconds"] + function["Timeout"] < timeout


# --- IAM -----------------------------------------------------------------------


def test_only_one_iam_principal_and_no_managed_policies(resources: dict[str, Any]) -> None:
    iam = {k: v["Type"] for k, v in resources.items() if v["Type"].startswith("AWS::IAM::")}
    # The role, the one policy that names the function (it cannot be inline: a
    # cycle), and the key's policy, which exists only with KmsKeyArn.
    assert iam == {
        ROLE: "AWS::IAM::Role",
        "InvokeItselfPolicy": "AWS::IAM::RolePolicy",
        "TableKeyPolicy": "AWS::IAM::RolePolicy",
    }
    assert resources["InvokeItselfPolicy"]["Properties"]["RoleName"] == {"Ref": ROLE}
    assert resources["TableKeyPolicy"]["Properties"]["RoleName"] == {"Ref": ROLE}
    assert resources["TableKeyPolicy"]["Condition"] == "HasKmsKey"
    role = resources[ROLE]["Properties"]
    assert "ManagedPolicyArns" not in role
    assert "RoleName" not in role  # CAPABILITY_IAM is enough
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]


KEY_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]


def test_exact_set_of_actions(statements: list[dict[str, Any]]) -> None:
    actions = sorted(a for s in statements for a in _as_list(s["Action"]))
    assert actions == sorted(
        [
            *KEY_ACTIONS,  # only with KmsKeyArn (test_the_key_is_used_only_through_dynamodb)
            "security-ir:GetMembership",
            "security-ir:UpdateMembership",
            "security-ir:ListTagsForResource",
            "security-ir:TagResource",
            "security-ir:UntagResource",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "lambda:InvokeFunction",
            "cloudformation:DescribeStacks",
        ]
    )


def test_no_wildcards_denies_or_conditions_to_hide_behind(statements: list[dict[str, Any]]) -> None:
    for s in statements:
        assert s["Effect"] == "Allow"
        assert "NotAction" not in s
        assert "NotResource" not in s
        for action in _as_list(s["Action"]):
            assert "*" not in action, action
        for resource in _as_list(s["Resource"]):
            assert resource != "*"


def _statement_for(statements: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    found = [s for s in statements if any(a.startswith(prefix) for a in _as_list(s["Action"]))]
    assert len(found) == 1, found
    assert all(a.startswith(prefix) for a in _as_list(found[0]["Action"]))
    return found[0]


def test_security_ir_scoped_to_memberships_of_this_account_and_region(
    statements: list[dict[str, Any]],
) -> None:
    s = _statement_for(statements, "security-ir:")
    assert s["Resource"] == {"Fn::Sub": MEMBERSHIP_ARN}


def test_dynamodb_item_level_on_the_table_only(statements: list[dict[str, Any]]) -> None:
    s = _statement_for(statements, "dynamodb:")
    assert sorted(_as_list(s["Action"])) == [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]
    assert s["Resource"] == {"Fn::GetAtt": [TABLE, "Arn"]}


def test_lambda_may_invoke_only_the_function_itself(statements: list[dict[str, Any]]) -> None:
    # Continuation (a new invocation of the function), and nothing of crhelper's polling mode.
    s = _statement_for(statements, "lambda:")
    assert _as_list(s["Action"]) == ["lambda:InvokeFunction"]
    assert s["Resource"] == {"Fn::GetAtt": ["MembershipFunction", "Arn"]}
    actions = {a for st in statements for a in _as_list(st["Action"])}
    assert not {a for a in actions if a.startswith("events:")}
    assert "lambda:AddPermission" not in actions


def test_stack_status_readable_on_this_accounts_stacks_in_this_region(
    statements: list[dict[str, Any]],
) -> None:
    s = _statement_for(statements, "cloudformation:")
    assert _as_list(s["Action"]) == ["cloudformation:DescribeStacks"]
    assert s["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/*"
    }


def test_the_key_is_used_only_through_dynamodb(
    statements: list[dict[str, Any]], template: dict[str, Any]
) -> None:
    s = _statement_for(statements, "kms:")
    assert _as_list(s["Action"]) == KEY_ACTIONS
    assert s["Resource"] == {"Ref": "KmsKeyArn"}
    assert s["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "dynamodb.${AWS::Region}.${AWS::URLSuffix}"}}
    }
    assert template["Conditions"]["HasKmsKey"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "KmsKeyArn"}, ""]}]
    }


def test_logs_to_own_group_without_create_log_group(statements: list[dict[str, Any]]) -> None:
    s = _statement_for(statements, "logs:")
    assert sorted(_as_list(s["Action"])) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert s["Resource"] == {"Fn::GetAtt": [LOG_GROUP, "Arn"]}


# --- table, logs, outputs, portability ------------------------------------------


def test_idempotency_table_matches_powertools_defaults(resources: dict[str, Any]) -> None:
    table = resources[TABLE]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert "TableName" not in props


def test_log_group_has_retention(resources: dict[str, Any], template: dict[str, Any]) -> None:
    group = resources[LOG_GROUP]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    assert "LogGroupName" not in group["Properties"]
    param = template["Parameters"]["LogRetentionInDays"]
    assert param["Default"] == 90
    assert 90 in param["AllowedValues"]


def test_service_token_output_is_exported(template: dict[str, Any]) -> None:
    out = template["Outputs"]["ServiceToken"]
    assert out["Value"] == {"Fn::GetAtt": [FUNCTION, "Arn"]}
    assert out["Export"] == {"Name": {"Fn::Sub": "${AWS::StackName}-ServiceToken"}}
    assert template["Outputs"]["IdempotencyTableName"]["Value"] == {"Ref": TABLE}
    assert template["Outputs"]["FunctionName"]["Value"] == {"Ref": FUNCTION}


def test_no_hard_coded_account_region_or_partition() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    assert not re.search(r"\b\d{12}\b", text)
    assert not re.search(r"\b(us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-\d\b", text)
    assert "arn:aws:" not in text


# --- sample events ---------------------------------------------------------------

COMMON_FIELDS = {
    "RequestType",
    "ServiceToken",
    "ResponseURL",
    "StackId",
    "RequestId",
    "LogicalResourceId",
    "ResourceType",
    "ResourceProperties",
}
EXTRA_FIELDS = {
    "Create": set(),
    "Update": {"PhysicalResourceId", "OldResourceProperties"},
    "Delete": {"PhysicalResourceId"},
}


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def test_there_is_an_event_per_request_type() -> None:
    kinds = {json.loads(p.read_text(encoding="utf-8"))["RequestType"] for p in EVENTS}
    assert kinds == {"Create", "Update", "Delete"}
    assert {p.name for p in EVENTS} >= {"create.json", "update.json", "delete.json"}


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: p.name)
def test_event_has_what_cloudformation_sends(path: Path) -> None:
    event = json.loads(path.read_text(encoding="utf-8"))
    kind = event["RequestType"]
    assert set(event) == COMMON_FIELDS | EXTRA_FIELDS[kind]
    assert event["ResourceType"] == "Custom::SecurityIRMembership"
    assert re.fullmatch(
        r"arn:aws:cloudformation:us-east-1:123456789012:stack/[A-Za-z][-A-Za-z0-9]*/[-0-9a-f]{36}",
        event["StackId"],
    )
    assert str(uuid.UUID(event["RequestId"])) == event["RequestId"]
    assert re.fullmatch(
        r"arn:aws:lambda:us-east-1:123456789012:function:[-A-Za-z0-9_]+", event["ServiceToken"]
    )
    url = urlsplit(event["ResponseURL"])
    assert url.scheme == "https"
    assert url.hostname == "cloudformation-custom-resource-response-useast1.s3.amazonaws.com"
    query = parse_qs(url.query)
    assert {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-Expires"} <= set(query)
    for props_key in ("ResourceProperties", "OldResourceProperties"):
        if props_key not in event:
            continue
        props = event[props_key]
        assert props["ServiceToken"] == event["ServiceToken"]
        assert props["ServiceTimeout"] == "600"
        assert re.fullmatch(r"m-[a-z0-9]{10,32}", props["MembershipId"])
        team = props["IncidentResponseTeam"]
        assert len(team) == 2
        assert all(member["Email"].endswith("@example.com") for member in team)
        assert props["OptInFeatures"][0]["FeatureName"] == "Triage"
        assert props["OptInFeatures"][0]["IsEnabled"] in {"true", "false"}
        assert 2 <= len(props["OrganizationalUnits"]) <= 3
        assert all(
            re.fullmatch(r"ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}", ou)
            for ou in props["OrganizationalUnits"]
        )
        # CloudFormation sends every scalar property as a string.
        assert all(isinstance(leaf, str) for leaf in _leaves(props)), props_key
    if kind != "Create":
        assert event["PhysicalResourceId"] == "m-abcdef0123"


# --- example consumer stack -------------------------------------------------------


def test_example_declares_the_resource_safely(example: dict[str, Any]) -> None:
    resource = example["Resources"]["Membership"]
    assert resource["Type"] == "Custom::SecurityIRMembership"
    assert resource["DeletionPolicy"] == "RetainExceptOnCreate"
    assert resource["UpdateReplacePolicy"] == "Retain"
    props = resource["Properties"]
    assert props["ServiceTimeout"] == CFN_MAX_SERVICE_TIMEOUT  # README, "ServiceTimeout"
    assert props["ServiceTimeout"] <= CFN_MAX_SERVICE_TIMEOUT
    assert props["ServiceToken"] == {
        "Fn::ImportValue": {"Fn::Sub": "${ProviderStackName}-ServiceToken"}
    }
    assert props["MembershipId"] == {"Ref": "MembershipId"}
    assert example["Parameters"]["MembershipId"]["AllowedPattern"] == "^m-[a-z0-9]{10,32}$"


def test_example_outputs_use_every_attribute(example: dict[str, Any]) -> None:
    attributes = {
        out["Value"]["Fn::GetAtt"][1]
        for out in example["Outputs"].values()
        if "Fn::GetAtt" in out["Value"]
    }
    assert attributes == {
        "MembershipId",
        "MembershipArn",
        "MembershipStatus",
        "Region",
        "AccountId",
        "CustomerType",
        "NumberOfAccountsCovered",
    }


# --- who may use the provider, and how it is scanned --------------------------------

SAMCONFIG = ROOT / "samconfig.toml"
SUPPRESSION = re.compile(r"#\s*checkov:skip=(?P<id>[A-Z0-9_]+)(?::(?P<reason>.*))?")


def _accepted_by(param: dict[str, Any], value: str) -> bool:
    """Whether CloudFormation would accept ``value`` for the parameter ``param``."""
    if "AllowedValues" in param:
        return value in [str(v) for v in param["AllowedValues"]]
    if "AllowedPattern" in param and not re.fullmatch(param["AllowedPattern"], value):
        return False
    return len(value) >= param.get("MinLength", 0)


RECOMMENDED_PATTERN = "security-ir-*"


def test_allowed_stack_names_parameter(template: dict[str, Any]) -> None:
    param = template["Parameters"]["AllowedStackNames"]
    assert param["Type"] == "String"
    # No default: a new provider stack names its consumers; an update keeps the value.
    assert "Default" not in param
    assert RECOMMENDED_PATTERN in param["Description"]
    assert RECOMMENDED_PATTERN in param["ConstraintDescription"]
    for ok in (RECOMMENDED_PATTERN, "*", "sir-membership-*, security-baseline", "prod-?[0-9]"):
        assert _accepted_by(param, ok), ok
    for bad in ("", "a,,b", ",a", "a b", "arn:aws:x"):
        assert not _accepted_by(param, bad), bad
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    assert any("AllowedStackNames" in g["Parameters"] for g in groups)


def test_template_values_of_allowed_stack_names_mean_the_same_to_the_function(
    template: dict[str, Any],
) -> None:
    from sir_membership.guard import Policy  # noqa: PLC0415

    policy = Policy.from_environ({"ALLOWED_STACK_NAMES": "sir-membership-*, security-baseline"})
    assert policy.stack_patterns == ("sir-membership-*", "security-baseline")
    assert Policy.from_environ({"ALLOWED_STACK_NAMES": RECOMMENDED_PATTERN}).stack_patterns == (
        RECOMMENDED_PATTERN,
    )
    assert "Default" not in template["Parameters"]["AllowedStackNames"]


def test_samconfig_parameter_overrides_name_every_parameter(template: dict[str, Any]) -> None:
    """The documented overrides (what --guided saves) are the template's parameters, valid.

    Commented out: an active line would reset an existing provider's
    AllowedStackNames on every `sam deploy`, instead of keeping its value.
    """
    text = SAMCONFIG.read_text(encoding="utf-8")
    (line,) = re.findall(r'^#\s*parameter_overrides = "([^"]*)"$', text, flags=re.M)
    assert not re.search(r"^\s*parameter_overrides", text, flags=re.M)
    overrides = dict(pair.split("=", 1) for pair in line.split())
    optional = {k for k, v in template["Parameters"].items() if "Default" in v}
    assert set(template["Parameters"]) - optional <= set(overrides) <= set(template["Parameters"])
    assert overrides["AllowedStackNames"] == RECOMMENDED_PATTERN
    for key, value in overrides.items():
        assert _accepted_by(template["Parameters"][key], value), key
    assert "AllowedStackNames" in text.split("parameter_overrides")[0]


def test_every_scanner_suppression_is_inline_with_its_reason() -> None:
    security = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    found = []
    for path in (TEMPLATE, *sorted((ROOT / "examples").glob("*.yaml"))):
        for match in SUPPRESSION.finditer(path.read_text(encoding="utf-8")):
            reason = (match["reason"] or "").strip()
            assert len(reason) >= 40, f"{match['id']} in {path.name} needs its reason"
            found.append(match["id"])
            assert match["id"] in security, f"{match['id']} is not discussed in docs/security.md"
    assert len(found) == len(set(found)) > 0


def test_the_scanner_runs_in_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    (targets,) = re.findall(r"^CHECKS := (.*)$", makefile, flags=re.M)
    assert "checkov" in targets.split()
    assert re.search(r"^checks: \$\(CHECKS\)$", makefile, flags=re.M)
    (recipe,) = re.findall(r"^test:\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert " checks" in recipe
    (recipe,) = re.findall(r"^checkov: .*\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert "--file template.yaml" in recipe
    assert "examples/*.yaml" in recipe
    assert "--soft-fail" not in recipe
    assert "--skip-check" not in recipe  # suppressions are inline, each with its reason


def test_every_threat_in_the_threat_model_names_tests_that_exist() -> None:
    security = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    rows = [line for line in security.splitlines() if re.match(r"\| T\d+ \|", line)]
    assert len(rows) >= 8
    for row in rows:
        refs = re.findall(r"`([a-z_/]+\.py)::(test_[a-z0-9_]+)", row)
        assert refs, f"no test named for {row[:12]}"
        for path, name in refs:
            source = (ROOT / "tests" / path).read_text(encoding="utf-8")
            assert f"def {name}(" in source, f"{path}::{name} does not exist"


# --- organization guardrails, one naming pattern, what the table holds --------------

NESTED = ROOT / "examples" / "nested-provider.yaml"
WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"
#: Resource types that store data at rest, and the property that takes a KMS key.
KMS_PROPERTIES = {
    "AWS::DynamoDB::Table": ("SSESpecification", "KMSMasterKeyId"),
    "AWS::Logs::LogGroup": ("KmsKeyId",),
    "AWS::SQS::Queue": ("KmsMasterKeyId",),
    "AWS::SNS::Topic": ("KmsMasterKeyId",),
    "AWS::S3::Bucket": ("BucketEncryption",),
    "AWS::StepFunctions::StateMachine": ("EncryptionConfiguration", "KmsKeyId"),
}


def test_every_role_takes_the_permissions_boundary(
    resources: dict[str, Any], template: dict[str, Any]
) -> None:
    """Every role the stack creates, or SAM creates for it, carries the optional boundary."""
    boundary = {"Fn::If": ["HasPermissionsBoundary", {"Ref": "PermissionsBoundaryArn"}, NO_VALUE]}
    roles = [r for r in resources.values() if r["Type"] == "AWS::IAM::Role"]
    assert roles
    for role in roles:
        assert role["Properties"]["PermissionsBoundary"] == boundary
    sam_roles = [
        r
        for r in resources.values()
        if r["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")
        and "Role" not in r["Properties"]
    ]
    for made in sam_roles:
        assert made["Properties"]["PermissionsBoundary"] == boundary
    assert template["Conditions"]["HasPermissionsBoundary"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "PermissionsBoundaryArn"}, ""]}]
    }
    param = template["Parameters"]["PermissionsBoundaryArn"]
    assert param["Default"] == ""
    assert _accepted_by(param, "arn:aws:iam::123456789012:policy/org/security-boundary")
    assert not _accepted_by(param, "security-boundary")


NO_VALUE = {"Ref": "AWS::NoValue"}


def test_everything_stored_takes_the_kms_key(
    resources: dict[str, Any], template: dict[str, Any]
) -> None:
    """The table, the log group and anything storing data added later use KmsKeyArn when set."""
    stores = {k: v for k, v in resources.items() if v["Type"] in KMS_PROPERTIES}
    assert set(stores) >= {TABLE, LOG_GROUP}
    for name, store in stores.items():
        value: Any = store["Properties"]
        for key in KMS_PROPERTIES[store["Type"]]:
            value = value[key]
        assert value == {"Fn::If": ["HasKmsKey", {"Ref": "KmsKeyArn"}, NO_VALUE]}, name
    sse = resources[TABLE]["Properties"]["SSESpecification"]
    assert sse["SSEEnabled"] == {"Fn::If": ["HasKmsKey", True, False]}
    assert sse["SSEType"] == {"Fn::If": ["HasKmsKey", "KMS", NO_VALUE]}
    param = template["Parameters"]["KmsKeyArn"]
    assert param["Default"] == ""
    for ok in (
        "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab",
    ):
        assert _accepted_by(param, ok), ok
    assert not _accepted_by(param, "alias/my-key")


def test_every_parameter_is_described_for_the_console_and_grouped(template: dict[str, Any]) -> None:
    interface = template["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [p for g in interface["ParameterGroups"] for p in g["Parameters"]]
    assert sorted(grouped) == sorted(template["Parameters"])
    for name, param in template["Parameters"].items():
        assert len(param["Description"]) >= 30, name
        assert interface["ParameterLabels"][name]["default"], name
        if "AllowedPattern" in param:
            assert param.get("ConstraintDescription"), name


#: The pages a user deploys from: the README and the docs it sends them to.
USER_DOCS = (
    "README.md",
    "docs/deploy.md",
    "docs/cli.md",
    "docs/troubleshooting.md",
    "docs/security.md",
    "docs/upgrade.md",
)


def _stack_names_in_examples() -> dict[str, str]:
    """Every consumer stack name the examples, the CI workflow and the docs deploy."""
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    names = {"examples/ci/github-actions.yml": workflow["env"]["STACK_NAME"]}
    for doc in USER_DOCS:
        text = (ROOT / doc).read_text(encoding="utf-8")
        for i, name in enumerate(re.findall(r"--stack-name ([A-Za-z][-A-Za-z0-9]*)", text)):
            names[f"{doc} #{i}"] = name
    return names


def test_one_naming_pattern_everywhere(template: dict[str, Any]) -> None:
    """The examples, the workflow, samconfig and the docs recommend security-ir-* only."""
    from fnmatch import fnmatchcase  # noqa: PLC0415

    provider = "sir-membership-provider"
    for where, name in _stack_names_in_examples().items():
        assert name == provider or fnmatchcase(name, RECOMMENDED_PATTERN), (where, name)
    others = re.compile(r"security-\*|sir-membership-\*|security-baseline")
    for path in (
        TEMPLATE,
        SAMCONFIG,
        EXAMPLE,
        NESTED,
        WORKFLOW,
        *(ROOT / doc for doc in USER_DOCS),
    ):
        text = path.read_text(encoding="utf-8")
        assert not others.search(text), f"{path.name}: {others.search(text)}"
    for path in (TEMPLATE, SAMCONFIG, EXAMPLE, ROOT / "README.md", ROOT / "docs" / "security.md"):
        assert RECOMMENDED_PATTERN in path.read_text(encoding="utf-8"), path.name


def test_the_nested_provider_serves_only_the_stack_that_nests_it() -> None:
    nested = load_cfn(NESTED)
    parameters = nested["Resources"]["Provider"]["Properties"]["Parameters"]
    assert parameters["AllowedStackNames"] == {"Ref": "AWS::StackName"}
    provider_params = load_cfn(TEMPLATE)["Parameters"]
    assert set(parameters) <= set(provider_params)
    required = {k for k, v in provider_params.items() if "Default" not in v}
    assert required <= set(parameters)
    membership = nested["Resources"]["Membership"]["Properties"]
    assert membership["ServiceTimeout"] == CFN_MAX_SERVICE_TIMEOUT


def test_the_table_retention_stated_is_the_codes() -> None:
    """docs/security.md's "What the table holds" quotes the code's TTLs, once."""
    from sir_membership import journal_store  # noqa: PLC0415
    from sir_membership.app import RECORD_TTL_SECONDS  # noqa: PLC0415

    security = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    section = security.split("## What the table holds", 1)[1].split("\n## ", 1)[0]
    rows = {
        row.split("|")[1].strip(): row.split("|")[3].strip()
        for row in section.splitlines()
        if row.startswith("| ") and not row.startswith("| Item")
    }
    kept = {key.split("`")[1] if "`" in key else key: value for key, value in rows.items()}

    def hours(seconds: int) -> str:
        return f"{seconds // 3600} hour" + ("s" if seconds != 3600 else "")

    assert kept["journal#<StackId>#<LogicalResourceId>"].startswith(
        f"{journal_store.JOURNAL_TTL_SECONDS // 86400} days"
    )
    assert kept["handoff#<StackId>#<RequestId>"] == hours(journal_store.HANDOFF_TTL_SECONDS)
    assert kept["lease#<MembershipId>"].startswith(hours(journal_store.LEASE_TTL_SECONDS))
    idempotency = next(v for k, v in rows.items() if k.startswith("Powertools"))
    assert idempotency == hours(RECORD_TTL_SECONDS)
    # The names, emails and job titles the journal holds are said, not hidden.
    assert "names, emails, job titles" in section
    # Stated once: the README and the template's reasons point here, or agree.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/security.md#what-the-table-holds" in readme
    assert "journal#" not in readme
    for match in SUPPRESSION.finditer(TEMPLATE.read_text(encoding="utf-8")):
        reason = match["reason"] or ""
        assert "no sensitive value" not in reason
        assert "7 days" not in reason
        if "days" in reason:
            assert f"{journal_store.JOURNAL_TTL_SECONDS // 86400} days" in reason


def test_build_output_is_ignored() -> None:
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert {"build/", "dist/", "*.egg-info/", ".aws-sam/"} <= set(ignored)


def test_one_service_timeout_rule_everywhere() -> None:
    """README states the rule once; its snippet, its table and the examples follow it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count("the one rule: declare `ServiceTimeout: 3600`") == 1
    declared = re.findall(r"ServiceTimeout: (\d+)", readme)
    assert set(declared) == {str(CFN_MAX_SERVICE_TIMEOUT)}
    (row,) = [line for line in readme.splitlines() if line.startswith("| `ServiceToken`, `Servi")]
    assert "ignored" not in row
    for page in (ROOT / "docs").glob("*.md"):
        declared = re.findall(r"ServiceTimeout: (\d+)", page.read_text(encoding="utf-8"))
        assert set(declared) <= {str(CFN_MAX_SERVICE_TIMEOUT)}, page.name
    for path in (EXAMPLE, NESTED):
        resource = load_cfn(path)["Resources"]["Membership"]["Properties"]
        assert resource["ServiceTimeout"] == CFN_MAX_SERVICE_TIMEOUT, path.name
