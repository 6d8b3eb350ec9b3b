"""The least-privilege matrix of the provider's four roles: what to play, and its table.

Why: a role is least privilege only if every action it grants is needed,
and "needed" is shown by removing the action and watching the stack
operation that uses it fail, with the reason the README tells users to look
for. The statements come from template.yaml (each role's inline policies and
the ``AWS::IAM::RolePolicy`` resources attached to it), for the dispatcher's
role (the ServiceToken's), the Work and Answer tasks' roles and the state
machine's, so a statement added to the template appears in the matrix as
"no scenario" until one is written. Everything here is pure: which scenario
each (role, action) needs, how a reason is written without the run's own
names, and the Markdown of the result. :mod:`sirlocal.ministack_matrix`
plays the rows on ministack (IAM enforced).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The dispatcher's role (the ServiceToken function's) in template.yaml.
ROLE = "FunctionRole"
WORK_ROLE = "WorkFunctionRole"
ANSWER_ROLE = "AnswerFunctionRole"
MACHINE_ROLE = "StateMachineRole"
#: Every role the provider stack creates, in the matrix's order.
ROLES = (ROLE, WORK_ROLE, ANSWER_ROLE, MACHINE_ROLE)
#: The function each Lambda role is the execution role of (for its test-only settings).
FUNCTIONS = {ROLE: "MembershipFunction", WORK_ROLE: "WorkFunction", ANSWER_ROLE: "AnswerFunction"}


@dataclass(frozen=True)
class Statement:
    """One action a role is granted: the policy that carries it, its statement, when."""

    policy: str  # the inline policy's name (PolicyName), as IAM lists it on the role
    carrier: str  # the role (its Policies) or the RolePolicy resource's logical id
    sid: str
    action: str
    condition: str  # the template condition the grant depends on ("" = always)
    role: str = ROLE  # the role's logical id

    @property
    def key(self) -> tuple[str, str]:
        """(role, action): the row's identity (one action may be granted to several roles)."""
        return (self.role, self.action)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(template: Mapping[str, Any], role: str | None = None) -> list[Statement]:
    """Every action ``role`` (default: each of :data:`ROLES` in turn) is granted (pure)."""
    resources: Mapping[str, Any] = template.get("Resources") or {}
    if role is None:
        return [s for r in ROLES if r in resources for s in role_statements(template, r)]
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
                        role,
                    )
                )
    return out


@dataclass(frozen=True)
class Play:
    """What removing an action must break: a scenario, and the README reason it ends with.

    ``expect`` is the start of the reason (README, Troubleshooting;
    docs/troubleshooting.md), a regular expression matched at the start of
    the failed resource's reason. ``failing`` ends with the status that must
    be seen (a resource event's, or an execution's for a stop).
    """

    scenario: str
    failing: str  # which request of the scenario fails, and its status
    expect: str


@dataclass(frozen=True)
class NotEnforced:
    """An action ministack does not check: removed, the scenario still succeeds (shown)."""

    scenario: str
    why: str


@dataclass(frozen=True)
class Unused:
    """An action no code of the role's function calls: removed, the scenario still succeeds.

    A finding, not a verdict: the grant is to be dropped from template.yaml
    or given the scenario that needs it.
    """

    scenario: str
    why: str


@dataclass(frozen=True)
class Excluded:
    """An action not removed, and why (one line)."""

    why: str


