"""The least-privilege matrix of the four roles, played on ministack with IAM enforced,
and written to docs/local.md.

Why: the roles' statements are the product's promise of least privilege.
For each action ministack enforces (DynamoDB, CloudFormation, Step Functions
for the functions' roles), the action is removed from its role on the
running ministack, the scenario that needs it is played through change sets,
and the failing request's stack event must carry the README's one-line
reason; the action is then put back. Where the need shows elsewhere (the
dispatcher's best-effort stop: the superseded execution is left running) the
row says what is observed. An action ministack does not check (the state
machine's ``lambda:InvokeFunction``) is removed too, and the row shows the
scenario succeeding without it: "not enforced by ministack", never a pass.
A grant no code calls is shown the same way and listed as one to drop.
security-ir is served by the project's emulator, which enforces nothing:
those actions are checked against the calls the emulator recorded (each
granted action called by a scenario, each call granted). Rows are pure data
in :mod:`sirlocal.iam_matrix`; this module is the imperative shell.

    python -m sirlocal.ministack_matrix --write   # play, rewrite the docs/local.md section
    python -m sirlocal.ministack_matrix --check   # play, exit 1 if the section differs

Scenarios that need a shorter time reserve set the test-only ``SIR_TIMING_*``
variables (docs/development.md) on the deployed function for the row only,
and ministack's ``SFN_WAIT_SCALE`` (its runtime setting) for the row only.
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
from sirlocal.iam_matrix import Excluded, NotEnforced, Play, Row, Statement, Unused
from sirlocal.ministack import ACCOUNT_ID, REGION, REPO_ROOT, LocalAWS, local_aws
from sirlocal.ministack_demo import EXAMPLE, PROVIDER_PARAMETERS, SEED, example_parameters
from sirlocal.ministack_deploy import Provider, deploy_provider
from sirlocal.ministack_engine import executions

DOC = REPO_ROOT / "docs" / "local.md"
BUILD_DIR = REPO_ROOT / ".aws-sam" / "ministack-matrix"
LOGICAL_ID = "Membership"
#: No Wait state for a busy membership: a request that cannot take the lease fails at once.
NO_CONTINUATION = {"SIR_TIMING_CONTINUE_MIN": "100000"}
#: The stop scenario: a busy membership is waited out in Wait states of 2 s (its
#: ServiceTimeout of 12 s allows them), which ministack stretches (STRETCH) past the time
#: CloudFormation waits, so CloudFormation gives up while the execution waits.
WAIT_FOR_THE_LEASE = {
    "SIR_TIMING_CONTINUE_MIN": "1",
    "SIR_TIMING_ANSWER_MARGIN": "1",
    "SIR_TIMING_BUSY_POLL": "2",
}
STRETCH = 20.0
STOP_SERVICE_TIMEOUT = 12
#: The Answer rows: CloudFormation waits this long; the Answer task's retries (2 s doubling,
#: 6 attempts) are shortened by ministack's wait scale so the execution ends first.
ANSWER_SERVICE_TIMEOUT = 10
SHORT_RETRIES = 0.02
#: How long another stack operation holds the membership's lease (the stop scenario).
OTHER_LEASE_SECONDS = 6.0
OTHER_HOLDER_STACK = "security-ir-other-operation"
#: ministack's runtime setting of its Step Functions' Wait and Retry lengths.
WAIT_SCALE = "stepfunctions._SFN_WAIT_SCALE"


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

    def physical(self, logical_id: str) -> str:
        """A provider resource's physical id (a role's name, a function's name)."""
        found = self.provider.resources.get(logical_id)
        if found:
            return found
        resource = self.cfn.describe_stack_resource(
            StackName=self.provider.stack_name, LogicalResourceId=logical_id
        )
        return str(resource["StackResourceDetail"]["PhysicalResourceId"])

    @property
    def machine(self) -> str:
        """The state machine's ARN."""
        return self.provider.state_machine_arn or self.provider.outputs["StateMachineArn"]

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


# --------------------------------------------------------------------------- the roles


