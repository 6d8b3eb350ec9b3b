"""The Step Functions engine end to end on ministack, with IAM enforced (``AUTH=true``).

Why: the engine's promises (issue 18) are about what a real CloudFormation
sees: one execution and one answer per request, the membership exact after
every operation and rollback, the bound's calls, an answer in time when the
change cannot fit, and no write by a request that lost its resource's fence.
Here ministack's CloudFormation sends the requests to the deployed dispatcher
(``sam build`` + ``sam deploy`` of template.yaml), its Step Functions runs the
real definition (statemachine/membership.asl.json) with Work, Wait and
Answer, and the answers are PUT to its ResponseURL. Every request and answer
is counted by the launcher (``ministack_contexts``), the executions by
``ListExecutions``, the calls by the emulator. The propagation models run at
P = 1 s. Started once per module; each scenario seeds its own membership
and uses its own stack.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sirlocal.fixtures import FOREIGN, NAMES, ous, seed
from sirlocal.ministack import ACCOUNT_ID, REPO_ROOT, LocalAWS, local_aws
from sirlocal.ministack_demo import PROVIDER_PARAMETERS, example_parameters
from sirlocal.ministack_deploy import Provider, deploy_provider
from sirlocal.ministack_engine import (
    ENGINE_ENV,
    Played,
    answer_problems,
    consumer_template,
    executions,
    ou_changes,
    play,
)

from sir_membership.pace import PROBE_FLOOR

pytestmark = pytest.mark.e2e

SAM = os.environ.get("SIR_SAM") or str(REPO_ROOT / ".venv-tools" / "bin" / "sam")
BUILD_DIR = (
    REPO_ROOT / ".aws-sam" / f"ministack-engine-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
)
DEFINITION = REPO_ROOT / "statemachine" / "membership.asl.json"
#: The propagation window of every model played here (seconds).
P = 1.0
#: Seconds a stack operation may take beyond its waits (ministack's polling, cold starts,
#: one Lambda invocation per Work step and per answer, whole-second Wait states).
OVERHEAD = 4.0
#: A membership's first change with no Retry-After searches for the window: its
#: first probe waits pace.PROBE_FLOOR, not P (the next change starts from the pace).
PROBE = PROBE_FLOOR


@pytest.fixture(autouse=True)
def clean_services() -> None:
    """Overrides tests/e2e/conftest.py's: this module uses none of the project's stand-ins
    (no driver, no moto, no Lambda workers), only ministack and the emulator."""


@pytest.fixture(scope="module")
def deployed() -> Iterator[tuple[LocalAWS, Provider]]:
    """ministack (with the engine's local-only settings) and the provider, for this module."""
    with local_aws(env=ENGINE_ENV) as aws:
        provider = deploy_provider(
            aws, sam=SAM, parameters=PROVIDER_PARAMETERS, build_dir=BUILD_DIR
        )
        yield aws, provider


def membership(number: int) -> str:
    """A membership of its own for each scenario: the table keeps what the engine learned
    about a membership (its pace) across stacks, so scenarios sharing one would interfere."""
    return f"m-engine{number:06d}"


def seeded(aws: LocalAWS, membership_id: str) -> dict[str, Any]:
    """Seed ``membership_id`` as the demo does (7 of the stack's OUs and a foreign one)."""
    return aws.emulator.seed(
        {**seed(membership_id, ou_ids=[*ous(1, 7), FOREIGN[0]]), "accountId": ACCOUNT_ID}
    )


def values(membership_id: str, ou_ids: list[str], name: str = NAMES[0]) -> dict[str, str]:
    """examples/membership.yaml's parameters for ``membership_id``."""
    return {**example_parameters(name, ou_ids), "MembershipId": membership_id}


def state_ous(aws: LocalAWS, membership_id: str) -> set[str]:
    """The OUs the membership covers now."""
    accounts = aws.emulator.state(membership_id)["membershipAccountsConfigurations"]
    return set(accounts.get("organizationalUnits") or ())


def as_declared(state: dict[str, Any]) -> dict[str, Any]:
    """The membership without what the service adds to a team it was sent, its OUs as a set
    (a restore adds the removed ones back at the end of the list)."""
    team = [{k: p[k] for k in ("name", "jobTitle", "email")} for p in state["incidentResponseTeam"]]
    accounts = dict(state["membershipAccountsConfigurations"])
    accounts["organizationalUnits"] = sorted(accounts.get("organizationalUnits") or ())
    return {**state, "incidentResponseTeam": team, "membershipAccountsConfigurations": accounts}


def assert_one_answer_and_execution_each(played: Played, expected: list[tuple[str, str]]) -> None:
    """Each request answered once (as ``expected``), by one execution named for it, ended."""
    assert answer_problems(played.requests, expected) == [], played.summary()
    assert played.execution_problems() == [], played.summary()
    assert len(played.executions) == len(played.requests), played.summary()


def check_the_deployment(aws: LocalAWS, provider: Provider, machine: str) -> None:
    """The three functions, the state machine running the repository's definition, the rule."""
    assert aws.auth  # IAM enforced on every role
    stack = aws.client("cloudformation").describe_stacks(StackName=provider.stack_name)
    assert stack["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    lam = aws.client("lambda")
    functions = {
        logical_id: lam.get_function_configuration(FunctionName=provider.resources[logical_id])
        for logical_id in ("MembershipFunction", "WorkFunction", "AnswerFunction")
    }
    assert functions["MembershipFunction"]["Environment"]["Variables"]["STATE_MACHINE_ARN"] == (
        machine
    )
    assert [f["Handler"] for f in functions.values()] == [
        "sir_membership.app.handler",
        "sir_membership.tasks.work",
        "sir_membership.tasks.answer",
    ]
    for function in functions.values():  # local settings only from ministack's environment
        variables = function.get("Environment", {}).get("Variables", {})
        assert not {"RESPONSE_URL_PATTERNS", "AWS_ENDPOINT_URL_SECURITY_IR"} & set(variables)
        assert not [k for k in variables if k.startswith("SIR_TIMING_")]
    # The definition ministack runs is the repository's file, its two function ARNs substituted.
    described = aws.client("stepfunctions").describe_state_machine(stateMachineArn=machine)
    assert described["type"] == "STANDARD"
    deployed_definition = json.loads(described["definition"])
    source = json.loads(DEFINITION.read_text(encoding="utf-8"))
    assert "${" not in described["definition"]
    assert {n: s["Type"] for n, s in deployed_definition["States"].items()} == {
        n: s["Type"] for n, s in source["States"].items()
    }
    arns = {k: functions[k]["FunctionArn"] for k in ("WorkFunction", "AnswerFunction")}
    states = deployed_definition["States"]
    assert states["Work"]["Parameters"]["FunctionName"] == arns["WorkFunction"]
    assert states["Answer"]["Parameters"]["FunctionName"] == arns["AnswerFunction"]
    assert states["AnswerFailure"]["Parameters"]["FunctionName"] == arns["AnswerFunction"]
    # The safety net: a rule on this state machine's failed, timed-out and aborted executions.
    events = aws.client("events")
    rules = [
        r
        for r in events.list_rules()["Rules"]
        if machine in r.get("EventPattern", "") and "Execution Status Change" in r["EventPattern"]
    ]
    assert len(rules) == 1
    pattern = json.loads(rules[0]["EventPattern"])
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    targets = events.list_targets_by_rule(Rule=rules[0]["Name"])["Targets"]
    assert [t["Arn"] for t in targets] == [arns["AnswerFunction"]]


def lifecycle(aws: LocalAWS, machine: str) -> None:
    """The lifecycle of one stack through the engine; the +20 OUs under the conflict model."""
    m = membership(1)
    seeded(aws, m)
    template = consumer_template()  # DeletionPolicy Delete, OnDelete RemoveOrganizationalUnits
    stack = "security-ir-engine-lifecycle"

    created = play(aws, machine, stack, template, values(m, ous(1, 8)))
    assert created.status == "CREATE_COMPLETE", created.summary()
    assert_one_answer_and_execution_each(created, [("Create", "SUCCESS")])
    assert [ou_changes(c) for c in created.updates_applied] == [(frozenset(ous(8, 8)), frozenset())]
    assert state_ous(aws, m) == {*ous(1, 8), FOREIGN[0]}

    updated = play(
        aws,
        machine,
        stack,
        template,
        values(m, ous(1, 28)),
        arm=lambda: aws.emulator.set_propagation_model("conflict", P),
    )
    aws.emulator.clear_faults()
    assert updated.status == "UPDATE_COMPLETE", updated.summary()
    assert_one_answer_and_execution_each(updated, [("Update", "SUCCESS")])
    calls = updated.updates_applied
    assert len(calls) == 4  # ceil(20 / 5), refusals aside
    assert set().union(*(ou_changes(c)[0] for c in calls)) == set(ous(9, 28))
    assert state_ous(aws, m) == {*ous(1, 28), FOREIGN[0]}
    # Three propagation waits of P between the four calls, one of them a first probe.
    assert updated.outcome.seconds < (len(calls) - 1) * P + PROBE + OVERHEAD

    before = aws.emulator.state(m)
    rolled_back = play(
        aws,
        machine,
        stack,
        template,
        values(m, [*ous(1, 18), *ous(29, 38)], NAMES[2]),  # -10 +10 and a rename: 2 calls
        arm=lambda: aws.emulator.fail(
            "UpdateMembership", on_call=2, times=1, error="AccessDeniedException"
        ),
    )
    assert rolled_back.status == "UPDATE_ROLLBACK_COMPLETE", rolled_back.summary()
    assert_one_answer_and_execution_each(rolled_back, [("Update", "FAILED"), ("Update", "SUCCESS")])
    assert "1 of 2" in rolled_back.requests[0].answers[0].reason
    # The forward call that went through, and the rollback's one restoring call.
    assert len(rolled_back.updates_applied) == 2
    assert as_declared(aws.emulator.state(m)) == as_declared(before)

    deleted = play(aws, machine, stack, None)
    assert deleted.status == "DELETE_COMPLETE", deleted.summary()
    assert_one_answer_and_execution_each(deleted, [("Delete", "SUCCESS")])
    assert len(deleted.updates_applied) == math.ceil(28 / 5)  # the declared OUs removed
    assert state_ous(aws, m) == {FOREIGN[0]}


def plus_20_ous(aws: LocalAWS, machine: str, model: str, retry_after: bool) -> None:
    """+20 OUs (4 calls) at P = 1 s under the other models (conflict: the lifecycle above)."""
    m = membership(10 + ["conflict", "conflict-stale-reads", "stale-reads"].index(model))
    seeded(aws, m)
    stack = f"security-ir-engine-{model}"
    template = consumer_template(remove_ous_on_delete=False)
    created = play(aws, machine, stack, template, values(m, ous(1, 8)))
    assert created.status == "CREATE_COMPLETE", created.summary()

    updated = play(
        aws,
        machine,
        stack,
        template,
        values(m, ous(1, 28)),
        arm=lambda: aws.emulator.set_propagation_model(model, P, retry_after=retry_after),
    )
    assert updated.status == "UPDATE_COMPLETE", updated.summary()
    assert_one_answer_and_execution_each(updated, [("Update", "SUCCESS")])
    assert len(updated.updates_applied) == 4
    assert state_ous(aws, m) == {*ous(1, 28), FOREIGN[0]}
    # The first change on this membership with no Retry-After probes for the window.
    probe = 0.0 if retry_after else PROBE
    assert updated.outcome.seconds < 3 * P + probe + OVERHEAD


def past_its_service_timeout(aws: LocalAWS, machine: str) -> None:
    """+20 OUs at P = 1 s declared with ServiceTimeout 40: the engine keeps 10 s to answer and
    starts a next step only with 30 s left, so the three waits cannot fit. The forward request
    answers FAILED in time (CloudFormation still waiting), naming what was applied; the
    rollback (the old properties: ServiceTimeout 3600) restores the membership."""
    m = membership(20)
    seeded(aws, m)
    stack = "security-ir-engine-service-timeout"
    created = play(aws, machine, stack, consumer_template(), values(m, ous(1, 8)))
    assert created.status == "CREATE_COMPLETE", created.summary()
    before = aws.emulator.state(m)

    played = play(
        aws,
        machine,
        stack,
        consumer_template(service_timeout=40),
        values(m, ous(1, 28)),
        arm=lambda: aws.emulator.set_propagation_model("conflict", P),
    )
    assert played.status == "UPDATE_ROLLBACK_COMPLETE", played.summary()
    assert_one_answer_and_execution_each(played, [("Update", "FAILED"), ("Update", "SUCCESS")])
    forward, rollback = played.requests
    assert (forward.service_timeout, rollback.service_timeout) == ("40", "3600")
    assert forward.settled == "failed"  # answered, not timed out by CloudFormation
    answered_after = forward.answers[0].at - forward.at
    assert answered_after < 40 - 5, f"answered {answered_after:.1f} s after the request"
    reason = forward.answers[0].reason
    assert "ServiceTimeout" in reason
    forward_calls = [c for c in played.updates_applied if c.timestamp < rollback.at]
    assert len(forward_calls) < 4
    assert f"{len(forward_calls)} of 4" in reason
    assert as_declared(aws.emulator.state(m)) == as_declared(before)


#: The Work state's TimeoutSeconds while the hung-Work test runs (see the test). It applies
#: to the rollback's execution too, whose first Work step starts a new Lambda process (the
#: hung one is busy) and glances at the lease the hung Work still holds (LEASE_GLANCE, 2 s):
#: 3 s was too short for that on a loaded machine (its step timed out: UPDATE_ROLLBACK_FAILED).
SHORT_TASK_TIMEOUT = 5
#: How long the emulator holds the hung call before dropping it (never applied): past the
#: task timeout.
BLOCK_SECONDS = 8.0


@contextlib.contextmanager
def short_work_timeout(aws: LocalAWS, machine: str) -> Iterator[int]:
    """The deployed definition with Work's TimeoutSeconds at 5 s, put back afterwards.

    Why not the template's 330 s: a hung Work would take minutes. Why not Lambda's own
    timeout instead: ministack (as AWS) kills a Lambda at its timeout, and a killed Work
    makes no late call; the fence is what stops a Work that outlives its task (a task
    timeout or a StopExecution never kills the Lambda), and that is what this plays.
    """
    sfn = aws.client("stepfunctions")
    original = sfn.describe_state_machine(stateMachineArn=machine)["definition"]
    shortened = json.loads(original)
    shortened["States"]["Work"]["TimeoutSeconds"] = SHORT_TASK_TIMEOUT
    sfn.update_state_machine(stateMachineArn=machine, definition=json.dumps(shortened))
    try:
        yield SHORT_TASK_TIMEOUT
    finally:
        sfn.update_state_machine(stateMachineArn=machine, definition=original)


def hung_work(aws: LocalAWS, machine: str) -> None:
    """+10 OUs (2 calls); the 2nd UpdateMembership hangs (the emulator holds it, then drops it
    unapplied) past Work's TimeoutSeconds. The task times out, AnswerFailure answers FAILED
    once, the rollback takes the fence and restores; the hung Work's Lambda still runs, and
    when its call comes back it makes no further UpdateMembership: fenced out."""
    m = membership(30)
    seeded(aws, m)
    stack = "security-ir-engine-hung-work"
    template = consumer_template()
    created = play(aws, machine, stack, template, values(m, ous(1, 8)))
    assert created.status == "CREATE_COMPLETE", created.summary()
    before = aws.emulator.state(m)
    new_ous = set(ous(9, 18))

    with short_work_timeout(aws, machine) as task_timeout:
        played = play(
            aws,
            machine,
            stack,
            template,
            values(m, ous(1, 18)),
            arm=lambda: aws.emulator.block("UpdateMembership", on_call=2, seconds=BLOCK_SECONDS),
        )
    assert played.status == "UPDATE_ROLLBACK_COMPLETE", played.summary()
    assert_one_answer_and_execution_each(played, [("Update", "FAILED"), ("Update", "SUCCESS")])
    forward, rollback = played.requests
    assert forward.answers[0].at - forward.at < task_timeout + 3
    # What was applied, and that the call in flight when the task timed out may have been
    # (issue 18: an in-flight call is unknown; "nothing lost": a reason never hides one).
    reason = forward.answers[0].reason
    assert "States.Timeout" in reason
    assert "1 of 2" in reason
    assert "unknown" in reason, reason
    # Let the held call come back to the hung Work (dropped, never applied), and give its
    # Lambda time to try again.
    time.sleep(max(0.0, played.began + BLOCK_SECONDS + 2.0 - time.time()))
    calls = [c for c in aws.emulator.calls("UpdateMembership") if c.timestamp >= played.began]
    late = [c for c in calls if c.timestamp >= rollback.at and ou_changes(c)[0] & new_ous]
    assert late == [], "the superseded Work sent an UpdateMembership after the rollback began"
    adding = [c for c in calls if ou_changes(c)[0] & new_ous]
    assert [c.status for c in adding] == [200, None]  # the 1st applied, the 2nd held, dropped
    assert as_declared(aws.emulator.state(m)) == as_declared(before)


def waiting(aws: LocalAWS, execution_arn: str) -> bool:
    """Whether the execution is in its Wait state now (a Work step ended, none runs)."""
    events = aws.client("stepfunctions").get_execution_history(
        executionArn=execution_arn, reverseOrder=True, maxResults=5
    )["events"]
    return bool(events) and events[0]["type"] == "WaitStateEntered"


def stopped_by_hand(aws: LocalAWS, machine: str) -> None:
    """An operator stops a running execution (StopExecution, not a newer request): ministack
    emits the "Step Functions Execution Status Change" event (ABORTED) to the provider's rule,
    the Answer function's safety net answers FAILED once, and the rollback restores.

    Stopped while it waits between two Work steps (after the first applied call), so the
    reason can say exactly what was applied: the step that ended counted its calls. (A stop
    that lands while a step's call is in flight is answered with that call unknown; the
    journal cannot count a call whose answer the step never got to write down.)"""
    m = membership(40)
    seeded(aws, m)
    stack = "security-ir-engine-stopped"
    template = consumer_template()
    created = play(aws, machine, stack, template, values(m, ous(1, 8)))
    assert created.status == "CREATE_COMPLETE", created.summary()
    before = aws.emulator.state(m)
    known = set(executions(aws, machine))
    calls_before = len(aws.emulator.calls("UpdateMembership"))
    stopped: list[str] = []

    def stop_after_the_first_call() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not stopped:
            running = [
                e
                for n, e in executions(aws, machine).items()
                if n not in known and e.status == "RUNNING"
            ]
            if running and len(aws.emulator.calls("UpdateMembership")) > calls_before:
                arn = machine.replace(":stateMachine:", ":execution:") + ":" + running[0].name
                if waiting(aws, arn):
                    aws.client("stepfunctions").stop_execution(
                        executionArn=arn, error="Operator", cause="stopped by hand"
                    )
                    stopped.append(running[0].name)
            time.sleep(0.05)

    def arm() -> None:
        aws.emulator.set_propagation_model("conflict", P)
        threading.Thread(target=stop_after_the_first_call, daemon=True).start()

    played = play(aws, machine, stack, template, values(m, ous(1, 28)), arm=arm)
    aws.emulator.clear_faults()
    assert stopped, "no running execution to stop"
    assert played.status == "UPDATE_ROLLBACK_COMPLETE", played.summary()
    assert answer_problems(played.requests, [("Update", "FAILED"), ("Update", "SUCCESS")]) == []
    forward, rollback = played.requests
    assert played.executions[forward.execution_name].status == "ABORTED"
    # The reason says what happened and what was applied before the stop.
    applied_before = [c for c in played.updates_applied if c.timestamp < rollback.at]
    assert len(applied_before) >= 1
    reason = forward.answers[0].reason
    assert "ABORTED" in reason
    assert f"{len(applied_before)} of 4 UpdateMembership calls were applied;" in reason, reason
    assert "unknown" not in reason, reason
    assert as_declared(aws.emulator.state(m)) == as_declared(before)


#: Every scenario, in the order played: (name, what it plays).
SCENARIOS: tuple[tuple[str, Callable[[LocalAWS, str], None]], ...] = (
    ("lifecycle", lifecycle),
    *(
        (f"plus-20-ous-{name}", functools.partial(plus_20_ous, model=model, retry_after=after))
        for name, model, after in (
            ("conflict-retry-after", "conflict", True),
            ("conflict-stale-reads", "conflict-stale-reads", False),
            ("stale-reads", "stale-reads", False),
        )
    ),
    ("past-its-service-timeout", past_its_service_timeout),
    ("hung-work", hung_work),
    ("stopped-by-hand", stopped_by_hand),
)
#: Plays only the scenarios whose names contain one of these comma-separated words (debugging).
ONLY = "SIR_ENGINE_SCENARIOS"


def test_the_engine_end_to_end(deployed: tuple[LocalAWS, Provider]) -> None:
    """The deployment, then every scenario on it; fails naming each scenario that failed.

    One test, not one per scenario (as the IAM matrix in test_ministack.py): under
    pytest-xdist's worksteal each test may run in another worker, which would start
    ministack, build and deploy again.
    """
    aws, provider = deployed
    machine = provider.state_machine_arn
    assert machine, "the provider stack has no MembershipStateMachine"
    check_the_deployment(aws, provider, machine)
    wanted = [w for w in os.environ.get(ONLY, "").split(",") if w]
    failed: list[str] = []
    for name, scenario in SCENARIOS:
        if wanted and not any(w in name for w in wanted):
            continue
        aws.emulator.reset()
        try:
            scenario(aws, machine)
        except AssertionError as error:
            failed.append(f"--- {name}: {error}")
        finally:
            aws.emulator.clear_faults()
    assert not failed, "\n".join(failed)
