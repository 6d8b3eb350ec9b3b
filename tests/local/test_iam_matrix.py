"""The least-privilege matrix's pure parts: statements from the template, verdicts, the table.

Why: the e2e test plays the matrix on ministack; these check, without it,
that every action template.yaml grants the role has a play, an exclusion or
the security-ir check, and that the section is written and read back whole.
"""

from __future__ import annotations

import copy

import pytest
from sirlocal import iam_matrix
from sirlocal.iam_matrix import Excluded, NotEnforced, Play, Row, Statement, Unused
from sirlocal.services import load_template

TEMPLATE = load_template()


def test_every_granted_action_has_a_play_an_exclusion_or_the_security_ir_check() -> None:
    statements = iam_matrix.role_statements(TEMPLATE)
    keys = {s.key for s in statements}
    assert {s.role for s in statements} == set(iam_matrix.ROLES)  # all four roles
    assert (iam_matrix.ROLE, "kms:Decrypt") in keys  # the RolePolicy resource, not only Policies
    assert (iam_matrix.WORK_ROLE, "kms:Decrypt") in keys
    assert (iam_matrix.ROLE, "states:StartExecution") in keys
    assert (iam_matrix.MACHINE_ROLE, "lambda:InvokeFunction") in keys
    for s in statements:
        play = iam_matrix.play_for(s)
        assert s.action.startswith("security-ir:") or isinstance(
            play, Play | NotEnforced | Unused | Excluded
        ), s
    # security-ir is the Work task's only (the dispatcher makes no security-ir call).
    assert {s.role for s in statements if s.action.startswith("security-ir:")} == {
        iam_matrix.WORK_ROLE
    }
    # The self-invoke is gone: no role may invoke a function but the state machine's.
    assert [s.key for s in statements if s.action == "lambda:InvokeFunction"] == [
        (iam_matrix.MACHINE_ROLE, "lambda:InvokeFunction")
    ]


def test_each_play_names_a_granted_action() -> None:
    """A play left behind by a statement removed from the template is found."""
    keys = {s.key for s in iam_matrix.role_statements(TEMPLATE)}
    assert set(iam_matrix.PLAYS) <= keys


def test_a_statement_added_to_the_template_has_no_play_until_one_is_written() -> None:
    template = copy.deepcopy(TEMPLATE)
    policies = template["Resources"]["FunctionRole"]["Properties"]["Policies"]
    policies.append(
        {
            "PolicyName": "extra",
            "PolicyDocument": {"Statement": [{"Sid": "X", "Action": "sqs:SendMessage"}]},
        }
    )
    (added,) = [s for s in iam_matrix.role_statements(template) if s.policy == "extra"]
    assert added == Statement("extra", "FunctionRole", "X", "sqs:SendMessage", "", "FunctionRole")
    assert iam_matrix.play_for(added) is None


@pytest.mark.parametrize(
    ("status", "reason", "held"),
    [
        (
            "DELETE_FAILED",
            "Could not read the stack's status with cloudformation:DescribeStacks (",
            True,
        ),
        (
            "UPDATE_FAILED",
            "Could not read the stack's status with cloudformation:DescribeStacks (",
            False,
        ),
        ("DELETE_FAILED", "Internal error (KeyError)", False),
    ],
)
def test_a_row_holds_only_with_the_expected_status_and_reason(
    status: str, reason: str, held: bool
) -> None:
    play = iam_matrix.PLAYS[(iam_matrix.WORK_ROLE, "cloudformation:DescribeStacks")]
    assert isinstance(play, Play)
    assert iam_matrix.holds(play, status, reason) is held


def test_reasons_are_written_without_the_runs_own_names() -> None:
    reason = (
        "table sir-IdempotencyTable-ABC, stack arn:x:stack/s/0f8e3c1a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
        ", execution " + "ab" * 32 + "-2"
    )
    assert iam_matrix.masked(reason, {"sir-IdempotencyTable-ABC": "T"}) == (
        "table T, stack arn:x:stack/s/<uuid>, execution <execution>"
    )


def test_security_ir_rows_name_what_was_never_called_and_what_was_not_granted() -> None:
    granted = [Statement("p", "FunctionRole", "S", f"security-ir:{op}", "") for op in ("A", "B")]
    rows = iam_matrix.security_ir_rows(granted, {"A": "create"})
    assert [(r.scenario, r.held) for r in rows] == [("create", True), ("(none)", False)]
    assert "NEVER CALLED" in rows[1].observed
    assert iam_matrix.ungranted(granted, ["A", "C"]) == ["C"]


def test_the_section_is_written_and_read_back_whole() -> None:
    row = Row(Statement("p", "FunctionRole", "S", "x:Y", ""), "play | it", "FAILED: r", True)
    unused = Row(
        Statement("p", "WorkFunctionRole", "S", "x:Z", "", "WorkFunctionRole"),
        "c",
        "ok",
        True,
        True,
    )
    body = iam_matrix.render([row, unused], [])
    assert "play \\| it" in body
    assert "| `WorkFunctionRole` | `p` (S) | `x:Z` | c | ok **(unused grant)** |" in body
    assert body.endswith("to drop from template.yaml): `WorkFunctionRole` `x:Z`.")
    document = f"# Doc\n\n{iam_matrix.BEGIN}\nold\n{iam_matrix.END}\n\nafter\n"
    written = iam_matrix.replace_section(document, body)
    assert iam_matrix.section(written) == body
    assert written.endswith(f"{iam_matrix.END}\n\nafter\n")
    with pytest.raises(ValueError, match="no section"):
        iam_matrix.replace_section("# Doc\n", body)