@contextlib.contextmanager
def without(ctx: Context, statement: Statement) -> Iterator[None]:
    """The role without ``statement.action`` (its policy rewritten), put back on exit."""
    iam, role = ctx.aws.client("iam"), ctx.physical(statement.role)
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
def function_env(ctx: Context, function: str, extra: Mapping[str, str]) -> Iterator[None]:
    """The deployed ``function`` (logical id) with ``extra`` variables (test-only timing),
    restored on exit."""
    lam, name = ctx.aws.client("lambda"), ctx.physical(function)
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


@contextlib.contextmanager
def wait_scale(ctx: Context, scale: float) -> Iterator[None]:
    """ministack's Step Functions with Wait and Retry lengths times ``scale``, reset on exit
    (a wait already begun keeps the length it began with)."""
    ctx.aws.configure({WAIT_SCALE: scale})
    try:
        yield
    finally:
        ctx.aws.configure({WAIT_SCALE: 1.0})


# --------------------------------------------------------------------------- scenarios


def example(
    *,
    deletion_policy: str | None = None,
    tags: Mapping[str, str] | None = None,
    service_timeout: int | None = None,
) -> str:
    """examples/membership.yaml, with another DeletionPolicy, Tags or ServiceTimeout
    (pure text edits)."""
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
    if service_timeout is not None:
        old = "ServiceTimeout: 3600"
        assert old in text
        text = text.replace(old, f"ServiceTimeout: {service_timeout}", 1)
    return text


