"""The least-privilege matrix, played on ministack with IAM enforced, and written to docs/local.md.

Why: the role's statements are the product's promise of least privilege.
For each action ministack enforces (DynamoDB, CloudFormation, Lambda), the
action is removed from the role on the running ministack, the scenario that
needs it is played through change sets, and the failing request's stack
event must carry the README's one-line reason; the action is then put back.
security-ir is served by the project's emulator, which enforces nothing:
those actions are checked against the calls the emulator recorded (each
granted action called by a scenario, each call granted). Rows are pure data
in :mod:`sirlocal.iam_matrix`; this module is the imperative shell.

    python -m sirlocal.ministack_matrix --write   # play, rewrite the docs/local.md section
    python -m sirlocal.ministack_matrix --check   # play, exit 1 if the section differs

The scenarios that wait on a lease shorten the function's time reserves with
the test-only ``SIR_TIMING_*`` variables (docs/development.md), set on the
deployed function for the row only and restored after it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sirlocal import iam_matrix, stack_ops
from sirlocal.fixtures import NAMES, A, ous
from sirlocal.iam_matrix import Play, Row, Statement
from sirlocal.ministack import ACCOUNT_ID, REGION, REPO_ROOT, LocalAWS, local_aws
from sirlocal.ministack_demo import EXAMPLE, PROVIDER_PARAMETERS, SEED, example_parameters
from sirlocal.ministack_deploy import Provider, deploy_provider

DOC = REPO_ROOT / "docs" / "local.md"
BUILD_DIR = REPO_ROOT / ".aws-sam" / "ministack-matrix"
LOGICAL_ID = "Membership"
#: The function's Timeout in template.yaml; a lease wait is at most Timeout - this reserve.
WAIT_AT_MOST = {"SIR_TIMING_WORK_RESERVE": "297"}
#: ... and no continuation: a request that cannot take the lease fails at once.
NO_CONTINUATION = {**WAIT_AT_MOST, "SIR_TIMING_CONTINUE_MIN": "100000"}
#: How long the other request's lease lasts in the continuation scenario.
OTHER_LEASE_SECONDS = 5.0
OTHER_HOLDER_STACK = "security-ir-other-operation"


@dataclass(frozen=True)
class Observed:
    """The failing request's resource event, and the stack's status after the scenario."""

    event_status: str
    reason: str
    stack_status: str
    note: str = ""  # what happened after the grant was put back (a control), if played


class Context:
    """ministack, the deployed provider, and the calls the emulator recorded so far."""

    def __init__(self, aws: LocalAWS, provider: Provider) -> None:
        self.aws, self.provider = aws, provider
        self.cfn = aws.client("cloudformation")
        self.table = provider.outputs["IdempotencyTableName"]
        self.called: dict[str, str] = {}  # security-ir operation -> first scenario calling it

    @property
    def role(self) -> str:
        """The function role's name (its physical id)."""
        resource = self.cfn.describe_stack_resource(
            StackName=self.provider.stack_name, LogicalResourceId=iam_matrix.ROLE
        )
        return str(resource["StackResourceDetail"]["PhysicalResourceId"])

    def fresh(self) -> None:
        """The demo's membership seeded afresh, no fault armed, no lease on it."""
        self.aws.emulator.reset()
        self.aws.emulator.seed(SEED)
        self.aws.client("dynamodb").delete_item(
            TableName=self.table, Key={"id": {"S": f"lease#{A}"}}
        )

    def record_calls(self, scenario: str) -> None:
        """Remember which security-ir operations ``scenario`` called."""
        for call in self.aws.emulator.calls():
            self.called.setdefault(call.operation, scenario)

    def names(self) -> dict[str, str]:
        """This run's own names, as the matrix writes them."""
        return {self.table: "T", ACCOUNT_ID: "<account>"}


# --------------------------------------------------------------------------- the role


@contextlib.contextmanager
def without(ctx: Context, statement: Statement) -> Iterator[None]:
    """The role without ``statement.action`` (its policy rewritten), put back on exit."""
    iam, role = ctx.aws.client("iam"), ctx.role
    granted = iam.get_role_policy(RoleName=role, PolicyName=statement.policy)["PolicyDocument"]
    document = granted if isinstance(granted, dict) else json.loads(granted)
    listed = iam_matrix.as_list(document["Statement"])
    if not any(statement.action in iam_matrix.as_list(s["Action"]) for s in listed):
        raise RuntimeError(f"{statement.action} is not in {statement.policy} on ministack")
    statements = []
    for item in listed:
        actions = [a for a in iam_matrix.as_list(item["Action"]) if a != statement.action]
        if actions:
            statements.append({**item, "Action": actions})
    if statements:
        narrowed = json.dumps({**document, "Statement": statements})
        iam.put_role_policy(RoleName=role, PolicyName=statement.policy, PolicyDocument=narrowed)
    else:
        iam.delete_role_policy(RoleName=role, PolicyName=statement.policy)
    try:
        yield
    finally:
        iam.put_role_policy(
            RoleName=role, PolicyName=statement.policy, PolicyDocument=json.dumps(document)
        )


