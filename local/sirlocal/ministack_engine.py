"""The Step Functions engine on ministack: what one stack operation did, end to end.

Why: the engine (issue 18) promises one execution and one answer per
CloudFormation request, a membership exact after every operation and
rollback, and no write by a request that lost its resource's generation
fence. On ministack all of that runs for real: CloudFormation sends the
requests, the dispatcher starts executions, Step Functions runs Work, Wait
and Answer, the answer is PUT to ministack's ResponseURL. This module plays
one operation and gathers what each of them saw: the stack events
(``DescribeStackEvents``), every request and answer PUT (logged by the
launcher, ``ministack_contexts.record_requests``), the executions
(``ListExecutions``) and the security-ir calls (the emulator's records).

Local-only settings (:data:`ENGINE_ENV`) reach the functions through
ministack's process environment, never through the template.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sirlocal import stack_ops
from sirlocal.emulator.faults import CallRecord
from sirlocal.ministack import LocalAWS
from sirlocal.ministack_changesets import REMOVES_OUS
from sirlocal.ministack_demo import EXAMPLE

#: ministack's and the functions' local-only settings for the engine suite (ministack's
#: process environment; every Lambda process inherits it).
ENGINE_ENV: Mapping[str, str] = {
    # Wait states and Retry intervals at their declared length: the emulator's propagation
    # windows are real seconds, so a shortened Wait would only come back before the window
    # closes and be refused again. The suite shortens P (1 s) instead.
    "SFN_WAIT_SCALE": "1",
    # A wait the service asks for longer than this ends the Work step and becomes a Wait
    # state (production: 5 s). At P = 1 s every propagation wait is then a Wait state, as
    # it is in production from P = 5 s: the suite plays the engine's waiting, not a sleep.
    "SIR_TIMING_LONGEST_SLEEP": "0.5",
    # The emulator's reads are never stale past P (1 s): a rollback after a call of
    # unknown outcome waits 10 s for fresh reads, not production's 120 s.
    "SIR_TIMING_STALE_READ_GRACE": "10",
}

#: The states an execution has ended in.
CLOSED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def execution_name(stack_id: str, logical_id: str, request_id: str, attempt: int = 1) -> str:
    """The engine's execution name for a request (ENGINE-SPEC: sha256 of the three ids
    joined by a newline, 64 hex, ``-<attempt>`` after the first attempt). Written here
    from the spec, not imported, so the suite checks the dispatcher against it."""
    digest = hashlib.sha256("\n".join((stack_id, logical_id, request_id)).encode()).hexdigest()
    return digest if attempt == 1 else f"{digest}-{attempt}"


def consumer_template(*, service_timeout: int = 3600, remove_ous_on_delete: bool = True) -> str:
    """examples/membership.yaml as the engine suite declares it.

    ``remove_ous_on_delete``: ``DeletionPolicy: Delete`` and ``OnDelete:
    RemoveOrganizationalUnits`` (the shipped example retains, so deleting its
    stack sends no request at all); ``service_timeout`` replaces the
    example's 3600.
    """
    text = EXAMPLE.read_text(encoding="utf-8")
    if remove_ous_on_delete:
        text = REMOVES_OUS(text)
    marker = "ServiceTimeout: 3600"
    if marker not in text:
        raise ValueError(f"{EXAMPLE.name} no longer declares {marker!r}")
    return text.replace(marker, f"ServiceTimeout: {service_timeout}", 1)


@dataclass(frozen=True)
class Answer:
    """One PUT to a request's ResponseURL, as ministack received it."""

    at: float
    status: str
    request_id: str
    reason: str
    #: False when CloudFormation had stopped waiting (ministack drops such a PUT).
    known: bool
    physical_id: str = ""


