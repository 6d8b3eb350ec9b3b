"""``make demo``: the provider deployed on ministack, and one stack's story through change sets.

Why: a new user should see what the custom resource does to a membership,
on a real CloudFormation engine, before trusting it with one. This starts
ministack and the Security IR emulator (:mod:`sirlocal.ministack`), builds
and deploys template.yaml as ``sam deploy`` does
(:mod:`sirlocal.ministack_deploy`), and plays examples/membership.yaml
against a seeded membership: create, a big update with a rename, an update
refused part-way and rolled back by CloudFormation, and delete. Each change
goes through a change set: ``sir-membership plan --change-set-name`` reads
it from ministack and predicts the UpdateMembership calls, the change set
is executed, and the calls the function made (the emulator records them)
must equal the calls predicted. Stack events come from ministack's
``DescribeStackEvents``. Names, titles, emails and the membership name are
masked. Exit status 1 means a check failed; every process started here is
stopped on the way out (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

from sirlocal import stack_ops
from sirlocal.fixtures import (
    FOREIGN,
    NAMES,
    PEOPLE,
    A,
    Expect,
    call_summary,
    ou,
    ous,
    seed,
    sensitive_values,
    state_problems,
)
from sirlocal.ministack import ACCOUNT_ID, REPO_ROOT, LocalAWS, local_aws
from sirlocal.ministack_deploy import PROVIDER_STACK, Provider, deploy_provider
from sirlocal.story import (
    ChapterResult,
    changes,
    describe_state,
    indent,
    restored_problems,
    scrub,
    summary,
)

EXAMPLE = REPO_ROOT / "examples" / "membership.yaml"
BUILD_DIR = REPO_ROOT / ".aws-sam" / "ministack"
STACK = "security-ir-membership-demo"
#: The provider's parameters, every one given (AllowedStackNames as recommended: a prefix).
PROVIDER_PARAMETERS = {
    "AllowedStackNames": "security-ir-*",
    "LogLevel": "INFO",
    "LogRetentionInDays": "90",
}
#: The seeded membership (in ministack's account): 7 OUs the stack declares, 1 someone else's.
SEED = {**seed(A, ou_ids=[*ous(1, 7), FOREIGN[0]]), "accountId": ACCOUNT_ID}


def example_parameters(name: str, ou_ids: Sequence[str]) -> dict[str, str]:
    """examples/membership.yaml's parameters: membership A, two responders, Triage on."""
    (n1, t1, e1), (n2, t2, e2) = PEOPLE[0], PEOPLE[1]
    return {
        "ProviderStackName": PROVIDER_STACK,
        "MembershipId": A,
        "MembershipName": name,
        "EnableTriage": "true",
        "OrganizationalUnitIds": ",".join(ou_ids),
        "PrimaryResponderName": n1,
        "PrimaryResponderJobTitle": t1,
        "PrimaryResponderEmail": e1,
        "SecondaryResponderName": n2,
        "SecondaryResponderJobTitle": t2,
        "SecondaryResponderEmail": e2,
    }


@dataclass(frozen=True)
class Step:
    """One step of the story: the parameters (None: delete the stack) and what must hold."""

    title: str
    what: str
    expect_status: str
    parameters: Mapping[str, str] | None
    promise: str
    refuse_second_update: bool = False  # the 2nd UpdateMembership call is refused, once
    expect: Expect | None = None
    same_as_before: bool = False  # the membership must end as it was before the step
    updates: int | None = None  # UpdateMembership calls made (None: not checked)


STEPS: tuple[Step, ...] = (
    Step(
        "create",
        "adopt the membership: declare 8 OUs (7 already associated) and its current name",
        "CREATE_COMPLETE",
        example_parameters(NAMES[0], ous(1, 8)),
        "one UpdateMembership (+1 OU; the team, whose first responder now has communication "
        "preferences); the foreign OU is left alone",
        expect=Expect(ous=frozenset({*ous(1, 8), FOREIGN[0]}), name=NAMES[0]),
        updates=1,
    ),
    Step(
        "update",
        "add 12 OUs, remove 7, rename the membership",
        "UPDATE_COMPLETE",
        example_parameters(NAMES[1], ous(8, 20)),
        "max(ceil(12/5), ceil(7/5)) = 3 UpdateMembership calls, the rename in the first",
        expect=Expect(ous=frozenset({*ous(8, 20), FOREIGN[0]}), name=NAMES[1]),
        updates=3,
    ),
    Step(
        "failed update, rolled back",
        "add 8 OUs, remove 4, rename again; the 2nd UpdateMembership call is refused "
        "(fault injected in the emulator: AccessDeniedException)",
        "UPDATE_ROLLBACK_COMPLETE",
        example_parameters(NAMES[2], [ou(8), *ous(13, 28)]),
        "UPDATE_FAILED naming the applied calls, then CloudFormation's rollback restores the "
        "membership exactly as it was before this step",
        refuse_second_update=True,
        same_as_before=True,
    ),
    Step(
        "delete",
        "delete the stack (the example's DeletionPolicy: Retain)",
        "DELETE_COMPLETE",
        None,
        "CloudFormation sends no Delete (Retain): no call; the membership keeps its last "
        "configuration",
        expect=Expect(ous=frozenset({*ous(8, 20), FOREIGN[0]}), name=NAMES[1]),
        updates=0,
    ),
)
SECRETS = frozenset(
    sensitive_values(SEED, *(dict(s.parameters or {}) for s in STEPS))
    | {value for person in PEOPLE[:2] for value in person}
    | set(NAMES)
)