def change(
    ctx: Context, stack: str, name: str, body: str, *, rename: int = 0, last_ou: int = 8
) -> Any:
    """Create and execute a change set of the example on ``stack``; its outcome."""
    described = stack_ops.create_change_set(
        ctx.cfn,
        stack_name=stack,
        change_set_name=name,
        template_body=body,
        values=example_parameters(NAMES[rename], ous(1, last_ou)),
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


def play_create_unanswered(ctx: Context, stack: str, statement: Statement) -> Observed:
    """Create with ServiceTimeout 10 without the action: the Answer task and the safety net
    (the same function) cannot answer, so CloudFormation gives up."""
    with wait_scale(ctx, SHORT_RETRIES), without(ctx, statement):
        outcome = change(ctx, stack, "create", example(service_timeout=ANSWER_SERVICE_TIMEOUT))
    return observed(outcome, ctx)


def play_create_then_update(ctx: Context, stack: str, statement: Statement) -> Observed:
    """Create (its lease is not given back), then update: the update finds the lease held."""
    with function_env(ctx, "WorkFunction", NO_CONTINUATION), without(ctx, statement):
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
    """Another stack operation holds the membership's lease for ``seconds`` (as the Work task
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


def superseded_while_waiting(ctx: Context, stack: str, name: str) -> tuple[stack_ops.Outcome, str]:
    """Update ``stack`` (ServiceTimeout 12) while another holds the lease; CloudFormation gives
    up and rolls back. The outcome, and the forward Update's execution status just after."""
    known = set(executions(ctx.aws, ctx.machine))
    hold_lease(ctx, OTHER_LEASE_SECONDS)
    with wait_scale(ctx, STRETCH):
        outcome = change(ctx, stack, name, example(service_timeout=STOP_SERVICE_TIMEOUT), last_ou=9)
    found = executions(ctx.aws, ctx.machine)
    ours = sorted((e for n, e in found.items() if n not in known), key=lambda e: str(e.started))
    return outcome, ours[0].status if ours else "(no execution)"


def play_superseded(ctx: Context, stack: str, statement: Statement) -> Observed:
    """A forward Update waiting in a Wait state is superseded by its rollback: without the
    action the rollback's dispatcher cannot stop its execution; with it, it does."""
    created = change(ctx, stack, "create", example())
    if created.stack_status != "CREATE_COMPLETE":
        return observed(created, ctx)
    with function_env(ctx, "WorkFunction", WAIT_FOR_THE_LEASE):
        with without(ctx, statement):
            outcome, status = superseded_while_waiting(ctx, stack, "update")
        ctx.fresh()
        again, control = superseded_while_waiting(ctx, stack, "update-again")
    seen = observed(outcome, ctx)
    return Observed(
        status,
        f"not stopped by the rollback's dispatcher ({seen.event_status}: {seen.reason})"
        if status == "RUNNING"
        else f"{status}: stopped ({seen.event_status}: {seen.reason})",
        outcome.stack_status,
        f"with it put back, the same update's execution: {control} (stack {again.stack_status})",
    )


SCENARIOS: Mapping[tuple[str, str], Callable[[Context, str, Statement], Observed]] = {
    (iam_matrix.ROLE, "dynamodb:UpdateItem"): play_create,
    (iam_matrix.ROLE, "states:StartExecution"): play_create,
    (iam_matrix.ROLE, "states:StopExecution"): play_superseded,
    (iam_matrix.WORK_ROLE, "dynamodb:GetItem"): play_create,
    (iam_matrix.WORK_ROLE, "dynamodb:PutItem"): play_create,
    (iam_matrix.WORK_ROLE, "dynamodb:UpdateItem"): play_create,
    (iam_matrix.WORK_ROLE, "dynamodb:DeleteItem"): play_create_then_update,
    (iam_matrix.WORK_ROLE, "cloudformation:DescribeStacks"): play_create_then_delete,
    (iam_matrix.ANSWER_ROLE, "dynamodb:GetItem"): play_create_unanswered,
    (iam_matrix.ANSWER_ROLE, "dynamodb:UpdateItem"): play_create_unanswered,
    (iam_matrix.MACHINE_ROLE, "lambda:InvokeFunction"): play_create,
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

#: Short names of the roles, for the scenarios' stack names.
SHORT = {
    iam_matrix.ROLE: "dispatcher",
    iam_matrix.WORK_ROLE: "work",
    iam_matrix.ANSWER_ROLE: "answer",
    iam_matrix.MACHINE_ROLE: "machine",
}


def play_row(ctx: Context, statement: Statement) -> Row:
    """One action removed and its scenario played (or why it is not)."""
    play = iam_matrix.play_for(statement)
    if play is None or isinstance(play, Excluded):
        why = play.why if play is not None else "no scenario written for this action"
        return Row(statement, "-", why, play is not None)
    ctx.fresh()
    action = statement.action.split(":")[1].lower()
    stack = f"security-ir-matrix-{SHORT[statement.role]}-{action}"
    seen = SCENARIOS[statement.key](ctx, stack, statement)
    ctx.record_calls(play.scenario)
    text = f"{seen.event_status}: {seen.reason} (stack {seen.stack_status})"
    if seen.note:
        text += f"; {seen.note}"
    if isinstance(play, NotEnforced | Unused):
        succeeded = seen.event_status == "(no failure)" and seen.stack_status.endswith("_COMPLETE")
        text = f"{play.why} (removed: stack {seen.stack_status}"
        text += ")" if succeeded else f", {seen.event_status}: {seen.reason})"
        return Row(statement, play.scenario, text, succeeded, isinstance(play, Unused))
    assert isinstance(play, Play)
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


def run_matrix(
    aws: LocalAWS,
    provider: Provider,
    template: Mapping[str, Any],
    report: Callable[[Row], None] = lambda _row: None,
) -> Matrix:
    """Play every row of the roles' statements on ``aws``; security-ir rows last.

    ``report`` hears each row once played (progress, for the command)."""
    began = time.monotonic()
    ctx = Context(aws, provider)
    statements = iam_matrix.role_statements(template)
    enforced = [s for s in statements if not s.action.startswith(iam_matrix.SECURITY_IR)]
    rows = []
    for statement in enforced:
        rows.append(play_row(ctx, statement))
        report(rows[-1])
    play_tags(ctx)
    security = [s for s in statements if s.action.startswith(iam_matrix.SECURITY_IR)]
    rows += iam_matrix.security_ir_rows(security, ctx.called)
    ctx.fresh()
    return Matrix(
        tuple(rows),
        tuple(iam_matrix.ungranted(security, ctx.called)),
        time.monotonic() - began,
    )


def _progress(row: Row) -> None:
    s = row.statement
    print(f"{s.role} {s.action}: {row.observed}", file=sys.stderr, flush=True)


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
        matrix = run_matrix(aws, provider, load_template(), report=_progress)
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
