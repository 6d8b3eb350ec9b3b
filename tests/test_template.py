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
DEFINITION = ROOT / "statemachine" / "membership.asl.json"
EXAMPLE = ROOT / "examples" / "membership.yaml"
EVENTS = sorted((ROOT / "events").glob("*.json"))

FUNCTION = "MembershipFunction"  # the dispatcher (the ServiceToken)
WORK = "WorkFunction"
ANSWER = "AnswerFunction"
STATE_MACHINE = "MembershipStateMachine"
ROLE = "FunctionRole"  # the dispatcher's
WORK_ROLE = "WorkFunctionRole"
ANSWER_ROLE = "AnswerFunctionRole"
MACHINE_ROLE = "StateMachineRole"
ROLES = (ROLE, WORK_ROLE, ANSWER_ROLE, MACHINE_ROLE)
TABLE = "IdempotencyTable"
LOG_GROUP = "FunctionLogGroup"
WORK_LOG_GROUP = "WorkFunctionLogGroup"
ANSWER_LOG_GROUP = "AnswerFunctionLogGroup"
METRICS_NAMESPACE = "SirMembership"
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


def role_statements(resources: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """Every statement ``role`` gets: its inline policies and the policies attached to it."""
    attached = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::IAM::RolePolicy" and r["Properties"]["RoleName"] == {"Ref": role}
    ]
    policies = [*resources[role]["Properties"]["Policies"], *attached]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    return load_cfn(EXAMPLE)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- the functions -----------------------------------------------------------

#: Each function, its handler, its role, its log group, its timeout.
FUNCTIONS = {
    FUNCTION: ("sir_membership.app.handler", ROLE, LOG_GROUP, 300),
    WORK: ("sir_membership.tasks.work", WORK_ROLE, WORK_LOG_GROUP, 300),
    ANSWER: ("sir_membership.tasks.answer", ANSWER_ROLE, ANSWER_LOG_GROUP, 60),
}


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


def test_the_functions_are_the_dispatcher_and_the_two_tasks(resources: dict[str, Any]) -> None:
    functions = {k for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"}
    assert functions == set(FUNCTIONS)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_runtime_and_packaging(name: str, resources: dict[str, Any]) -> None:
    """One CodeUri, runtime and architecture; a handler, a role and a log group each."""
    handler, role, log_group, timeout = FUNCTIONS[name]
    function = resources[name]["Properties"]
    assert function["Handler"] == handler
    assert function["CodeUri"] == "src/"
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["Timeout"] == timeout
    assert function["MemorySize"] == 256
    assert "Layers" not in function
    assert function["Role"] == {"Fn::GetAtt": [role, "Arn"]}
    assert "Policies" not in function  # no SAM policy templates
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": log_group}
    code = ROOT / function["CodeUri"]
    assert (code / "requirements.txt").is_file()
    assert (code / "sir_membership" / "__init__.py").is_file()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_is_built_by_the_lean_package_makefile(
    name: str, resources: dict[str, Any]
) -> None:
    """sam build runs build-<LogicalId>; the package is built from the handler's module."""
    resource = resources[name]
    assert resource["Metadata"] == {"BuildMethod": "makefile"}
    makefile = (ROOT / resource["Properties"]["CodeUri"] / "Makefile").read_text()
    (recipe,) = re.findall(
        rf"^(?:build-\w+ )*build-{name}(?: build-\w+)*:\n((?:\t.*\n)+)", makefile, flags=re.M
    )
    assert "lean_package.py" in makefile
    module = resource["Properties"]["Handler"].rsplit(".", 1)[0]
    entry = re.search(r"--entry (\S+)", recipe)
    # The lean package's default entry is the dispatcher's module.
    assert (entry[1] if entry else "sir_membership.app") == module


def test_function_environment(resources: dict[str, Any], template: dict[str, Any]) -> None:
    # RESPONSE_URL_PATTERNS is not set: the function's default (CloudFormation's
    # response bucket of AWS_REGION, which Lambda sets) applies.
    common = {
        "IDEMPOTENCY_TABLE_NAME": {"Ref": TABLE},
        "POWERTOOLS_SERVICE_NAME": "sir-membership",
        "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
    }
    assert resources[FUNCTION]["Properties"]["Environment"]["Variables"] == {
        **common,
        "ALLOWED_STACK_NAMES": {"Ref": "AllowedStackNames"},
        "STATE_MACHINE_ARN": {"Ref": STATE_MACHINE},
    }
    assert resources[WORK]["Properties"]["Environment"]["Variables"] == common
    assert resources[ANSWER]["Properties"]["Environment"]["Variables"] == {
        **common,
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
    }
    param = template["Parameters"]["LogLevel"]
    assert param["Default"] == "INFO"
    assert param["AllowedValues"] == ["DEBUG", "INFO", "WARNING", "ERROR"]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_lambda_log_level_follows_the_parameter(
    name: str, resources: dict[str, Any], template: dict[str, Any]
) -> None:
    logging = resources[name]["Properties"]["LoggingConfig"]
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


def test_only_the_answer_function_has_an_event_source(resources: dict[str, Any]) -> None:
    """Work is invoked by the state machine only; the dispatcher by CloudFormation only."""
    assert "Events" not in resources[FUNCTION]["Properties"]
    assert "Events" not in resources[WORK]["Properties"]
    assert "EventInvokeConfig" not in resources[WORK]["Properties"]  # invoked synchronously
    assert set(resources[ANSWER]["Properties"]["Events"]) == {"ExecutionEndedUnanswered"}
    config = resources[ANSWER]["Properties"]["EventInvokeConfig"]
    assert config == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600}