@contextlib.contextmanager
def function_env(ctx: Context, extra: Mapping[str, str]) -> Iterator[None]:
    """The deployed function with ``extra`` variables (test-only timing), restored on exit."""
    if not extra:
        yield
        return
    lam, name = ctx.aws.client("lambda"), ctx.provider.function_name
    variables = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    lam.update_function_configuration(
        FunctionName=name, Environment={"Variables": {**variables, **extra}}
    )
    try:
        yield
    finally:
        lam.update_function_configuration(
            FunctionName=name, Environment={"Variables": dict(variables)}
        )


# --------------------------------------------------------------------------- scenarios


def example(*, deletion_policy: str | None = None, tags: Mapping[str, str] | None = None) -> str:
    """examples/membership.yaml, with another DeletionPolicy or with Tags (pure text edits)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    if deletion_policy is not None:
        old = "DeletionPolicy: RetainExceptOnCreate"
        assert old in text
        text = text.replace(old, f"DeletionPolicy: {deletion_policy}")
    if tags is not None:
        anchor = "      OnDelete: Retain\n"
        assert anchor in text
        declared = "".join(
            f"        - Key: {key}\n          Value: {value}\n" for key, value in tags.items()
        )
        text = text.replace(anchor, anchor + "      Tags:\n" + declared)
    return text


def change(ctx: Context, stack: str, name: str, body: str, *, rename: int = 0) -> Any:
    """Create and execute a change set of the example on ``stack``; its outcome."""
    described = stack_ops.create_change_set(
        ctx.cfn,
        stack_name=stack,
        change_set_name=name,
        template_body=body,
        values=example_parameters(NAMES[rename], ous(1, 8)),
    )
    return stack_ops.execute_change_set(ctx.cfn, described)


def observed(outcome: stack_ops.Outcome, ctx: Context) -> Observed:
    """The first failed event of the membership resource in ``outcome``."""
    failed = [e for e in outcome.events if e.logical_id == LOGICAL_ID and "FAILED" in e.status]
    if not failed:
        return Observed("(no failure)", "", outcome.stack_status)
    first = failed[0]
    return Observed(
        first.status, iam_matrix.masked(first.reason, ctx.names()), outcome.stack_status
    )


def play_create(ctx: Context, stack: str, statement: Statement) -> Observed:
    """Create the example stack without the action."""
    with without(ctx, statement):
        return observed(change(ctx, stack, "create", example()), ctx)


def play_create_then_update(ctx: Context, stack: str, statement: Statement) -> Observed:
    """Create (its lease is not given back), then update: the update finds the lease held."""
    with function_env(ctx, NO_CONTINUATION), without(ctx, statement):
        created = change(ctx, stack, "create", example())
        if created.stack_status != "CREATE_COMPLETE":
            return observed(created, ctx)
        return observed(change(ctx, stack, "update", example(), rename=1), ctx)


def play_create_then_delete(ctx: Context, stack: str, statement: Statement) -> Observed:
    """Create with DeletionPolicy: Delete, delete without the action; then with it back."""
    created = change(ctx, stack, "create", example(deletion_policy="Delete"))
    if created.stack_status != "CREATE_COMPLETE":
        return observed(created, ctx)
    with without(ctx, statement):
        seen = observed(stack_ops.delete_stack(ctx.cfn, stack), ctx)
    if seen.stack_status != "DELETE_FAILED":
        return seen
    again = stack_ops.delete_stack(ctx.cfn, stack)
    return Observed(**{**seen.__dict__, "note": f"deleted again with it: {again.stack_status}"})


def hold_lease(ctx: Context, seconds: float) -> None:
    """Another stack operation holds the membership's lease for ``seconds`` (as the function
    writes a lease: ``lease#<membership>``, holder ``<StackId>#<LogicalId>#<RequestId>``)."""
    stack_id = (
        f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{OTHER_HOLDER_STACK}/{uuid.uuid4()}"
    )
    until = time.time() + seconds
    ctx.aws.client("dynamodb").put_item(
        TableName=ctx.table,
        Item={
            "id": {"S": f"lease#{A}"},
            "holder": {"S": f"{stack_id}#{LOGICAL_ID}#{uuid.uuid4()}"},
            "until": {"N": f"{until:.3f}"},
            "expiration": {"N": str(int(until) + 3600)},
        },
    )


