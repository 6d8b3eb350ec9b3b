"""The end-to-end scenarios ministack can play, played on ministack.

Why: a scenario played by the project's own CloudFormation driver agrees
with the code partly because the same people wrote both. Every scenario
whose steps a third-party engine can play runs on ministack instead:
its CloudFormation creates, updates and deletes a stack holding the
scenario's declaration (and, for "a later resource fails", a resource that
fails after it), the deployed provider (dispatcher, Step Functions, Work
and Answer, IAM enforced) does the work, and the same expectations are
checked from what ministack and the emulator saw: the stack statuses, each
request's one answer and its reason, the membership's final state, the
exact security-ir calls, and the functions' CloudWatch logs free of
sensitive values and of the ResponseURL.

:func:`stand_in_reason` says, in one line, why a scenario needs the
project's stand-ins instead (a fault ministack has no hook for, a check
only the driver can make); ``docs/reliability.md`` shows it per scenario.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sirlocal import stack_ops
from sirlocal.fixtures import (
    ALIASES,
    log_leaks,
    sensitive_values,
    state_problems,
)
from sirlocal.ministack import ACCOUNT_ID, LocalAWS
from sirlocal.ministack_deploy import Provider
from sirlocal.ministack_engine import Played, play
from sirlocal.scenarios import Scenario, ScenarioResult, Step

#: The stand-ins' function timeout the scenarios are written for (``Scenario.timeout``).
DRIVER_TIMEOUT = 30.0
#: Declared on the scenario's resource unless it declares its own: long enough for every
#: scenario played here, short enough that a request nobody answers fails the run in minutes.
SERVICE_TIMEOUT = 300
#: ministack's ResponseURL path: never in a function's log (the URL is the answer's key).
RESPONSE_PATH = "/_ministack/cfn-response/"
#: A resource that fails when created (its ServiceToken names no function): "a later
#: resource of the stack failed", played by a real engine.
LATER_FAILURE_TOKEN = f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:does-not-exist"


def _step_reason(step: Step) -> str:
    if step.action == "cold":
        return (
            "starts a cold sandbox on demand: ministack offers no way to recycle a Lambda process"
        )
    if step.action == "cancel_update":
        return (
            "cancels an update while its request runs: ministack's CancelUpdateStack takes "
            "effect between resources"
        )
    if step.crash_after_writes or any(f.kind.startswith("invoke_") for f in step.faults):
        return "kills, refuses or loses a Work step: ministack offers no hook into a running task"
    if any(f.kind.startswith("put_") for f in step.faults):
        return "fails the response PUT: ministack's ResponseURL is its own endpoint, no fault hook"
    if step.before is not None or step.after_answer is not None:
        return "changes state between requests through the stand-ins' hooks"
    if step.work_steps is not None or step.min_work_steps:
        return "counts the request's Work steps, which the driver's Step Functions stand-in records"
    if step.action == "create" and not step.later_failure and _fails(step):
        return "a failed Create's rollback: ministack sends no Delete to the resource it failed"
    return ""


def _fails(step: Step) -> bool:
    return step.answer_status == "FAILED" or step.expect == "ROLLBACK_COMPLETE"


def stand_in_reason(scenario: Scenario) -> str:
    """Why ``scenario`` runs on the project's stand-ins, in one line; "" when ministack
    plays it (pure: decided from the scenario's data)."""
    if scenario.custom is not None:
        return "checks what only the driver records (each delivery, answer PUT or task attempt)"
    if scenario.prepare is not None:
        return "sets emulator state the seed format cannot express, through its internals"
    if scenario.timing_scale != 1.0 or scenario.timeout != DRIVER_TIMEOUT:
        return (
            "plays a function timeout of its own (and reserves to match): ministack runs the "
            "deployed one, with one environment for every Lambda process"
        )
    if not scenario.strict:
        return "expects a request left unanswered, which only the driver's deadline measures"
    for step in scenario.steps:
        reason = _step_reason(step)
        if reason:
            return reason
    return ""


def on_ministack(scenarios: Sequence[Scenario]) -> list[Scenario]:
    """The scenarios ministack plays, in their order."""
    return [s for s in scenarios if not stand_in_reason(s)]


def stack_template(
    properties: Mapping[str, Any], *, service_token: str, later_failure: str | None = None
) -> str:
    """A stack holding one ``Custom::SecurityIRMembership`` declared as ``properties``;
    with ``later_failure``, a resource created after it that fails (the stack rolls back)."""
    declared = {"ServiceTimeout": SERVICE_TIMEOUT, **properties, "ServiceToken": service_token}
    resources: dict[str, Any] = {
        "Membership": {"Type": "Custom::SecurityIRMembership", "Properties": declared}
    }
    if later_failure:
        resources["LaterResource"] = {
            "Type": "Custom::LaterResource",
            "DependsOn": "Membership",
            "Properties": {"ServiceToken": LATER_FAILURE_TOKEN},
        }
    return json.dumps({"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources})


def forget_paces(dynamodb: Any, table_name: str) -> None:
    """Drop the memberships' learned paces (``pace#`` items): each scenario starts from
    memberships with no history, as it does on the stand-ins."""
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=table_name, ProjectionExpression="id"
    ):
        for item in page["Items"]:
            if item["id"]["S"].startswith("pace#"):
                dynamodb.delete_item(TableName=table_name, Key={"id": item["id"]})


def answer_problems(step: Step, played: Played) -> list[str]:
    """How the operation's first answer differs from what ``step`` expects (pure)."""
    first = (
        played.requests[0].answers[0] if played.requests and played.requests[0].answers else None
    )
    status, reason = (first.status, first.reason) if first is not None else (None, "")
    label, out = step.action, []
    if step.answer_status and status != step.answer_status:
        out.append(f"{label}: answered {status}, expected {step.answer_status}: {reason[:200]!r}")
    out += [f"{label}: reason lacks {t!r}: {reason!r}" for t in step.reason_has if t not in reason]
    out += [f"{label}: reason holds {t!r}: {reason!r}" for t in step.reason_lacks if t in reason]
    if step.reason_starts and not reason.startswith(step.reason_starts):
        out.append(f"{label}: reason does not start with {step.reason_starts!r}: {reason[:200]!r}")
    if step.reason_ends and not reason.endswith(step.reason_ends):
        out.append(f"{label}: reason does not end with {step.reason_ends!r}: ...{reason[-200:]!r}")
    physical = first.physical_id if first is not None else ""
    if step.physical_has and step.physical_has not in physical:
        out.append(f"{label}: physical id {physical!r} lacks {step.physical_has!r}")
    return out


def delivery_problems(step: Step, played: Played) -> list[str]:
    """Each request answered once, while CloudFormation waited, within the step's bound,
    by an execution that ended SUCCEEDED (pure)."""
    out = []
    for request in played.requests:
        kind = request.request_type
        if len(request.answers) != 1:
            out.append(f"{kind}: answered {len(request.answers)} times")
        if any(not a.known for a in request.answers):
            out.append(f"{kind}: answered after CloudFormation stopped waiting")
        if request.answers and step.answer_within is not None:
            seconds = request.answers[0].at - request.at
            if seconds >= step.answer_within:
                out.append(
                    f"{kind}: answered after {seconds:.1f} s, expected < {step.answer_within:g} s"
                )
        execution = played.executions.get(request.execution_name)
        if execution is not None and execution.status != "SUCCEEDED":
            out.append(f"{kind}: its execution ended {execution.status}")
    return out


def _play_step(
    aws: LocalAWS, provider: Provider, stack_name: str, step: Step
) -> tuple[Played, list[str]]:
    reason = _step_reason(step)
    if reason:
        raise ValueError(f"ministack cannot play this {step.action}: {reason}")

    def armed() -> None:
        for fault in step.faults:
            fault.arm_emulator(aws.emulator)

    try:
        if step.action in ("delete", "continue_rollback"):
            played = play(
                aws,
                provider.state_machine_arn,
                stack_name,
                None,
                arm=armed,
                continue_rollback=step.action == "continue_rollback",
            )
        else:
            assert step.properties is not None
            template = stack_template(
                step.properties,
                service_token=provider.service_token,
                later_failure=step.later_failure,
            )
            played = play(aws, provider.state_machine_arn, stack_name, template, arm=armed)
    finally:
        aws.emulator.clear_faults()
    problems = []
    if step.expect and played.status != step.expect:
        problems.append(f"{step.action}: stack is {played.status}, expected {step.expect}")
    return played, problems + answer_problems(step, played) + delivery_problems(step, played)


def function_logs(aws: LocalAWS, since: float) -> str:
    """Every line the provider's functions logged since ``since`` (epoch seconds)."""
    logs = aws.client("logs")
    lines = []
    for page in logs.get_paginator("describe_log_groups").paginate():
        for group in page["logGroups"]:
            for events in logs.get_paginator("filter_log_events").paginate(
                logGroupName=group["logGroupName"], startTime=int(since * 1000)
            ):
                lines += [str(e.get("message", "")) for e in events["events"]]
    return "\n".join(lines)


def run_on_ministack(
    scenario: Scenario, aws: LocalAWS, provider: Provider, *, stack_name: str = ""
) -> ScenarioResult:
    """Play ``scenario`` on ministack from a fresh emulator; every broken expectation is
    in ``problems``. Raises ValueError for a scenario :func:`stand_in_reason` keeps off it."""
    reason = stand_in_reason(scenario)
    if reason:
        raise ValueError(f"{scenario.name} cannot run on ministack: {reason}")
    cfn = aws.client("cloudformation")
    stack_name = stack_name or f"security-ir-e2e-{scenario.name}"
    if stack_ops.stack_id(cfn, stack_name):  # left by an earlier run of the same scenario
        stack_ops.delete_stack(cfn, stack_name)
    aws.emulator.reset()
    aws.emulator.seed_many([{**s, "accountId": ACCOUNT_ID} for s in scenario.seeds])
    forget_paces(aws.client("dynamodb"), provider.outputs["IdempotencyTableName"])
    began_wall, began = time.time(), time.monotonic()
    problems: list[str] = []
    statuses: list[str] = []
    answers: list[float] = []
    # The stack is left as the last step leaves it (as on the stand-ins, nothing deletes it
    # unless a step does): a Delete now would change the state the scenario checks.
    for step in scenario.steps:
        played, found = _play_step(aws, provider, stack_name, step)
        statuses.append(played.status)
        problems += found
        answers += [r.answers[0].at - r.at for r in played.requests if r.answers]
    seconds = time.monotonic() - began
    final_problems = [
        problem
        for membership_id, expect in scenario.final.items()
        for problem in state_problems(
            aws.emulator.state(membership_id), expect, ALIASES.get(membership_id, membership_id)
        )
    ]
    calls = [c for c in aws.emulator.calls() if c.timestamp >= began_wall]
    call_problems = scenario.call_problems(calls)
    calls_ok = not call_problems
    problems += call_problems
    logs = function_logs(aws, began_wall)
    if not logs.strip():  # else the checks below would hold of nothing
        problems.append("the functions logged nothing: the logs cannot be checked")
    secrets = sensitive_values(scenario.seeds, [s.properties for s in scenario.steps])
    problems += log_leaks(logs, secrets, ())
    if RESPONSE_PATH in logs:
        problems.append("log holds a ResponseURL")
    updates = [c for c in calls if c.operation == "UpdateMembership"]
    return ScenarioResult(
        name=scenario.name,
        group=scenario.group,
        title=scenario.title,
        faults=scenario.faults,
        outcome=" > ".join(statuses) or "-",
        writes=sum(1 for c in updates if c.status == 200),
        write_attempts=len(updates),
        final_ok=not final_problems,
        calls_ok=calls_ok,
        problems=tuple(problems + final_problems),
        seconds=seconds,
        slowest_answer=max(answers, default=0.0),
        known_issue=scenario.known_issue,
        reliability_only=scenario.reliability_only,
    )