# --- the state machine, the safety net, the alarms ------------------------------


def test_the_state_machine_is_standard_from_the_definition_file(
    resources: dict[str, Any],
) -> None:
    machine = resources[STATE_MACHINE]
    assert machine["Type"] == "AWS::Serverless::StateMachine"
    properties = machine["Properties"]
    assert properties["Type"] == "STANDARD"
    assert (ROOT / properties["DefinitionUri"]).is_file()
    assert properties["DefinitionUri"] == "statemachine/membership.asl.json"
    assert properties["DefinitionSubstitutions"] == {
        "WorkFunctionArn": {"Fn::GetAtt": [WORK, "Arn"]},
        "AnswerFunctionArn": {"Fn::GetAtt": [ANSWER, "Arn"]},
        "Partition": {"Ref": "AWS::Partition"},
    }
    assert properties["Role"] == {"Fn::GetAtt": [MACHINE_ROLE, "Arn"]}
    assert "Policies" not in properties  # no SAM-made role
    assert "Events" not in properties  # started by the dispatcher only
    placeholders = set(re.findall(r"\$\{(\w+)\}", (ROOT / properties["DefinitionUri"]).read_text()))
    assert placeholders == set(properties["DefinitionSubstitutions"])


def _references(value: Any) -> set[str]:
    """The logical ids and parameters ``value`` names (Ref, GetAtt, Sub)."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return {value["Ref"]}
        if set(value) == {"Fn::GetAtt"}:
            return {value["Fn::GetAtt"][0]}
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            return {m.split(".")[0] for m in re.findall(r"\$\{([\w.:]+)\}", value["Fn::Sub"])}
        return {name for item in value.values() for name in _references(item)}
    if isinstance(value, list):
        return {name for item in value for name in _references(item)}
    return set()


def test_the_state_machine_never_reaches_the_dispatcher(resources: dict[str, Any]) -> None:
    """What the machine (and its role) names: the two tasks only, so no cycle and no re-entry."""
    named = _references(resources[STATE_MACHINE]) | _references(resources[MACHINE_ROLE])
    assert {n for n in named if n in resources} == {WORK, ANSWER, MACHINE_ROLE}
    for task in (WORK, ANSWER):
        assert STATE_MACHINE not in _references(resources[task]["Properties"]["Environment"])


def test_the_safety_net_hears_this_state_machines_unanswered_ends(
    resources: dict[str, Any],
) -> None:
    event = resources[ANSWER]["Properties"]["Events"]["ExecutionEndedUnanswered"]
    assert event["Type"] == "EventBridgeRule"
    assert event["Properties"]["Pattern"] == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {
            "status": ["FAILED", "TIMED_OUT", "ABORTED"],
            "stateMachineArn": [{"Ref": STATE_MACHINE}],
        },
    }
    assert "EventBusName" not in event["Properties"]  # Step Functions' default bus
    assert event["Properties"]["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 3600


@pytest.mark.parametrize("metric", ["SafetyNetAnswers", "UnrestoredAnswers"])
def test_an_alarm_per_answer_metric_notifies_the_optional_topic(
    metric: str, resources: dict[str, Any], template: dict[str, Any]
) -> None:
    alarm = resources[f"{metric}Alarm"]
    assert alarm["Type"] == "AWS::CloudWatch::Alarm"
    assert "Condition" not in alarm  # the alarm exists always
    properties = alarm["Properties"]
    assert {k: v for k, v in properties.items() if k != "AlarmDescription"} == {
        "Namespace": METRICS_NAMESPACE,
        "MetricName": metric,
        "Dimensions": [{"Name": "service", "Value": "sir-membership"}],
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], NO_VALUE]},
    }
    assert template["Conditions"]["HasAlarmTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]
    }
    param = template["Parameters"]["AlarmTopicArn"]
    assert param["Default"] == ""
    assert _accepted_by(param, "arn:aws:sns:eu-west-1:123456789012:security-alerts")
    assert _accepted_by(param, "arn:aws-us-gov:sns:us-gov-west-1:123456789012:sir_alerts")
    assert not _accepted_by(param, "security-alerts")
    assert not _accepted_by(param, "arn:aws:sqs:eu-west-1:123456789012:q")


# --- IAM -----------------------------------------------------------------------

LAMBDA_TRUST = [
    {
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
]
#: The table key's policy of each role that reads or writes the table.
KEY_POLICIES = {
    ROLE: "TableKeyPolicy",
    WORK_ROLE: "WorkTableKeyPolicy",
    ANSWER_ROLE: "AnswerTableKeyPolicy",
}


def test_the_iam_principals_are_four_roles_and_no_managed_policies(
    resources: dict[str, Any],
) -> None:
    iam = {k: v["Type"] for k, v in resources.items() if v["Type"].startswith("AWS::IAM::")}
    # A role per function and the state machine's; the key's policies exist
    # only with KmsKeyArn. No policy names the dispatcher (the self-invoke is gone).
    assert iam == {
        **dict.fromkeys(ROLES, "AWS::IAM::Role"),
        **dict.fromkeys(KEY_POLICIES.values(), "AWS::IAM::RolePolicy"),
    }
    for role, policy in KEY_POLICIES.items():
        assert resources[policy]["Properties"]["RoleName"] == {"Ref": role}
        assert resources[policy]["Condition"] == "HasKmsKey"
    for role in ROLES:
        properties = resources[role]["Properties"]
        assert "ManagedPolicyArns" not in properties
        assert "RoleName" not in properties  # CAPABILITY_IAM is enough
    for role in (ROLE, WORK_ROLE, ANSWER_ROLE):
        assert (
            resources[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"] == LAMBDA_TRUST
        )


def test_step_functions_may_assume_the_machine_role_for_this_accounts_machines_only(
    resources: dict[str, Any],
) -> None:
    trust = resources[MACHINE_ROLE]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "states.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                "ArnLike": {
                    "aws:SourceArn": {
                        "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:"
                        "${AWS::AccountId}:stateMachine:*"
                    }
                },
            },
        }
    ]


KEY_ACTIONS = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
TABLE_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
]
#: The dispatcher and the Answer task read, and write only by conditional
#: updates (records, fences, claims); only Work puts and deletes items.
READ_UPDATE_ACTIONS = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
LOG_ACTIONS = ["logs:CreateLogStream", "logs:PutLogEvents"]
SECURITY_IR_ACTIONS = [
    "security-ir:GetMembership",
    "security-ir:UpdateMembership",
    "security-ir:ListTagsForResource",
    "security-ir:TagResource",
    "security-ir:UntagResource",
]
#: Every action each role is granted (the key's only with KmsKeyArn).
EXACT_ACTIONS = {
    ROLE: [
        *KEY_ACTIONS,
        *READ_UPDATE_ACTIONS,
        *LOG_ACTIONS,
        "states:StartExecution",
        "states:StopExecution",
    ],
    WORK_ROLE: [
        *KEY_ACTIONS,
        *TABLE_ACTIONS,
        *LOG_ACTIONS,
        *SECURITY_IR_ACTIONS,
        "cloudformation:DescribeStacks",
    ],
    ANSWER_ROLE: [*KEY_ACTIONS, *READ_UPDATE_ACTIONS, *LOG_ACTIONS],
    MACHINE_ROLE: ["lambda:InvokeFunction"],
}


@pytest.mark.parametrize("role", ROLES)
def test_exact_set_of_actions(role: str, resources: dict[str, Any]) -> None:
    actions = sorted(a for s in role_statements(resources, role) for a in _as_list(s["Action"]))
    assert actions == sorted(EXACT_ACTIONS[role])


@pytest.mark.parametrize("role", ROLES)
def test_no_wildcards_denies_or_conditions_to_hide_behind(
    role: str, resources: dict[str, Any]
) -> None:
    for s in role_statements(resources, role):
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
    resources: dict[str, Any],
) -> None:
    s = _statement_for(role_statements(resources, WORK_ROLE), "security-ir:")
    assert s["Resource"] == {"Fn::Sub": MEMBERSHIP_ARN}
    for role in (ROLE, ANSWER_ROLE, MACHINE_ROLE):
        actions = [a for st in role_statements(resources, role) for a in _as_list(st["Action"])]
        assert not [a for a in actions if a.startswith("security-ir:")], role


@pytest.mark.parametrize(
    ("role", "actions"),
    [(ROLE, READ_UPDATE_ACTIONS), (WORK_ROLE, TABLE_ACTIONS), (ANSWER_ROLE, READ_UPDATE_ACTIONS)],
)
def test_dynamodb_item_level_on_the_table_only(
    role: str, actions: list[str], resources: dict[str, Any]
) -> None:
    s = _statement_for(role_statements(resources, role), "dynamodb:")
    assert sorted(_as_list(s["Action"])) == sorted(actions)
    assert s["Resource"] == {"Fn::GetAtt": [TABLE, "Arn"]}


def test_the_dispatcher_starts_and_stops_this_state_machines_executions_only(
    resources: dict[str, Any],
) -> None:
    statements = role_statements(resources, ROLE)
    states = [s for s in statements if _as_list(s["Action"])[0].startswith("states:")]
    assert [(s["Action"], s["Resource"]) for s in states] == [
        ("states:StartExecution", {"Ref": STATE_MACHINE}),
        (
            "states:StopExecution",
            {
                "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
                ":execution:${MembershipStateMachine.Name}:*"
            },
        ),
    ]


def test_the_state_machine_may_invoke_its_two_tasks_only(resources: dict[str, Any]) -> None:
    s = _statement_for(role_statements(resources, MACHINE_ROLE), "lambda:")
    assert _as_list(s["Action"]) == ["lambda:InvokeFunction"]
    assert s["Resource"] == [{"Fn::GetAtt": [WORK, "Arn"]}, {"Fn::GetAtt": [ANSWER, "Arn"]}]


def test_no_role_invokes_the_dispatcher_or_makes_rules_or_permissions(
    resources: dict[str, Any],
) -> None:
    """The self-invoke chain is gone: nothing may invoke the ServiceToken function; no
    role creates EventBridge rules or Lambda permissions at run time (the template does)."""
    for role in ROLES:
        for s in role_statements(resources, role):
            actions = _as_list(s["Action"])
            assert not [a for a in actions if a.startswith("events:")], role
            assert "lambda:AddPermission" not in actions, role
            if "lambda:InvokeFunction" in actions:
                assert {"Fn::GetAtt": [FUNCTION, "Arn"]} not in _as_list(s["Resource"])
    assert "InvokeItselfPolicy" not in resources


def test_stack_status_readable_on_this_accounts_stacks_in_this_region(
    resources: dict[str, Any],
) -> None:
    s = _statement_for(role_statements(resources, WORK_ROLE), "cloudformation:")
    assert _as_list(s["Action"]) == ["cloudformation:DescribeStacks"]
    assert s["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/*"
    }


@pytest.mark.parametrize("role", [ROLE, WORK_ROLE, ANSWER_ROLE])
def test_the_key_is_used_only_through_dynamodb(
    role: str, resources: dict[str, Any], template: dict[str, Any]
) -> None:
    s = _statement_for(role_statements(resources, role), "kms:")
    assert _as_list(s["Action"]) == KEY_ACTIONS
    assert s["Resource"] == {"Ref": "KmsKeyArn"}
    assert s["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "dynamodb.${AWS::Region}.${AWS::URLSuffix}"}}
    }
    assert template["Conditions"]["HasKmsKey"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "KmsKeyArn"}, ""]}]
    }


@pytest.mark.parametrize("role", [ROLE, WORK_ROLE, ANSWER_ROLE])
def test_logs_to_own_group_without_create_log_group(role: str, resources: dict[str, Any]) -> None:
    (log_group,) = [group for _, r, group, _ in FUNCTIONS.values() if r == role]
    s = _statement_for(role_statements(resources, role), "logs:")
    assert sorted(_as_list(s["Action"])) == LOG_ACTIONS
    assert s["Resource"] == {"Fn::GetAtt": [log_group, "Arn"]}


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


@pytest.mark.parametrize("log_group", [LOG_GROUP, WORK_LOG_GROUP, ANSWER_LOG_GROUP])
def test_log_group_has_retention(
    log_group: str, resources: dict[str, Any], template: dict[str, Any]
) -> None:
    group = resources[log_group]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["DeletionPolicy"] == "Retain"  # the audit trail outlives the stack
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    assert "LogGroupName" not in group["Properties"]
    param = template["Parameters"]["LogRetentionInDays"]
    assert param["Default"] == 90
    assert 90 in param["AllowedValues"]


def test_service_token_output_is_exported(template: dict[str, Any]) -> None:
    out = template["Outputs"]["ServiceToken"]
    assert out["Value"] == {"Fn::GetAtt": [FUNCTION, "Arn"]}
    assert out["Export"] == {"Name": {"Fn::Sub": "${AWS::StackName}-ServiceToken"}}
    values = {name: o["Value"] for name, o in template["Outputs"].items() if name != "ServiceToken"}
    assert values == {
        "FunctionName": {"Ref": FUNCTION},
        "FunctionLogGroupName": {"Ref": LOG_GROUP},
        "WorkFunctionName": {"Ref": WORK},
        "WorkFunctionLogGroupName": {"Ref": WORK_LOG_GROUP},
        "AnswerFunctionName": {"Ref": ANSWER},
        "AnswerFunctionLogGroupName": {"Ref": ANSWER_LOG_GROUP},
        "StateMachineArn": {"Ref": STATE_MACHINE},
        "IdempotencyTableName": {"Ref": TABLE},
    }
    # Only the ServiceToken is exported: nothing else is an interface to other stacks.
    assert [n for n, o in template["Outputs"].items() if "Export" in o] == ["ServiceToken"]


@pytest.mark.parametrize("path", [TEMPLATE, DEFINITION], ids=lambda p: p.name)
def test_no_hard_coded_account_region_or_partition(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
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


def _suppressions(text: str) -> list[tuple[str, str, str]]:
    """Each ``# checkov:skip=ID:reason`` as (the resource it sits in, ID, reason)."""
    found, resource = [], ""
    for line in text.split("\n"):
        top = re.fullmatch(r"  ([A-Za-z0-9]+):", line)
        resource = top[1] if top else resource
        match = SUPPRESSION.search(line)
        if match:
            found.append((resource, match["id"], (match["reason"] or "").strip()))
    return found


