"""guardrails.yaml: the hook template's contract with the hook function, read as data.

cfn-lint, ``sam validate --lint`` and checkov run on it in ``make test``
(Makefile); these tests pin what those cannot know: every rule's setting is
a parameter with the function's own default and reaches the function
unchanged, and the two roles grant exactly what the hook needs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from test_template import SUPPRESSION, load_cfn

from sir_membership.guardrails import hook
from sir_membership.guardrails.payload import DEFAULT_PAYLOAD_PATTERNS, PATTERNS_VARIABLE
from sir_membership.guardrails.settings import PARAMETERS

ROOT = Path(__file__).resolve().parent.parent
GUARDRAILS = ROOT / "guardrails.yaml"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_cfn(GUARDRAILS)


def actions(role: dict[str, Any]) -> set[str]:
    found = set()
    for policy in role["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            listed = statement["Action"]
            found |= set(listed if isinstance(listed, list) else [listed])
    return found


def test_every_setting_is_a_parameter_with_the_functions_default(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    variables = template["Resources"]["GuardrailsFunction"]["Properties"]["Environment"][
        "Variables"
    ]
    for setting in PARAMETERS:
        declared = parameters[setting.name]
        assert str(declared["Default"]) == setting.default, setting.name
        assert variables[setting.name] == {"Ref": setting.name}
    assert parameters[PATTERNS_VARIABLE]["Default"] == ",".join(DEFAULT_PAYLOAD_PATTERNS)
    assert variables[PATTERNS_VARIABLE] == {"Ref": PATTERNS_VARIABLE}
    assert set(variables) == {p.name for p in PARAMETERS} | {PATTERNS_VARIABLE}


def test_the_hook_starts_in_warn_on_stacks_and_change_sets(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert parameters["FailureMode"]["Default"] == "WARN"
    assert parameters["FailureMode"]["AllowedValues"] == ["WARN", "FAIL"]
    assert parameters["TargetOperations"]["Default"] == "STACK,CHANGE_SET"
    properties = template["Resources"]["GuardrailsHook"]["Properties"]
    assert template["Resources"]["GuardrailsHook"]["Type"] == "AWS::CloudFormation::LambdaHook"
    assert properties["FailureMode"] == {"Ref": "FailureMode"}
    assert properties["TargetOperations"] == {"Ref": "TargetOperations"}
    assert properties["TargetFilters"] == {"Actions": {"Ref": "TargetActions"}}
    assert properties["LambdaFunction"] == {"Fn::GetAtt": ["GuardrailsFunction", "Arn"]}
    # The hook never evaluates its own stack (an update of the hook cannot lock itself out).
    exclude = properties["StackFilters"]["StackNames"]["Exclude"]["Fn::If"]
    assert exclude[2] == [{"Ref": "AWS::StackName"}]


def test_the_function_answers_within_the_hooks_30_seconds(template: dict[str, Any]) -> None:
    function = template["Resources"]["GuardrailsFunction"]["Properties"]
    assert function["Handler"] == "sir_membership.guardrails.hook.handler"
    assert callable(hook.handler)
    assert function["Timeout"] == hook.BUDGET_SECONDS < 30
    assert function["CodeUri"] == "src/"
    makefile = (ROOT / "src" / "Makefile").read_text()
    assert "build-GuardrailsFunction:" in makefile


def test_the_function_role_reads_a_membership_and_a_template_only(
    template: dict[str, Any],
) -> None:
    role = template["Resources"]["GuardrailsFunctionRole"]
    assert actions(role) == {
        "security-ir:GetMembership",
        "cloudformation:GetTemplate",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    text = str(role)
    assert "*:*" not in text
    assert "membership/*" in text


def test_the_hook_role_invokes_the_function_only_for_this_account(
    template: dict[str, Any],
) -> None:
    role = template["Resources"]["GuardrailsHookRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "hooks.cloudformation.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    (policy,) = role["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Resource"] == {"Fn::GetAtt": ["GuardrailsFunction", "Arn"]}


def test_the_template_is_linted_validated_and_scanned_in_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target, needle in (
        ("cfn-lint", "guardrails.yaml"),
        ("sam-validate", "--template-file guardrails.yaml"),
        ("checkov", "--file guardrails.yaml"),
    ):
        (recipe,) = re.findall(rf"^{target}: .*\n((?:\t.*\n)+)", makefile, flags=re.M)
        assert needle in recipe, target


def test_every_scanner_suppression_has_its_reason_in_docs() -> None:
    security = (ROOT / "docs" / "security.md").read_text()
    found = list(SUPPRESSION.finditer(GUARDRAILS.read_text()))
    assert found
    for match in found:
        assert len((match["reason"] or "").strip()) >= 40
        assert match["id"] in security
