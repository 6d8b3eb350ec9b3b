"""The guardrail rules and the ``check`` command (CI, pre-commit), offline and stubbed.

The shared table (``guardrail_cases``) gives every rule a passing and a
failing case; here each goes through ``sir-membership check`` as a user
runs it (templates and a state file on disk). The hook runs the same table
in ``test_guardrails_hook.py``.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from guardrail_cases import (
    BASE,
    CASES,
    LOGICAL_ID,
    MID,
    OUS,
    REGION,
    SECRETS,
    STACK,
    TOKEN,
    Case,
    check_outcomes,
    properties,
    resource,
    run,
    state,
    template,
    unusable,
    write_case,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from sir_membership import cli
from sir_membership.errors import ConfigurationError, InvalidProperties
from sir_membership.guardrails import RULE_NAMES, Settings, evaluate, template_subjects
from sir_membership.guardrails.rules import Actual, max_ous_removed
from sir_membership.guardrails.settings import NAMES, PARAMETERS
from sir_membership.membership import state_from_api
from sir_membership.preview import StackContext
from sir_membership.preview.base import normal
from sir_membership.properties import parse_properties


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_case_through_check(case: Case, tmp_path: Path) -> None:
    found = check_outcomes(case, tmp_path)
    assert found[case.rule] == case.expect
    failing = {rule for rule, outcome in found.items() if outcome == "fail"}
    assert failing == ({case.rule} if case.expect == "fail" else set())
    code, out, err = run(write_case(case, tmp_path))
    assert code == (1 if case.expect == "fail" else 0)
    fail_lines = [line for line in out.splitlines() if line.startswith("FAIL ")]
    if case.expect == "fail":
        assert len(fail_lines) == 1
        assert fail_lines[0].startswith(f"FAIL {STACK}/{LOGICAL_ID}: {case.rule}: ")
        assert "; fix: " in fail_lines[0]
    else:
        assert fail_lines == []
    for secret in SECRETS:
        assert secret not in out + err


def test_every_rule_has_a_passing_and_a_failing_case() -> None:
    for rule in RULE_NAMES:
        assert {c.expect for c in CASES if c.rule == rule} == {"pass", "fail"}, rule


def test_the_invalid_declaration_fails_with_the_functions_own_reason(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == "invalid-email")
    assert case.new is not None
    with pytest.raises(InvalidProperties) as raised:  # what the function answers
        parse_properties(normal(case.new["Properties"]))
    code, out, _ = run(write_case(case, tmp_path))
    assert code == 1
    assert f"valid-declaration: {raised.value.reason}; fix: " in out
    assert "IncidentResponseTeam[2].Email is invalid" in raised.value.reason


def test_counts_not_values_in_failures(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == "personal-mailbox")
    _, out, _ = run(write_case(case, tmp_path))
    assert (
        "1 of 3 responders (IncidentResponseTeam[2]) have an email outside AllowedEmailDomains "
        "(example.com, *.example.org)" in out
    )
    assert "gmail" not in out
    case = next(c for c in CASES if c.name == "many-ous-removed")
    _, out, _ = run(write_case(case, tmp_path))
    assert (
        "removes 6 of 7 OUs from coverage (state file); MaxOrganizationalUnitsRemoved is 5" in out
    )


def test_markdown_for_a_pull_request(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == "removed-deleted")
    code, out, _ = run([*write_case(case, tmp_path), "--format", "markdown"])
    assert code == 1
    assert out.startswith("### sir-membership guardrails\n\n:x: guardrails FAILED: 1 membership")
    assert (
        f"| FAIL | `{STACK}/{LOGICAL_ID}` | `retain-on-removal` | removed from the stack with "
        "DeletionPolicy Delete (CloudFormation sends the function a Delete) | deploy "
        "DeletionPolicy: Retain first, then remove the resource |" in out
    )


# -- templates: parameters, holes, conditions, selection --------------------------------

PARAMETERIZED = {
    "Parameters": {
        "Id": {"Type": "String"},
        "Lead": {"Type": "String", "NoEcho": True},
        "Triage": {"Type": "String", "Default": "true"},
        "Enabled": {"Type": "String", "Default": "yes"},
    },
    "Conditions": {"On": {"Fn::Equals": [{"Ref": "Enabled"}, "yes"]}},
    "Resources": {
        LOGICAL_ID: {
            "Type": "Custom::SecurityIRMembership",
            "Condition": "On",
            "DeletionPolicy": "Retain",
            "Properties": {
                "ServiceToken": {"Fn::ImportValue": "provider-ServiceToken"},
                "MembershipId": {"Ref": "Id"},
                "IncidentResponseTeam": [
                    {"Name": {"Ref": "Lead"}, "JobTitle": "Lead", "Email": "lead@example.com"},
                    {"Name": "B Person", "JobTitle": "IR", "Email": "b@example.com"},
                ],
                "OptInFeatures": [{"FeatureName": "Triage", "IsEnabled": {"Ref": "Triage"}}],
            },
        }
    },
}


def test_parameters_resolve_and_a_noecho_value_warns_or_fails(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(PARAMETERIZED))
    states = tmp_path / "s.json"
    states.write_text(json.dumps(state()))
    argv = ["check", str(path), "--parameters", f"Id={MID}", "Triage=false"]
    argv += ["--set", "MinResponders=3", "--state-file", str(states)]
    code, out, _ = run(argv)
    assert code == 1  # Triage=false turns Triage off: the parameter was resolved
    assert "FAIL t/Membership: triage-stays-on: OptInFeatures turns Triage off" in out
    assert (
        "WARN t/Membership: min-responders: cannot be evaluated: IncidentResponseTeam: "
        "parameter Lead is NoEcho (its value is not returned)" in out
    )
    code, out, _ = run([*argv[:5], "--set", "MinResponders=3", "--set", "FailOnUnevaluable=true"])
    assert code == 1
    assert "FAIL t/Membership: min-responders: cannot be evaluated" in out


def test_a_false_condition_means_no_resource(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(PARAMETERIZED))
    code, out, _ = run(["check", str(path), "--parameters", "Enabled=no"])
    assert (code, out.strip()) == (0, "no membership resource changes: nothing to check")


def test_an_unknown_membership_id_is_reported_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(PARAMETERIZED))
    code, out, _ = run(["check", str(path), "--parameters", "Triage=false"])
    assert code == 0
    assert (
        "WARN t/Membership: triage-stays-on: cannot be evaluated: the membership could not be "
        "read (its MembershipId is not known here)" in out
    )


def test_yaml_with_short_tags_and_a_custom_resource_sharing_the_token(tmp_path: Path) -> None:
    path = tmp_path / "membership.yaml"
    path.write_text(
        "Resources:\n"
        "  Named:\n"
        "    Type: Custom::SecurityIRMembership\n"
        "    Properties:\n"
        "      ServiceToken: !ImportValue provider-ServiceToken\n"
        f"      MembershipId: {MID}\n"
        "  Generic:\n"
        "    Type: AWS::CloudFormation::CustomResource\n"
        "    Properties:\n"
        "      ServiceToken: !ImportValue provider-ServiceToken\n"
        "      MembershipId: m-generic0001\n"
        "      OnDelete: RemoveOrganizationalUnits\n"
        "  ByArn:\n"
        "    Type: Custom::Other\n"
        "    Properties:\n"
        f"      ServiceToken: {TOKEN}\n"
        "      MembershipId: m-byarn000001\n"
        "      OnDelete: RemoveOrganizationalUnits\n"
        "  Unrelated:\n"
        "    Type: Custom::Other\n"
        "    Properties: {ServiceToken: arn:aws:lambda:us-east-1:123456789012:function:x}\n"
    )
    code, out, _ = run(["check", str(path)])
    assert code == 1
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("FAIL")] == [
        "FAIL membership/Generic"
    ]
    code, out, _ = run(["check", str(path), "--set", f"ServiceTokens={TOKEN}"])
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("FAIL")] == [
        "FAIL membership/ByArn",
        "FAIL membership/Generic",
    ]


def test_parameters_from_a_file_in_either_shape(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(PARAMETERIZED))
    listed = tmp_path / "p1.json"
    listed.write_text(json.dumps([{"ParameterKey": "Enabled", "ParameterValue": "no"}]))
    mapped = tmp_path / "p2.json"
    mapped.write_text(json.dumps({"Parameters": {"Enabled": "no"}}))
    for file in (listed, mapped):
        _, out, _ = run(["check", str(path), "--parameters", f"file://{file}"])
        assert out.strip() == "no membership resource changes: nothing to check"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check"], "name a template"),
        (["check", "t.json", "--set", "MinResponders=many"], "MinResponders must be a whole"),
        (["check", "t.json", "--set", "Nope=1"], "unknown guardrail setting Nope"),
        (["check", "t.json", "--parameters", "novalue"], "'novalue' is not KEY=VALUE"),
        (["check", "missing.json"], "cannot read template missing.json"),
    ],
)
def test_usage_errors_exit_1_with_one_line(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.json").write_text(json.dumps(template(BASE)))
    code, out, err = run(argv)
    assert (code, out) == (1, "")
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_live_state_with_membership_id(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == "triage-turned-off")
    argv = write_case(case, tmp_path)
    argv = [*argv[: argv.index("--state-file")], "--membership-id", MID, "--region", REGION]
    client = boto3.client("security-ir", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_response("get_membership", state(), {"membershipId": MID})
        code, out, _ = run(argv, cli.Clients(unusable().cloudformation, lambda r: client))
        stub.assert_no_pending_responses()
    assert code == 1
    assert f"turns Triage off (on now, GetMembership in {REGION})" in out


def test_a_membership_that_cannot_be_read_is_unevaluable(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == "triage-turned-off")
    argv = write_case(case, tmp_path)
    argv = [*argv[: argv.index("--state-file")], "--membership-id", MID]
    client = boto3.client("security-ir", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_client_error("get_membership", "ResourceNotFoundException", "no", 404)
        code, out, _ = run(argv, cli.Clients(unusable().cloudformation, lambda r: client))
    assert code == 0
    assert f"WARN {STACK}/{LOGICAL_ID}: triage-stays-on: cannot be evaluated: the membership" in out


# -- settings ---------------------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    assert Settings.from_mapping({}) == Settings()
    assert {p.name: p.default for p in PARAMETERS}["MaxOrganizationalUnitsRemoved"] == "5"
    assert len(NAMES) == len(set(NAMES))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"AllowTriageOff": "yes"}, "AllowTriageOff must be true or false"),
        ({"MaxOrganizationalUnitsRemoved": "-2"}, "at least -1"),
        ({"MinResponders": "-1"}, "at least 0"),
        ({"AllowedEmailDomains": "example"}, "AllowedEmailDomains has 1 malformed"),
        ({"ServiceTokens": "not-an-arn"}, "ServiceTokens has 1 malformed"),
    ],
)
def test_bad_settings_are_named(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_mapping(values)


# -- max-ous-removed counts as the function plans --------------------------------------

OU_SETS = st.frozensets(st.sampled_from(OUS))


@settings(max_examples=150, deadline=None)
@given(old=OU_SETS, new=OU_SETS, actual=OU_SETS, limit=st.integers(0, 7))
def test_ous_removed_are_counted_against_the_actual_ous(
    old: frozenset[str], new: frozenset[str], actual: frozenset[str], limit: int
) -> None:
    def declared(ous: frozenset[str]) -> dict[str, Any]:
        return template(resource(properties(OrganizationalUnits=sorted(ous))))  # type: ignore[return-value]

    context = StackContext("", STACK)
    (subject,) = template_subjects(STACK, declared(new), declared(old), context)
    observed = Actual(state_from_api(state(ous=tuple(sorted(actual)))), "state")
    finding = max_ous_removed(subject, observed, Settings(max_ous_removed=limit))
    removed = len((old - new) & actual)
    assert finding.outcome == ("fail" if removed > limit else "pass")
    if removed > limit:
        assert finding.detail.startswith(f"removes {removed} of {len(actual)} OUs")
    verdict = evaluate([subject], {LOGICAL_ID: observed}, Settings(max_ous_removed=limit))
    assert verdict.passed == (removed <= limit)


def test_the_pre_commit_hook_runs_the_installed_command() -> None:
    root = Path(__file__).parent.parent
    (hook,) = yaml.safe_load((root / ".pre-commit-hooks.yaml").read_text())
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    command, subcommand = hook["entry"].split()
    assert (command, subcommand) == ("sir-membership", "check")
    assert command in scripts
    assert hook["language"] == "python"
    assert any(d.startswith("PyYAML") for d in hook["additional_dependencies"])
    assert re.search(hook["files"], "examples/membership.yaml")