# --------------------------------------------------------------------------- plan


def plan(aws: LocalAWS, change_set: str, *, as_json: bool) -> tuple[int, str]:
    """``sir-membership plan --change-set-name`` against ministack (exit code, output)."""
    from sir_membership import cli  # noqa: PLC0415 - the package, not a test double

    argv = ["plan", "--change-set-name", change_set, "--stack-name", STACK]
    if as_json:
        argv += ["--format", "json", "--show-sensitive"]  # compared in memory, never printed
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, clients=aws.plan_clients(), stdout=out, stderr=err)
    return code, out.getvalue() + err.getvalue()


def predicted_requests(aws: LocalAWS, change_set: str) -> list[dict[str, Any]]:
    """The UpdateMembership requests the plan predicts, in order (boto3 keyword arguments)."""
    code, text = plan(aws, change_set, as_json=True)
    if code not in (0, 2):
        raise RuntimeError(f"plan failed (exit {code}): {text.strip().splitlines()[-1:]}")
    return list(json.loads(text)["updateMembershipRequests"])


def prediction_problems(
    predicted: Sequence[Mapping[str, Any]], made: Sequence[Mapping[str, Any]], *, refused: bool
) -> list[str]:
    """How the calls made differ from the calls predicted (pure; counts, never values).

    With ``refused``, the forward calls stop at the refused one and the rest
    are the rollback's: the attempts up to there must be the predicted ones.
    """
    compared = list(made[: len(predicted)]) if refused else list(made)
    if compared == list(predicted):
        return []
    differing = [
        i + 1
        for i in range(max(len(compared), len(predicted)))
        if i >= len(compared) or i >= len(predicted) or compared[i] != predicted[i]
    ]
    return [
        f"{len(compared)} UpdateMembership call(s) made, {len(predicted)} predicted; "
        f"call(s) {differing} differ from the plan"
    ]


# --------------------------------------------------------------------------- one step


@dataclass(frozen=True)
class Played:
    """What one step did: the outcome, the calls predicted and made, the states."""

    outcome: stack_ops.Outcome
    predicted: tuple[dict[str, Any], ...]
    calls: tuple[Any, ...]
    before: Mapping[str, Any]
    after: Mapping[str, Any]

    @property
    def made(self) -> list[dict[str, Any]]:
        """The UpdateMembership requests the function sent, in order (refused ones too)."""
        return [c.request for c in self.calls if c.operation == "UpdateMembership"]


def play(aws: LocalAWS, step: Step, number: int, out: TextIO) -> Played:
    """Run one step on the stack through a change set (or delete it), printing as it goes."""
    cfn = aws.client("cloudformation")
    before = aws.emulator.state(A)
    predicted: list[dict[str, Any]] = []
    if step.parameters is not None:
        name = f"sir-demo-{number}"
        described = stack_ops.create_change_set(
            cfn,
            stack_name=STACK,
            change_set_name=name,
            template_body=EXAMPLE.read_text(encoding="utf-8"),
            values=step.parameters,
        )
        print(f"\n  sir-membership plan --change-set-name {name} --stack-name {STACK}:", file=out)
        print(indent(plan(aws, name, as_json=False)[1].rstrip(), "    | "), file=out)
        predicted = predicted_requests(aws, name)
    seen = len(aws.emulator.calls())
    if step.refuse_second_update:
        aws.emulator.fail("UpdateMembership", on_call=2, times=1, error="AccessDeniedException")
    try:
        if step.parameters is not None:
            outcome = stack_ops.execute_change_set(cfn, described)
        else:
            outcome = stack_ops.delete_stack(cfn, STACK)
    finally:
        aws.emulator.clear_faults()
    calls = tuple(aws.emulator.calls()[seen:])
    return Played(outcome, tuple(predicted), calls, before, aws.emulator.state(A))


