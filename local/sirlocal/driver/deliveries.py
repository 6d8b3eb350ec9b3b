"""What one request to the function produced, and the stack operations built of them.

Why: CloudFormation reads one answer per request (the first accepted PUT
before the ServiceTimeout), whichever invocation made it, and checks it
against the response contract; a delivery records every invocation, task
attempt and PUT of a request, so a test sees all of them, and an operation
records a stack action's deliveries, answers and events.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sirlocal.driver.errors import ContractViolation
from sirlocal.driver.events import MAX_SERVICE_TIMEOUT, response_problems, service_timeout
from sirlocal.driver.workers import KILL_GRACE, Invocation, InvocationResult
from sirlocal.receiver import ReceivedPut, ResponseReceiver


class TaskRecord(Protocol):
    """One task attempt of a request's execution (``sirlocal.states_api.TaskRun``)."""

    @property
    def state(self) -> str:
        """The definition's state (Work, Answer, ...), or SafetyNet."""

    @property
    def attempt(self) -> int:
        """1, then the Retry's attempts."""

    @property
    def outcome(self) -> str | None:
        """None while running, else "ok" or how it ended."""

    @property
    def ran(self) -> bool:
        """Whether the function ran for it."""


class Executions(Protocol):
    """The local Step Functions endpoint, as the driver waits on it (``StatesAPI``).

    A protocol, so the driver does not import ``states_api`` (which starts
    :class:`LambdaWorker` processes: it imports :mod:`.workers`).
    """

    def busy(self, request_id: str | None = None) -> bool:
        """Whether an execution (or a task) of the request still runs."""

    def runs(self, request_id: str | None = None, *, since: float | None = None) -> Sequence[Any]:
        """The request's task attempts (``TaskRecord``)."""

    def kill_running(self, request_id: str, error: str = ...) -> bool:
        """Kill the sandbox of the request's running task."""


@dataclass(frozen=True)
class Answer:
    """The accepted answer to one request, as CloudFormation reads it."""

    status: str
    physical_id: str
    reason: str
    data: dict[str, Any]

    @property
    def ok(self) -> bool:
        """True for SUCCESS."""
        return self.status == "SUCCESS"


@dataclass
class Delivery:
    """One request sent to the function (by one or more workers) and what came back.

    ``results`` are the invocations the driver made (the dispatcher);
    ``task_runs`` the task attempts of the request's execution on the local
    Step Functions endpoint (Work steps, with their retries, the Answer, a
    safety-net delivery). Every PUT to the ResponseURL counts, whichever
    invocation made it.
    """

    event: dict[str, Any]
    path: str
    started: float
    results: list[InvocationResult]
    puts: list[ReceivedPut]
    timeout: float
    expected_answers: int = 1
    service_timeout: float = MAX_SERVICE_TIMEOUT
    task_runs: list[Any] = field(default_factory=list)
    #: A task's sandbox was killed mid-step (``deliver_crashing``).
    retried: bool = False
    #: CloudFormation stopped waiting for this request (a cancelled update's forward
    #: request): no answer is expected, at most one is allowed.
    abandoned: bool = False

    @property
    def accepted(self) -> list[ReceivedPut]:
        """The PUTs the receiver stored (answered 200)."""
        return [p for p in self.puts if p.accepted]

    @property
    def in_time(self) -> list[ReceivedPut]:
        """The accepted PUTs that came before the ServiceTimeout (CloudFormation reads these)."""
        return [p for p in self.accepted if p.time - self.started <= self.service_timeout]

    @property
    def work_steps(self) -> int:
        """Work task invocations that ran for this request (its steps and their retries)."""
        return sum(1 for r in self.task_runs if r.state == "Work" and r.ran)

    @property
    def answer_deadline(self) -> float:
        """Seconds from the start the answer may take: the function timeout when the
        dispatcher answered, the ServiceTimeout once an execution carries the request."""
        return self.service_timeout if self.task_runs or self.retried else self.timeout

    @property
    def answer(self) -> Answer | None:
        """The first accepted answer in time (None: CloudFormation got no answer)."""
        if not self.in_time:
            return None
        body = self.in_time[0].body
        return Answer(
            str(body.get("Status")),
            str(body.get("PhysicalResourceId")),
            str(body.get("Reason") or ""),
            dict(body.get("Data") or {}),
        )

    @property
    def answer_seconds(self) -> float | None:
        """Seconds from the invocation to the first accepted PUT in time."""
        return self.in_time[0].time - self.started if self.in_time else None

    def problems(self) -> list[str]:
        """Contract problems of every accepted answer, and of answering too often."""
        out: list[str] = []
        for put in self.accepted:
            out += response_problems(self.event, put)
        if len(self.accepted) > self.expected_answers:
            out.append(
                f"answered {len(self.accepted)} times for {self.expected_answers} invocation(s)"
            )
        return out