def play_create_while_busy(ctx: Context, stack: str, statement: Statement) -> Observed:
    """Create while another request holds the lease: the change continues in a new invocation."""
    with function_env(ctx, WAIT_AT_MOST):
        with without(ctx, statement):
            hold_lease(ctx, OTHER_LEASE_SECONDS)
            seen = observed(change(ctx, stack, "create", example()), ctx)
        if seen.stack_status != "ROLLBACK_COMPLETE":
            return seen
        ctx.fresh()
        hold_lease(ctx, OTHER_LEASE_SECONDS)
        again = change(ctx, f"{stack}-granted", "create", example())
    return Observed(**{**seen.__dict__, "note": f"created again with it: {again.stack_status}"})


SCENARIOS: Mapping[str, Callable[[Context, str, Statement], Observed]] = {
    "dynamodb:GetItem": play_create,
    "dynamodb:PutItem": play_create,
    "dynamodb:UpdateItem": play_create,
    "dynamodb:DeleteItem": play_create_then_update,
    "cloudformation:DescribeStacks": play_create_then_delete,
    "lambda:InvokeFunction": play_create_while_busy,
}
TAGS_SCENARIO = (
    "create the example stack with Tags (team, env), then update them (team changed, env dropped)"
)


def play_tags(ctx: Context) -> None:
    """Every security-ir operation the role grants, played: a resource declaring Tags."""
    stack = "security-ir-matrix-tags"
    ctx.fresh()
    change(ctx, stack, "create", example(tags={"team": "security", "env": "prod"}))
    change(ctx, stack, "update", example(tags={"team": "incident-response"}))
    ctx.record_calls(TAGS_SCENARIO)


# --------------------------------------------------------------------------- the matrix


def play_row(ctx: Context, statement: Statement) -> Row:
    """One action removed and its scenario played (or why it is not)."""
    play = iam_matrix.play_for(statement)
    if not isinstance(play, Play):
        why = play.why if play is not None else "no scenario written for this action"
        return Row(statement, "-", why, play is not None)
    ctx.fresh()
    stack = "security-ir-matrix-" + statement.action.split(":")[1].lower()
    seen = SCENARIOS[statement.action](ctx, stack, statement)
    ctx.record_calls(play.scenario)
    text = f"{seen.event_status}: {seen.reason} (stack {seen.stack_status})"
    if seen.note:
        text += f"; {seen.note}"
    return Row(
        statement, play.scenario, text, iam_matrix.holds(play, seen.event_status, seen.reason)
    )


@dataclass(frozen=True)
class Matrix:
    """Every row, the security-ir calls not granted, and how long it took."""

    rows: tuple[Row, ...]
    ungranted: tuple[str, ...]
    seconds: float

    def markdown(self) -> str:
        """The docs/local.md section."""
        return iam_matrix.render(self.rows, self.ungranted)


def run_matrix(aws: LocalAWS, provider: Provider, template: Mapping[str, Any]) -> Matrix:
    """Play every row of the role's statements on ``aws``; security-ir rows last."""
    began = time.monotonic()
    ctx = Context(aws, provider)
    statements = iam_matrix.role_statements(template)
    enforced = [s for s in statements if not s.action.startswith(iam_matrix.SECURITY_IR)]
    rows = [play_row(ctx, s) for s in enforced]
    play_tags(ctx)
    security = [s for s in statements if s.action.startswith(iam_matrix.SECURITY_IR)]
    rows += iam_matrix.security_ir_rows(security, ctx.called)
    ctx.fresh()
    return Matrix(
        tuple(rows),
        tuple(iam_matrix.ungranted(security, ctx.called)),
        time.monotonic() - began,
    )


def main(argv: list[str] | None = None) -> int:
    """Start ministack, deploy, play the matrix; write or check docs/local.md's section."""
    from sirlocal.services import load_template  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m sirlocal.ministack_matrix")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    parser.add_argument("--sam", default="sam")
    parser.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    args = parser.parse_args(argv)
    with local_aws() as aws:
        provider = deploy_provider(
            aws, sam=args.sam, parameters=PROVIDER_PARAMETERS, build_dir=args.build_dir
        )
        matrix = run_matrix(aws, provider, load_template())
    text = DOC.read_text(encoding="utf-8")
    wanted = iam_matrix.replace_section(text, matrix.markdown())
    print(matrix.markdown())
    print(f"\n{len(matrix.rows)} rows played in {matrix.seconds:.1f} s")
    if args.write:
        DOC.write_text(wanted, encoding="utf-8")
        return 0 if all(r.held for r in matrix.rows) else 1
    return 0 if wanted == text and all(r.held for r in matrix.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