@dataclass(frozen=True)
class Request:
    """One custom resource request ministack's CloudFormation sent, and what came of it."""

    token: str
    request_type: str
    logical_id: str
    stack_id: str
    service_timeout: str
    at: float
    answers: tuple[Answer, ...] = ()
    #: ``answered``, ``failed`` (answered FAILED), ``timed-out`` (CloudFormation gave up)
    #: or "" while it is still waiting.
    settled: str = ""
    settled_at: float | None = None

    @property
    def request_id(self) -> str:
        """The RequestId, as the answer carries it ("" before any answer)."""
        return self.answers[0].request_id if self.answers else ""

    @property
    def execution_name(self) -> str:
        """The execution the dispatcher must have started for it (see :func:`execution_name`)."""
        return execution_name(self.stack_id, self.logical_id, self.request_id)


def requests_of(records: Sequence[Mapping[str, Any]]) -> list[Request]:
    """The launcher's log as requests, each with its answers and settlement, in order (pure)."""
    by_token: dict[str, dict[str, Any]] = {}
    for record in records:
        token = str(record["token"])
        if record["kind"] == "request":
            by_token[token] = {
                "token": token,
                "request_type": str(record.get("requestType", "")),
                "logical_id": str(record.get("logicalId", "")),
                "stack_id": str(record.get("stackId", "")),
                "service_timeout": str(record.get("serviceTimeout", "")),
                "at": float(record["t"]),
                "answers": [],
            }
            continue
        entry = by_token.get(token)
        if entry is None:
            continue
        if record["kind"] == "answer":
            entry["answers"].append(
                Answer(
                    float(record["t"]),
                    str(record["status"]),
                    str(record["requestId"]),
                    str(record.get("reason", "")),
                    bool(record["known"]),
                    str(record.get("physicalId", "")),
                )
            )
        elif record["kind"] == "settled":
            entry["settled"] = str(record["settled"])
            entry["settled_at"] = float(record["t"])
    return [Request(**{**e, "answers": tuple(e["answers"])}) for e in by_token.values()]


def answer_problems(requests: Sequence[Request], expected: Sequence[tuple[str, str]]) -> list[str]:
    """How the requests differ from one answer each, of ``expected`` (type, status), in order."""
    problems = []
    seen = [(r.request_type, r.answers[0].status if r.answers else "") for r in requests]
    if seen != list(expected):
        problems.append(f"requests and first answers {seen}, expected {list(expected)}")
    for r in requests:
        if len(r.answers) != 1:
            statuses = [a.status for a in r.answers]
            problems.append(f"{r.request_type} answered {len(r.answers)} times: {statuses}")
        if any(not a.known for a in r.answers):
            problems.append(f"{r.request_type} answered after CloudFormation stopped waiting")
    return problems


@dataclass(frozen=True)
class Execution:
    """One execution of the engine's state machine."""

    name: str
    status: str
    started: Any
    stopped: Any


def executions(aws: LocalAWS, state_machine_arn: str) -> dict[str, Execution]:
    """Every execution of the state machine, by name."""
    sfn = aws.client("stepfunctions")
    found: dict[str, Execution] = {}
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        for e in page["executions"]:
            found[e["name"]] = Execution(
                e["name"], e["status"], e.get("startDate"), e.get("stopDate")
            )
    return found


def wait_closed(
    aws: LocalAWS,
    state_machine_arn: str,
    names: Sequence[str],
    timeout: float = 30.0,
    absent: float = 2.0,
) -> dict[str, Execution]:
    """Wait until each named execution has ended (one still RUNNING a moment after it
    answered is normal: the answer is its last task); returns them all. A name with no
    execution after ``absent`` seconds is not waited for (the dispatcher answered that
    request itself, or never started one: the caller's check says which)."""
    began = time.monotonic()
    while True:
        found = executions(aws, state_machine_arn)
        waited = time.monotonic() - began
        pending = [
            n
            for n in names
            if (n in found and found[n].status not in CLOSED)
            or (n not in found and waited < absent)
        ]
        if not pending or waited > timeout:
            return found
        time.sleep(0.1)


def applied(calls: Sequence[CallRecord], operation: str = "UpdateMembership") -> list[CallRecord]:
    """The calls of ``operation`` the emulator applied (answered 200; refusals and drops aside)."""
    return [c for c in calls if c.operation == operation and c.status == 200 and c.error is None]


