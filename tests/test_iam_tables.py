"""The IAM action tables of docs/security.md and the README are generated from template.yaml.

scripts/iam_tables.py renders them; these tests fail while a document
differs from what the template says, and show that a statement added to the
template appears in the tables without touching the script.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import iam_tables  # noqa: E402


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return iam_tables.load_template()


def test_the_documents_hold_the_generated_tables(template: dict[str, Any]) -> None:
    for relative in iam_tables.SECTIONS:
        path = ROOT / relative
        assert iam_tables.expected(path, template) == path.read_text(encoding="utf-8"), (
            f"{relative} is out of date: run python scripts/iam_tables.py --write"
        )


def test_every_action_of_every_role_is_listed_with_its_reason(template: dict[str, Any]) -> None:
    grants = iam_tables.grants(template)
    actions = {g.action for g in grants}
    assert {"security-ir:UpdateMembership", "lambda:InvokeFunction", "kms:Decrypt"} <= actions
    assert all(g.why != iam_tables.NO_REASON for g in grants), [
        g.action for g in grants if g.why == iam_tables.NO_REASON
    ]
    tables = iam_tables.security_tables(template)
    for g in grants:
        assert f"| `{g.action}` |" in tables
    key = [g for g in grants if g.action.startswith("kms:")]
    assert {g.when for g in key} == {"only when `KmsKeyArn` is set"}
    assert all("kms:ViaService" in g.condition for g in key)
    assert "Permissions boundary: the `PermissionsBoundaryArn` policy, when" in tables
    # A role per function and the state machine's, each with its own table.
    roles = ["FunctionRole", "WorkFunctionRole", "AnswerFunctionRole", "StateMachineRole"]
    assert [g.role for g in grants if g.action == "logs:PutLogEvents"] == roles[:3]
    for role in roles:
        assert f"### `{role}`: " in tables
    assert tables.count("Permissions boundary: the `PermissionsBoundaryArn` policy") == 4
    # Each role that reads or writes the table gets the key, only with KmsKeyArn.
    assert sorted(g.role for g in key if g.action == "kms:Decrypt") == sorted(roles[:3])


def test_a_ref_reads_as_a_parameters_value_or_the_resources_arn(template: dict[str, Any]) -> None:
    """The dispatcher's StartExecution names the state machine by Ref: its ARN, not a parameter."""
    (start,) = [g for g in iam_tables.grants(template) if g.action == "states:StartExecution"]
    assert start.resource == "`MembershipStateMachine` (its ARN)"
    resources = template["Resources"]
    assert iam_tables.render_value({"Ref": "KmsKeyArn"}, resources) == (
        "the `KmsKeyArn` parameter's value"
    )
    assert iam_tables.render_value({"Ref": "IdempotencyTable"}, resources) == (
        "`IdempotencyTable` (its Ref)"
    )


def test_a_statement_added_to_the_template_appears_in_both_tables(
    template: dict[str, Any],
) -> None:
    changed = copy.deepcopy(template)
    role = changed["Resources"]["FunctionRole"]["Properties"]
    role["Policies"].append(
        {
            "PolicyName": "read-stack",
            "PolicyDocument": {
                "Statement": [
                    {
                        "Sid": "ReadOwnStacks",
                        "Effect": "Allow",
                        "Action": "cloudformation:ListStacks",
                        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:cloudformation:*"},
                    }
                ]
            },
        }
    )
    changed["Resources"]["AuditRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {"Description": "another role"},
    }
    changed["Resources"]["AuditPolicy"] = {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "Roles": [{"Ref": "AuditRole"}],
            "PolicyDocument": {
                "Statement": [{"Effect": "Allow", "Action": ["logs:GetLogEvents"], "Resource": "*"}]
            },
        },
    }
    before = len(iam_tables.grants(template))
    grants = iam_tables.grants(changed)
    assert len(grants) == before + 2
    added = [g for g in grants if g.action == "cloudformation:ListStacks"]
    assert [g.why for g in added] == [iam_tables.NO_REASON]
    security = iam_tables.security_tables(changed)
    assert "| `cloudformation:ListStacks` |" in security
    assert "### `AuditRole`: another role" in security
    assert "Permissions boundary: none." in security
    assert "`logs:GetLogEvents`" in iam_tables.readme_table(changed)
    # A document not regenerated since then differs from what the template says.
    for relative, (name, render) in iam_tables.SECTIONS.items():
        text = (ROOT / relative).read_text(encoding="utf-8")
        assert iam_tables.replace_section(text, name, render(changed)) != text


def test_an_unmarked_document_is_an_error() -> None:
    with pytest.raises(ValueError, match="role-actions"):
        iam_tables.replace_section("no markers here", "role-actions", "x")


def test_the_command_checks_and_says_how_to_fix() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "iam_tables.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