#: The README's reasons a denied table call gives (the dispatcher's request record,
#: the Work task's journal and request record).
TABLE_REASON = r"(idempotency table \S+ is unreachable|could not [\w ]+ in table \S+ \(AccessDeniedException\))"
#: A Work step that raised: the Answer task's FAILED (AnswerFailure).
WORK_FAILED = r"The change's Work step failed \([\w.]+\)"
#: CloudFormation's own reason when no answer came (ministack's wording).
NO_ANSWER = r"Custom resource 'Membership' timed out after \d+s waiting for ResponseURL callback"
CREATE = "create the example stack"
CREATE_SHORT = (
    "create the example stack with ServiceTimeout 10 (the Answer task's retries shortened: "
    "ministack's SFN_WAIT_SCALE 0.02)"
)
LOGS = Excluded("not removed: Lambda does not fail when the function's logs cannot be written")
KEY = Excluded("not deployed: granted only with KmsKeyArn, deployed here without")
PLAYS: Mapping[tuple[str, str], Play | NotEnforced | Unused | Excluded] = {
    # --- the dispatcher (the ServiceToken): the request record, the fence, the execution
    (ROLE, "dynamodb:GetItem"): Excluded(
        "read only for a request the previous release began (an upgrade in flight: the "
        "resource's journal entry) or when two deliveries of one request race: ministack sends "
        "each request once, first seen by this release"
    ),
    (ROLE, "dynamodb:UpdateItem"): Play(CREATE, "the Create: CREATE_FAILED", TABLE_REASON),
    (ROLE, "states:StartExecution"): Play(
        CREATE,
        "the Create: CREATE_FAILED",
        r"Could not start the change's execution \(AccessDeniedException\): allow "
        r"states:StartExecution",
    ),
    (ROLE, "states:StopExecution"): Play(
        "update the example stack with ServiceTimeout 12 while another stack holds the "
        "membership's lease (the Update waits in a Wait state that ministack stretches: "
        "SFN_WAIT_SCALE 20); CloudFormation gives up and rolls back",
        "the superseded Update's execution once the rollback settled: RUNNING",
        r"not stopped by the rollback's dispatcher",
    ),
    (ROLE, "logs:CreateLogStream"): LOGS,
    (ROLE, "logs:PutLogEvents"): LOGS,
    (ROLE, "kms:Decrypt"): KEY,
    (ROLE, "kms:Encrypt"): KEY,
    (ROLE, "kms:GenerateDataKey"): KEY,
    # --- the Work task: the membership's calls, the journal, the stack's status
    (WORK_ROLE, "dynamodb:GetItem"): Play(CREATE, "the Create: CREATE_FAILED", WORK_FAILED),
    (WORK_ROLE, "dynamodb:PutItem"): Play(CREATE, "the Create: CREATE_FAILED", TABLE_REASON),
    (WORK_ROLE, "dynamodb:UpdateItem"): Play(CREATE, "the Create: CREATE_FAILED", WORK_FAILED),
    (WORK_ROLE, "dynamodb:DeleteItem"): Play(
        "create the example stack, then update it (no Wait state for a busy membership: "
        "SIR_TIMING_CONTINUE_MIN on the Work function)",
        "the Create succeeds but keeps its lease; the Update: UPDATE_FAILED",
        r"Membership \S+ is being changed by another request \(stack \S+ resource \w+\)",
    ),
    (WORK_ROLE, "cloudformation:DescribeStacks"): Play(
        "create the example stack with DeletionPolicy: Delete, then delete the stack (the "
        "Delete of a resource whose latest journal entry is its Create)",
        "the Delete: DELETE_FAILED",
        r"Could not read the stack's status with cloudformation:DescribeStacks \(",
    ),
    (WORK_ROLE, "logs:CreateLogStream"): LOGS,
    (WORK_ROLE, "logs:PutLogEvents"): LOGS,
    (WORK_ROLE, "kms:Decrypt"): KEY,
    (WORK_ROLE, "kms:Encrypt"): KEY,
    (WORK_ROLE, "kms:GenerateDataKey"): KEY,
    # --- the Answer task and the safety net: the request's record and its one answer
    (ANSWER_ROLE, "dynamodb:GetItem"): Play(
        CREATE_SHORT, "the Create: CREATE_FAILED (no answer at all)", NO_ANSWER
    ),
    (ANSWER_ROLE, "dynamodb:UpdateItem"): Play(
        CREATE_SHORT, "the Create: CREATE_FAILED (no answer at all)", NO_ANSWER
    ),
    (ANSWER_ROLE, "logs:CreateLogStream"): LOGS,
    (ANSWER_ROLE, "logs:PutLogEvents"): LOGS,
    (ANSWER_ROLE, "kms:Decrypt"): KEY,
    (ANSWER_ROLE, "kms:Encrypt"): KEY,
    (ANSWER_ROLE, "kms:GenerateDataKey"): KEY,
    # --- the state machine: its two tasks
    (MACHINE_ROLE, "lambda:InvokeFunction"): NotEnforced(
        CREATE,
        "not enforced by ministack 1.5.33: its Step Functions invokes a task's function "
        "without checking the state machine's role",
    ),
}
#: security-ir is served by the project's emulator, which enforces no IAM.
SECURITY_IR = "security-ir:"


def play_for(statement: Statement) -> Play | NotEnforced | Unused | Excluded | None:
    """The action's play, its exclusion, or None (security-ir, or nothing written yet)."""
    return PLAYS.get(statement.key)


@dataclass(frozen=True)
class Row:
    """One line of the matrix as observed."""

    statement: Statement
    scenario: str
    observed: str  # stack status and the normalised reason, or why not removed
    held: bool  # the observation is what the play expects
    #: The grant is not needed by any code (an :class:`Unused` play that held).
    unused: bool = False


def masked(reason: str, names: Mapping[str, str]) -> str:
    """``reason`` without this run's own names: each ``names`` key becomes its value,
    then uuids become ``<uuid>``, execution names ``<execution>`` (pure; table names,
    request ids and execution names change every run)."""
    for value, placeholder in names.items():
        reason = reason.replace(value, placeholder)
    reason = re.sub(r"\b[0-9a-f]{64}(-\d+)?\b", "<execution>", reason)
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", reason)


def holds(play: Play, status: str, reason: str) -> bool:
    """Whether a row's observation is its play's failure with the README's reason."""
    wanted = play.failing.rsplit(": ", 1)[-1].split(" (", 1)[0]
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
        "| Role | Policy (statement) | Action removed | Scenario "
        "| Observed on ministack (AUTH=true) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        s = row.statement
        where = f"`{s.policy}` ({s.sid})" if s.sid else f"`{s.policy}`"
        mark = "" if row.held else " **(not as expected)**"
        if row.unused:
            mark = " **(unused grant)**"
        lines.append(
            f"| `{s.role}` | {where} | `{s.action}` | {_cell(row.scenario)} "
            f"| {_cell(row.observed)}{mark} |"
        )
    unused = [f"`{r.statement.role}` `{r.statement.action}`" for r in rows if r.unused]
    lines += [
        "",
        "security-ir operations called by the suite and not granted: "
        + (", ".join(f"`{c}`" for c in ungranted_calls) if ungranted_calls else "none")
        + ".",
        "",
        "Granted and called by no code (to drop from template.yaml): "
        + (", ".join(unused) if unused else "none")
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