def test_every_scanner_suppression_is_inline_with_its_reason() -> None:
    """Each skip has its reason inline and a row of docs/security.md naming its resource."""
    security = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    table = security.split("### Scanner suppressions", 1)[1].split("\n\n", 2)[1]
    rows = [row for row in table.splitlines() if row.startswith("| CKV_")]
    found = []
    for path in (TEMPLATE, *sorted((ROOT / "examples").glob("*.yaml"))):
        for resource, check, reason in _suppressions(path.read_text(encoding="utf-8")):
            assert len(reason) >= 40, f"{check} in {path.name} needs its reason"
            found.append((path.name, resource, check))
            assert any(check in row and f"`{resource}`" in row for row in rows), (
                f"{check} on {resource} is not discussed in docs/security.md"
            )
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
    from sir_membership import journal_store, request_store  # noqa: PLC0415

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
    assert kept["lease#<MembershipId>"].startswith(hours(journal_store.LEASE_TTL_SECONDS))
    assert kept["request#<StackId>#<RequestId>"] == hours(request_store.REQUEST_TTL_SECONDS)
    assert kept["fence#<StackId>#<LogicalResourceId>"].startswith("no expiry")
    assert set(kept) == {
        "request#<StackId>#<RequestId>",
        "fence#<StackId>#<LogicalResourceId>",
        "journal#<StackId>#<LogicalResourceId>",
        "declared#<StackId>#<LogicalResourceId>",
        "lease#<MembershipId>",
    }
    # The names, emails and job titles the journal and the request record hold
    # are said, not hidden; so is the ResponseURL the request record keeps.
    assert section.count("names, emails, job titles") == 2
    assert "pre-signed ResponseURL" in section
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
