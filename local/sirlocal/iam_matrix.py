"""The least-privilege matrix of the provider function's role: what to play, and its table.

Why: a role is least privilege only if every action it grants is needed,
and "needed" is shown by removing the action and watching the stack
operation that uses it fail, with the reason the README tells users to look
for. The statements come from template.yaml (the role's inline policies and
the ``AWS::IAM::RolePolicy`` resources attached to it), so a statement added
to the template appears in the matrix as "no scenario" until one is written.
Everything here is pure: which scenario each action needs, how a reason is
written without the run's own names, and the Markdown of the result.
:mod:`sirlocal.ministack_matrix` plays the rows on ministack (IAM enforced).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The provider function's role in template.yaml.
ROLE = "FunctionRole"


@dataclass(frozen=True)
class Statement:
    """One action the role is granted: the policy that carries it, its statement, when."""

    policy: str  # the inline policy's name (PolicyName), as IAM lists it on the role
    carrier: str  # "FunctionRole" (its Policies) or the RolePolicy resource's logical id
    sid: str
    action: str
    condition: str  # the template condition the grant depends on ("" = always)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(template: Mapping[str, Any], role: str = ROLE) -> list[Statement]:
    """Every action ``role`` is granted in the template, in template order (pure)."""
    resources: Mapping[str, Any] = template.get("Resources") or {}
    carriers: list[tuple[str, Mapping[str, Any], str]] = [
        (role, policy, "")
        for policy in (resources[role].get("Properties") or {}).get("Policies") or ()
    ]
    for logical_id, resource in resources.items():
        properties = resource.get("Properties") or {}
        attached = properties.get("RoleName") == {"Ref": role} or {"Ref": role} in as_list(
            properties.get("Roles") or []
        )
        if resource.get("Type") in ("AWS::IAM::RolePolicy", "AWS::IAM::Policy") and attached:
            carriers.append((logical_id, properties, str(resource.get("Condition", ""))))
    out = []
    for carrier, policy, condition in carriers:
        document = policy.get("PolicyDocument") or {}
        for statement in as_list(document.get("Statement") or []):
            for action in as_list(statement.get("Action") or []):
                out.append(
                    Statement(
                        str(policy.get("PolicyName")),
                        carrier,
                        str(statement.get("Sid", "")),
                        str(action),
                        condition,
                    )
                )
    return out


@dataclass(frozen=True)
class Play:
    """What removing an action must break: a scenario, and the README reason it ends with.

    ``expect`` is the start of the reason (README, Troubleshooting), a regular
    expression matched at the start of the failed resource's reason.
    """

    scenario: str
    failing: str  # which request of the scenario fails, and its stack status
    expect: str


@dataclass(frozen=True)
class Excluded:
    """An action not removed, and why (one line)."""

    why: str


#: README, Troubleshooting: the reasons a denied table call gives.
TABLE_REASON = (
    r"(idempotency table \S+ is unreachable|"
    r"could not [\w ]+ the change journal in table \S+ \(AccessDeniedException\))"
)
CREATE = "create the example stack"
PLAYS: Mapping[str, Play | Excluded] = {
    "dynamodb:GetItem": Play(CREATE, "the Create: CREATE_FAILED", TABLE_REASON),
    "dynamodb:PutItem": Play(CREATE, "the Create: CREATE_FAILED", TABLE_REASON),
    "dynamodb:UpdateItem": Play(CREATE, "the Create: CREATE_FAILED", TABLE_REASON),
    "dynamodb:DeleteItem": Play(
        "create the example stack, then update it (a lease wait of at most ~3 s and no "
        "continuation: SIR_TIMING_WORK_RESERVE, SIR_TIMING_CONTINUE_MIN)",
        "the Create succeeds but keeps its lease; the Update: UPDATE_FAILED",
        r"Membership \S+ is being changed by another request \(stack \S+ resource \w+\)",
    ),
    "cloudformation:DescribeStacks": Play(
        "create the example stack with DeletionPolicy: Delete, then delete the stack (the "
        "Delete of a resource whose latest journal entry is its Create)",
        "the Delete: DELETE_FAILED",
        r"Could not read the stack's status with cloudformation:DescribeStacks \(",
    ),
    # The dispatcher's (issue 18): no scenario written yet. The rows come with the
    # engine's end-to-end tests, which know the reasons a denied start or stop gives.
    "states:StartExecution": Excluded("no scenario yet: the engine's rows (issue 18)"),
    "states:DescribeExecution": Excluded("no scenario yet: the engine's rows (issue 18)"),
    "states:StopExecution": Excluded("no scenario yet: the engine's rows (issue 18)"),
    "logs:CreateLogStream": Excluded(
        "not removed: Lambda does not fail when the function's logs cannot be written"
    ),
    "logs:PutLogEvents": Excluded(
        "not removed: Lambda does not fail when the function's logs cannot be written"
    ),
    "kms:Decrypt": Excluded("not deployed: granted only with KmsKeyArn, deployed here without"),
    "kms:Encrypt": Excluded("not deployed: granted only with KmsKeyArn, deployed here without"),
    "kms:GenerateDataKey": Excluded(
        "not deployed: granted only with KmsKeyArn, deployed here without"
    ),
}
#: security-ir is served by the project's emulator, which enforces no IAM.
SECURITY_IR = "security-ir:"


def play_for(statement: Statement) -> Play | Excluded | None:
    """The action's play, its exclusion, or None (security-ir, or nothing written yet)."""
    return PLAYS.get(statement.action)