@dataclass(frozen=True)
class StackEvent:
    """One line of ``describe-stack-events``."""

    time: float
    logical_id: str
    resource_type: str
    status: str
    physical_id: str = ""
    reason: str = ""


@dataclass
class Operation:
    """One stack operation (create, update, delete): its deliveries, events and duration."""

    action: str
    stack_status: str = ""
    events: list[StackEvent] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0
    #: For a cancelled update: whether the rollback was delivered while the
    #: forward invocation was still running.
    overlapped: bool | None = None

    @property
    def first_answer(self) -> Answer | None:
        """The answer CloudFormation took for the operation's own request (not its rollback)."""
        return self.answers[0] if self.answers else None

    @property
    def ok(self) -> bool:
        """True when the stack ended in a *_COMPLETE state that is not a rollback."""
        return self.stack_status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE")


def format_events(events: Sequence[StackEvent], *, width: int = 100) -> str:
    """Stack events as a plain-text table, oldest first (CloudFormation's console is newest first)."""
    if not events:
        return "  (no events)"
    origin = events[0].time
    rows = [("t(s)", "Logical id", "Status", "Reason")]
    for e in events:
        rows.append((f"{e.time - origin:5.2f}", e.logical_id, e.status, e.reason))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for row in rows:
        head = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3]))
        reason = row[3]
        room = max(20, width - len(head) - 4)
        if len(reason) > room:
            reason = reason[: room - 3] + "..."
        lines.append(f"  {head}  {reason}".rstrip())
    return "\n".join(lines)


class DeliveryStack(Protocol):
    """What a pending delivery needs of its stack (``StackDriver``).

    A protocol, so this module does not import :mod:`.stack` (which imports it).
    """

    receiver: ResponseReceiver
    states: Executions | None
    #: The function timeout: how long a second answer is still awaited after the first.
    timeout: float
    strict: bool
    deliveries: list[Delivery]


@dataclass
class PendingDelivery:
    """A delivery whose invocations may still be running (see ``StackDriver.begin``)."""

    stack: DeliveryStack
    event: dict[str, Any]
    path: str
    before: int
    started: float
    timeout: float
    invocations: list[Invocation]

    def running(self) -> bool:
        """True while any invocation has not returned, or the request's execution runs."""
        if not all(i.done() for i in self.invocations):
            return True
        states = self.stack.states
        return states is not None and states.busy(str(self.event.get("RequestId", "")))

    def finish(self) -> Delivery:
        """Wait for the first answer and every invocation's end; check the contract.

        When the dispatcher ends without answering while the request's
        execution runs (the driver's ``states`` is busy with this request),
        keep waiting for the answer as CloudFormation does: up to the
        ServiceTimeout from the start.
        """
        stack = self.stack
        self._wait_for_answer()
        results = [i.wait() for i in self.invocations]
        limit = service_timeout(self.event)
        request_id = str(self.event.get("RequestId", ""))
        api = stack.states
        if api is not None:
            self._wait_for_execution(request_id, self.started + limit)
        delivery = Delivery(
            event=self.event,
            path=self.path,
            started=self.started,
            results=results,
            puts=stack.receiver.requests(self.path)[self.before :],
            timeout=self.timeout,
            expected_answers=len(self.invocations),
            service_timeout=limit,
            task_runs=list(api.runs(request_id, since=self.started)) if api else [],
        )
        stack.deliveries.append(delivery)
        if stack.strict:
            problems = delivery.problems()
            if problems:
                raise ContractViolation(problems)
        return delivery

    def _wait_for_answer(self) -> None:
        """Wait for the first accepted PUT (receiver.wait_for) while any invocation runs."""
        receiver, path, before = self.stack.receiver, self.path, self.before
        while True:
            if before == 0:
                with contextlib.suppress(TimeoutError):
                    receiver.wait_for(path, timeout=0.05)
                    return
            elif any(p.accepted for p in receiver.requests(path)[before:]):
                return
            else:
                time.sleep(0.02)
            if all(i.done() or time.time() > i.deadline + KILL_GRACE for i in self.invocations):
                return

    def _wait_for_execution(self, request_id: str, deadline: float) -> None:
        """Wait while the execution of ``request_id`` (or a task of it) runs.

        Until the first accepted PUT, up to ``deadline`` (epoch seconds: the
        ServiceTimeout); after it, for one more function timeout at most, so
        a second answer (a safety net's) is still seen (and counted). Returns
        at once when nothing runs for the request: no answer can come.
        """
        api = self.stack.states
        assert api is not None
        receiver, path, before = self.stack.receiver, self.path, self.before
        answered: float | None = None
        while time.time() < deadline and api.busy(request_id):
            if answered is None and any(p.accepted for p in receiver.requests(path)[before:]):
                answered = time.time()
            if answered is not None and time.time() > answered + self.stack.timeout + KILL_GRACE:
                return
            time.sleep(0.02)
