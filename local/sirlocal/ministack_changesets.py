"""``sir-membership plan`` against ministack's change sets, one case per change-set fixture.

Why: the plan CLI is tested on JSON fixtures written by hand after AWS's
``DescribeChangeSet``; here each fixture's kind of change (add, modify, a
change to ServiceTimeout only, replacement, removal, invalid properties) is
made on a real engine: the change set is created on ministack, ``plan
--change-set-name`` reads it, the change set is executed, and the
UpdateMembership calls the function made (the emulator records them) must
equal the calls the plan predicted. Fixtures a case cannot reproduce are in
``NOT_PLAYED`` with the reason.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sirlocal import stack_ops
from sirlocal.fixtures import FOREIGN, NAMES, A, B, ous, seed
from sirlocal.ministack import ACCOUNT_ID, LocalAWS
from sirlocal.ministack_demo import EXAMPLE, SEED, example_parameters

Edit = Callable[[str], str]


def _replace(old: str, new: str) -> Edit:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new)

    return edit


def _both(*edits: Edit) -> Edit:
    def edit(text: str) -> str:
        for one in edits:
            text = one(text)
        return text

    return edit


#: Another resource beside the membership (the fixtures' SNS topic, SQS queue).
WITH_TOPIC = _replace("Resources:\n", "Resources:\n  AlertsTopic:\n    Type: AWS::SNS::Topic\n")
#: The membership resource removed: only the topic is left.
WITHOUT_MEMBERSHIP = _both(
    _replace(
        "Resources:\n  Membership:",
        "Resources:\n  AlertsTopic:\n    Type: AWS::SNS::Topic\n  Gone:",
    ),
    lambda text: text[: text.index("\nOutputs:")] + "\n",
)
#: As the fixtures' replacement (PolicyAction ReplaceAndDelete) and removed resource (Delete):
#: ministack's change sets carry no PolicyAction, so a retained one would be predicted a Delete.
REMOVES_OUS = _both(
    _replace("DeletionPolicy: RetainExceptOnCreate", "DeletionPolicy: Delete"),
    _replace("UpdateReplacePolicy: Retain", "UpdateReplacePolicy: Delete"),
    _replace("OnDelete: Retain", "OnDelete: RemoveOrganizationalUnits"),
)
MISSPELT = _replace("      OrganizationalUnits: !If", "      OrganisationalUnits: !If")
SHORTER_TIMEOUT = _replace("ServiceTimeout: 3600", "ServiceTimeout: 3000")


@dataclass(frozen=True)
class Change:
    """One change set of examples/membership.yaml (an edit of its text, its parameters)."""

    edit: Edit = field(default=lambda text: text)
    name: str = NAMES[0]
    ou_ids: tuple[str, ...] = tuple(ous(1, 8))
    membership: str = A

    def body(self) -> str:
        """The template's text."""
        return self.edit(EXAMPLE.read_text(encoding="utf-8"))

    def parameters(self) -> dict[str, str]:
        """The stack's parameters."""
        return {**example_parameters(self.name, self.ou_ids), "MembershipId": self.membership}


@dataclass(frozen=True)
class Case:
    """A fixture's kind of change: the changes before it, then the one planned and executed."""

    fixture: str
    what: str
    before: tuple[Change, ...]
    planned: Change


CASES: tuple[Case, ...] = (
    Case("add", "a new stack: the membership and a topic added", (), Change(WITH_TOPIC)),
    Case(
        "modify",
        "12 OUs added, 7 removed, a rename",
        (Change(),),
        Change(name=NAMES[1], ou_ids=tuple(ous(8, 20))),
    ),
    Case("no-change", "only ServiceTimeout changed", (Change(),), Change(SHORTER_TIMEOUT)),
    Case(
        "replacement",
        "a new MembershipId (and OUs): the resource is replaced",
        (Change(REMOVES_OUS),),
        Change(REMOVES_OUS, ou_ids=tuple(ous(3, 9)), membership=B),
    ),
    Case(
        "remove",
        "the membership resource removed (DeletionPolicy: Delete, OnDelete: "
        "RemoveOrganizationalUnits)",
        (Change(REMOVES_OUS),),
        Change(WITHOUT_MEMBERSHIP),
    ),
    Case(
        "invalid",
        "a misspelt property (OrganisationalUnits)",
        (Change(),),
        Change(MISSPELT, ou_ids=tuple(ous(1, 9))),
    ),
)
NOT_PLAYED: Mapping[str, str] = {
    "paginated": "ministack's DescribeChangeSet returns every change in one page (no NextToken)",
    "unresolved": "the fixture's OU comes from an AWS::Organizations::OrganizationalUnit "
    "created in the same change set, a type ministack 1.5.33 does not provision",
}
SEEDS = (SEED, {**seed(B, ou_ids=[*ous(1, 3), FOREIGN[1]]), "accountId": ACCOUNT_ID})


@dataclass(frozen=True)
class Compared:
    """One case played: the plan's exit code, the calls predicted and made, the stack."""

    case: Case
    plan_code: int
    predicted: tuple[dict[str, Any], ...]
    made: tuple[dict[str, Any], ...]
    stack_status: str

    @property
    def equal(self) -> bool:
        """The calls made are the calls predicted, in order."""
        return self.predicted == self.made


def plan_json(aws: LocalAWS, stack: str, change_set: str) -> tuple[int, dict[str, Any]]:
    """``sir-membership plan --change-set-name ... --format json`` against ministack."""
    from sir_membership import cli  # noqa: PLC0415 - the package, not a double

    argv = ["plan", "--change-set-name", change_set, "--stack-name", stack]
    argv += ["--format", "json", "--show-sensitive"]  # compared in memory, never printed
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, clients=aws.plan_clients(), stdout=out, stderr=err)
    text = out.getvalue()
    return code, (json.loads(text) if text.strip() else {"error": err.getvalue()[-300:]})


def _change_set(aws: LocalAWS, stack: str, name: str, change: Change) -> dict[str, Any]:
    return stack_ops.create_change_set(
        aws.client("cloudformation"),
        stack_name=stack,
        change_set_name=name,
        template_body=change.body(),
        values=change.parameters(),
    )


def play(aws: LocalAWS, case: Case) -> Compared:
    """The changes before, then the planned one: planned, executed, compared."""
    cfn = aws.client("cloudformation")
    stack = f"security-ir-plan-{case.fixture}"
    aws.emulator.reset()
    aws.emulator.seed_many(SEEDS)
    for number, change in enumerate(case.before):
        stack_ops.execute_change_set(cfn, _change_set(aws, stack, f"before-{number}", change))
    described = _change_set(aws, stack, "planned", case.planned)
    code, printed = plan_json(aws, stack, "planned")
    seen = len(aws.emulator.calls())
    outcome = stack_ops.execute_change_set(cfn, described)
    made = [c.request for c in aws.emulator.calls()[seen:] if c.operation == "UpdateMembership"]
    return Compared(
        case,
        code,
        tuple(printed.get("updateMembershipRequests", [])),
        tuple(made),
        outcome.stack_status,
    )


def play_all(aws: LocalAWS, cases: Sequence[Case] = CASES) -> list[Compared]:
    """Every case, in order."""
    return [play(aws, case) for case in cases]