def check(step: Step, played: Played) -> ChapterResult:
    """What the step promised, against what happened (pure)."""
    result = ChapterResult(step.title, step.expect_status, played.outcome.stack_status)
    if played.outcome.stack_status != step.expect_status:
        result.problems.append(
            f"stack is {played.outcome.stack_status}, expected {step.expect_status}"
        )
    if step.parameters is not None:
        result.problems += prediction_problems(
            played.predicted, played.made, refused=step.refuse_second_update
        )
    if step.expect is not None:
        result.problems += state_problems(played.after, step.expect, "membership")
    if step.updates is not None and len(played.made) != step.updates:
        result.problems.append(
            f"{len(played.made)} UpdateMembership calls, expected {step.updates}"
        )
    if step.same_as_before:
        result.problems += restored_problems(played.before, played.after)
    return result


def show(step: Step, played: Played, result: ChapterResult, out: TextIO) -> None:
    """Print the step's events, calls, membership and verdict (sensitive values masked)."""
    outcome = played.outcome
    print(f"\n  Stack events from DescribeStackEvents ({outcome.seconds:.2f} s):", file=out)
    print(indent(stack_ops.format_events(outcome.events)), file=out)
    for reason in outcome.reasons():
        text = textwrap.fill(f"Reason: {scrub(reason, SECRETS)}", 96)
        print("\n" + textwrap.indent(text, "    "), file=out)
    made = played.made
    print(f"\n  security-ir calls ({len(played.calls)}, {len(made)} UpdateMembership):", file=out)
    print(indent([call_summary(c) for c in played.calls] or ["(none)"]), file=out)
    if step.parameters is not None:
        same = not prediction_problems(played.predicted, made, refused=step.refuse_second_update)
        scope = "the forward calls up to the refused one" if step.refuse_second_update else "all"
        verdict = "equal" if same else "DIFFER"
        print(
            f"  Predicted by plan: {len(played.predicted)} UpdateMembership call(s); "
            f"made ({scope}): {verdict}",
            file=out,
        )
    print(f"\n  Membership after (changed: {changes(played.before, played.after)}):", file=out)
    print(indent(describe_state(played.after)), file=out)
    verdict = "ok" if result.ok else "CHECK FAILED: " + "; ".join(result.problems)
    print(f"\n  -> {verdict}", file=out)


def run_story(aws: LocalAWS, out: TextIO) -> list[ChapterResult]:
    """Play every step on one stack; returns one result per step."""
    results = []
    for number, step in enumerate(STEPS, start=1):
        print(f"\n== {number}. {step.title}: {step.what}", file=out)
        print(f"   expected: {step.expect_status}; {step.promise}", file=out)
        played = play(aws, step, number, out)
        result = check(step, played)
        show(step, played, result, out)
        results.append(result)
    return results


# --------------------------------------------------------------------------- the command


def show_provider(aws: LocalAWS, provider: Provider, out: TextIO) -> None:
    """The provider stack as deployed: its resources' last status, the substitution."""
    events = stack_ops.all_events(aws.client("cloudformation"), provider.stack_name)
    last = {e.logical_id: e for e in events}
    print(
        f"Provider stack {provider.stack_name}: sam build {provider.build_seconds:.1f} s, "
        f"sam deploy {provider.deploy_seconds:.1f} s (its events, from DescribeStackEvents):",
        file=out,
    )
    print(indent(stack_ops.format_events(list(last.values()))), file=out)
    for s in provider.substitutions:
        print(f"  deployed {s.logical_id} as {s.deployed}, not {s.declared}: {s.why}", file=out)


def _terminate(signum: int, _frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds the context managers: every process is stopped


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """Start ministack and the emulator, deploy, play the story, stop everything."""
    parser = argparse.ArgumentParser(prog="python -m sirlocal.ministack_demo")
    parser.add_argument("--sam", default="sam", help="the sam executable (sam build, sam deploy)")
    parser.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    began = time.monotonic()
    print("sir-membership demo: the provider on ministack, one stack, offline.", file=out)
    with local_aws(seed=[SEED]) as aws:
        print(
            f"  ministack            {aws.url} (pinned, AUTH=true: IAM enforced; "
            f"started in {aws.seconds_to_start:.1f} s)\n"
            f"  security-ir emulator {aws.emulator.endpoint_url}\n",
            file=out,
        )
        provider = deploy_provider(
            aws, sam=args.sam, parameters=PROVIDER_PARAMETERS, build_dir=args.build_dir
        )
        show_provider(aws, provider, out)
        print(f"\nSeeded membership {A} ('A' in the call list):", file=out)
        print(indent(describe_state(aws.emulator.state(A))), file=out)
        print(f"    ({FOREIGN[0]} stands for an OU associated outside this stack)", file=out)
        results = run_story(aws, out)
        process = aws.process
    stopped = process.poll() is not None
    print("\n".join(summary(results)), file=out)
    print(
        f"Stopped ministack (and its Lambda processes) and the emulator; "
        f"{time.monotonic() - began:.1f} s in all."
        if stopped
        else "ministack is still running",
        file=out,
    )
    return 0 if all(r.ok for r in results) and stopped else 1


if __name__ == "__main__":
    sys.exit(main())