def ou_changes(call: CallRecord) -> tuple[frozenset[str], frozenset[str]]:
    """The OUs an UpdateMembership call adds and removes."""
    update = call.request.get("membershipAccountsConfigurationsUpdate") or {}
    return (
        frozenset(update.get("organizationalUnitsToAdd") or ()),
        frozenset(update.get("organizationalUnitsToRemove") or ()),
    )


@dataclass(frozen=True)
class Played:
    """One stack operation on ministack, and everything it caused."""

    outcome: stack_ops.Outcome
    stack_id: str
    #: This stack's requests during the operation, in order (each with its answers).
    requests: tuple[Request, ...]
    #: The emulator's records of the calls made during the operation.
    calls: tuple[CallRecord, ...]
    #: The executions started for this operation's requests, by name.
    executions: Mapping[str, Execution] = field(default_factory=dict)
    began: float = 0.0

    @property
    def status(self) -> str:
        """The stack's status once the operation settled."""
        return self.outcome.stack_status

    @property
    def updates_applied(self) -> list[CallRecord]:
        """UpdateMembership calls the emulator applied during the operation."""
        return applied(self.calls)

    def summary(self) -> str:
        """What happened, for an assertion's message: status, reasons, answers, executions."""
        lines = [f"stack {self.status} in {self.outcome.seconds:.1f} s"]
        lines += [f"  event reason: {r}" for r in self.outcome.reasons()]
        for request in self.requests:
            answers = [(a.status, round(a.at - request.at, 1), a.reason) for a in request.answers]
            execution = self.executions.get(request.execution_name)
            lines.append(
                f"  {request.request_type} (ServiceTimeout {request.service_timeout}): "
                f"answers {answers}, settled {request.settled or '-'}, "
                f"execution {execution.status if execution else 'none'}"
            )
        lines.append(f"  UpdateMembership applied: {len(self.updates_applied)}")
        return "\n".join(lines)

    def execution_problems(self) -> list[str]:
        """How the executions differ from one per request, named as the spec says, all ended."""
        problems = []
        for request in self.requests:
            execution = self.executions.get(request.execution_name)
            if execution is None:
                problems.append(f"{request.request_type}: no execution named for its RequestId")
            elif execution.status not in CLOSED:
                problems.append(f"{request.request_type}: execution still {execution.status}")
        return problems


def play(
    aws: LocalAWS,
    state_machine_arn: str,
    stack_name: str,
    template: str | None,
    values: Mapping[str, str] | None = None,
    *,
    arm: Callable[[], object] | None = None,
    change_set_name: str = "change",
    continue_rollback: bool = False,
) -> Played:
    """Create or update ``stack_name`` through a change set (``template`` None: delete it,
    or with ``continue_rollback``, continue its failed rollback) and gather what the
    operation caused. ``arm`` runs just before it starts (faults)."""
    cfn = aws.client("cloudformation")
    known_calls = len(aws.emulator.calls())
    known_records = len(aws.cfn_records())
    began = time.time()
    if template is None:
        stack_id = stack_ops.stack_id(cfn, stack_name) or stack_name
        if arm is not None:
            arm()
        if continue_rollback:
            outcome = stack_ops.continue_update_rollback(cfn, stack_name)
        else:
            outcome = stack_ops.delete_stack(cfn, stack_name)
    else:
        described = stack_ops.create_change_set(
            cfn,
            stack_name=stack_name,
            change_set_name=f"{change_set_name}-{int(began * 1000)}",
            template_body=template,
            values=values or {},
        )
        stack_id = str(described["StackId"])
        if arm is not None:
            arm()
        outcome = stack_ops.execute_change_set(cfn, described)
    records = aws.cfn_records()[known_records:]
    mine = tuple(r for r in requests_of(records) if r.stack_id == stack_id)
    names = [r.execution_name for r in mine if r.answers]
    found = wait_closed(aws, state_machine_arn, names) if state_machine_arn else {}
    return Played(
        outcome,
        stack_id,
        mine,
        tuple(aws.emulator.calls()[known_calls:]),
        {n: found[n] for n in names if n in found},
        began,
    )