@dataclass(frozen=True)
class Row:
    """One line of the matrix as observed."""

    statement: Statement
    scenario: str
    observed: str  # stack status and the normalised reason, or why not removed
    held: bool  # the observation is what the play expects


def masked(reason: str, names: Mapping[str, str]) -> str:
    """``reason`` without this run's own names: each ``names`` key becomes its value,
    then uuids become ``<uuid>`` (pure; table names and request ids change every run)."""
    for value, placeholder in names.items():
        reason = reason.replace(value, placeholder)
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", reason)


def holds(play: Play, status: str, reason: str) -> bool:
    """Whether a row's observation is its play's failure with the README's reason."""
    wanted = play.failing.rsplit(": ", 1)[-1]
    return status == wanted and re.match(play.expect, reason) is not None


def security_ir_rows(statements: Iterable[Statement], called: Mapping[str, str]) -> list[Row]:
    """The security-ir rows: each granted action against the scenario that called it."""
    rows = []
    for statement in statements:
        operation = statement.action.removeprefix(SECURITY_IR)
        scenario = called.get(operation)
        rows.append(
            Row(
                statement,
                scenario or "(none)",
                "not enforced (the emulator serves security-ir): "
                + ("called by this scenario" if scenario else "NEVER CALLED by the suite"),
                scenario is not None,
            )
        )
    return rows


def ungranted(statements: Iterable[Statement], called: Iterable[str]) -> list[str]:
    """security-ir operations the suite called that the role does not grant (must be none)."""
    granted = {s.action.removeprefix(SECURITY_IR) for s in statements}
    return sorted(set(called) - granted)


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split()) or "-"


def render(rows: Sequence[Row], ungranted_calls: Sequence[str]) -> str:
    """The matrix as Markdown (the generated section of docs/local.md)."""
    lines = [
        "| Policy (statement) | Action removed | Scenario | Observed on ministack (AUTH=true) |",
        "|---|---|---|---|",
    ]
    for row in rows:
        s = row.statement
        where = f"`{s.policy}` ({s.sid})" if s.sid else f"`{s.policy}`"
        mark = "" if row.held else " **(not as expected)**"
        lines.append(
            f"| {where} | `{s.action}` | {_cell(row.scenario)} | {_cell(row.observed)}{mark} |"
        )
    lines += [
        "",
        "security-ir operations called by the suite and not granted: "
        + (", ".join(f"`{c}`" for c in ungranted_calls) if ungranted_calls else "none")
        + ".",
    ]
    return "\n".join(lines)


BEGIN = (
    "<!-- BEGIN GENERATED: iam-matrix (played on ministack by `make iam-matrix`; do not edit) -->"
)
END = "<!-- END GENERATED: iam-matrix -->"


def replace_section(text: str, body: str) -> str:
    """``text`` with the marked matrix section holding ``body``; ValueError if unmarked."""
    pattern = re.compile(re.escape(BEGIN) + r"\n.*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"no section marked {BEGIN!r} ... {END!r}")
    return pattern.sub(lambda _: f"{BEGIN}\n{body}\n{END}", text, count=1)


def section(text: str) -> str:
    """The body of the marked matrix section of ``text`` ("" when unmarked)."""
    found = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, re.S)
    return found.group(1) if found else ""
