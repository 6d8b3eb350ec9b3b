"""End-to-end scenarios as data, shared by ``tests/e2e`` and ``sirlocal.reliability``.

Why: a reliability claim is only as good as the runs behind it. Each
:class:`Scenario` says what is seeded in the emulator, which stack
operations run (with which faults armed), and what must hold afterwards:
the stack statuses, the membership's final state, and the exact list of
security-ir calls. :func:`run_scenario` plays it through the real handler
(:mod:`sirlocal.driver`) and returns every broken expectation, so the tests
assert on it and the reliability report tabulates it from the same source.

Every run also checks, whatever the scenario: each answer honours the
response contract and arrives before the invocation's deadline (the
ServiceTimeout, once the request's execution carries it on the local Step
Functions endpoint, see :mod:`sirlocal.states_api`), every task of the
execution ends as Lambda would report success (unless the scenario breaks
it on purpose), and the functions' logs (the dispatcher's and the tasks')
hold no responder name, email, job title, membership name or ResponseURL
query/signature.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from sirlocal.driver import (
    Answer,
    ContractViolation,
    Delivery,
    LambdaWorker,
    Operation,
    StackDriver,
    WorkerPool,
    cfn_properties,
)
from sirlocal.emulator import CallRecord
from sirlocal.fixtures import (  # noqa: F401 - re-exported: scenarios.X keeps working
    ALIASES,
    FOREIGN,
    NAMES,
    PEOPLE,
    A,
    B,
    C,
    Expect,
    api_team,
    call_summary,
    declare,
    log_leaks,
    mask,
    ou,
    ous,
    seed,
    sensitive_values,
    state_problems,
    team,
)
from sirlocal.reliability_table import SlowTable
from sirlocal.services import LocalServices, free_port

# Fixtures as data (memberships, people, OU ids) and the checks on them: sirlocal.fixtures.

# --------------------------------------------------------------------------- scenario model


@dataclass(frozen=True)
class Fault:
    """One fault armed right before a step (emulator, receiver or Step Functions side).

    On the request's execution (``sirlocal.states_api``): ``invoke_error``:
    the next ``times`` Invokes of the Work task are refused with ``error``
    (default ``Lambda.TooManyRequestsException``; the definition's Retry
    decides); ``invoke_kill``: the sandbox of each of the next ``times`` Work
    steps is killed ``seconds`` after it began (``error``, default
    ``Lambda.ServiceException``: retried); ``invoke_drop``: the next
    ``times`` Work steps run, but their result is lost (retried).
    """

    kind: Literal[
        "error",
        "reset",
        "hang",
        "lost",
        "block",
        "propagation",
        "model",
        "put_status",
        "put_reset",
        "put_hang",
        "invoke_error",
        "invoke_kill",
        "invoke_drop",
    ]
    operation: str = "*"
    on_call: int = 1
    times: int | None = 1
    error: str | None = None
    seconds: float = 0.0
    status: int = 500
    #: For ``kind="model"``: the emulator's propagation model, P = ``seconds``.
    model: str = ""
    retry_after: bool = False

    def arm(self, services: LocalServices) -> None:
        """Arm it."""
        emulator, receiver = services.emulator, services.receiver
        if self.kind == "propagation":
            emulator.set_propagation(calls=self.times)
        elif self.kind == "model":
            emulator.set_propagation_model(self.model, self.seconds, retry_after=self.retry_after)
        elif self.kind == "put_status":
            receiver.fail_next(self.status, self.times or 1)
        elif self.kind == "put_reset":
            receiver.reset_next(self.times or 1)
        elif self.kind == "put_hang":
            receiver.hang_next(self.seconds, self.times or 1)
        elif self.kind == "invoke_error":
            services.states.fail_next(
                self.times or 1, self.error or "Lambda.TooManyRequestsException"
            )
        elif self.kind == "invoke_kill":
            services.states.kill_next_after(
                self.seconds, self.times or 1, error=self.error or "Lambda.ServiceException"
            )
        elif self.kind == "invoke_drop":
            services.states.lose_next(self.times or 1)
        else:
            emulator.add_fault(
                self.kind,
                self.operation,
                on_call=self.on_call,
                times=self.times,
                seconds=self.seconds,
                error=self.error,
            )

    def describe(self) -> str:
        """A short human description."""
        op = self.operation.replace("Membership", "") if self.operation != "*" else "any call"
        nth = "" if self.on_call == 1 else f" from call #{self.on_call}"
        times = "always" if self.times is None else f"x{self.times}"
        if self.kind == "error":
            return f"{self.error} on {op}{nth} {times}"
        if self.kind == "reset":
            return f"TCP reset on {op}{nth} {times}"
        if self.kind == "hang":
            return f"{op}{nth} hangs {self.seconds:g} s"
        if self.kind == "lost":
            return f"{op}{nth} applied but answered {self.error or 'InternalServerException'}"
        if self.kind == "block":
            return f"{op}{nth} held in flight, never applied"
        if self.kind == "propagation":
            return f"Conflict x{self.times} after each OU change"
        if self.kind == "model":
            after = ", with Retry-After" if self.retry_after else ""
            return f"propagation model {self.model}, P = {self.seconds:g} s{after}"
        if self.kind == "put_status":
            return f"response PUT answered {self.status} {times}"
        if self.kind == "put_hang":
            return f"response PUT unanswered for {self.seconds:g} s {times}"
        if self.kind == "invoke_error":
            error = self.error or "Lambda.TooManyRequestsException"
            return f"Work's Invoke refused ({error}) {times}"
        if self.kind == "invoke_kill":
            return f"Work's sandbox killed after {self.seconds:g} s {times}"
        if self.kind == "invoke_drop":
            return f"Work's result lost {times}"
        return f"response PUT reset {times}"


@dataclass(frozen=True)
class Step:
    """One stack operation (or ``cold``: the next invocation starts a new worker).

    ``cancel_update``: the update is cancelled once ``cancel_after_writes``
    UpdateMembership calls were answered and ``cancel_after_seconds`` passed,
    and its rollback is delivered to a second worker while the forward
    invocation still runs.
    """

    action: Literal["create", "update", "cancel_update", "continue_rollback", "delete", "cold"]
    properties: Mapping[str, Any] | None = None
    expect: str = ""  # the stack status afterwards
    faults: tuple[Fault, ...] = ()
    later_failure: str | None = None
    answer_status: str = ""  # the status of the operation's first answer (SUCCESS, FAILED)
    reason_has: tuple[str, ...] = ()  # in the reason of the operation's first answer
    reason_lacks: tuple[str, ...] = ()  # never in that reason
    reason_starts: str = ""  # that reason starts with this
    reason_ends: str = ""  # and ends with this
    physical_has: str = ""  # in the physical id of the operation's first answer
    answer_within: float | None = None  # seconds, for every answer of this step
    #: The Work steps (with their retries) the operation's own request took; it must
    #: also have been answered exactly once.
    work_steps: int | None = None
    cancel_after_writes: int = 1
    cancel_after_seconds: float = 0.0
    #: An update's Work sandbox dies once this many UpdateMembership calls were
    #: answered: the next one is held in flight (a ``block`` fault, never applied) and
    #: the sandbox killed; the task sees ``crash_error`` (a Lambda service error is
    #: retried by the definition: the step runs again).
    crash_after_writes: int = 0
    crash_error: str = "Lambda.ServiceException"
    #: Runs once the operation's own request is answered, before anything CloudFormation
    #: sends next (its rollback): e.g. the step's faults end, another request finishes.
    after_answer: Callable[[LocalServices], None] | None = None
    #: Runs right before the step (state a fault cannot express, e.g. in the table).
    before: Callable[[LocalServices], None] | None = None


@dataclass
class Run:
    """A scenario being played: the services, the stack, and the problems found."""

    scenario: Scenario
    services: LocalServices
    pool: WorkerPool
    stack: StackDriver
    started: float
    problems: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    extra_logs: list[str] = field(default_factory=list)  # from workers outside the pool
    extra_urls: list[str] = field(default_factory=list)  # ResponseURLs of other stacks

    def expect(self, condition: bool, message: str) -> None:
        """Record ``message`` as a problem unless ``condition``."""
        if not condition:
            self.problems.append(message)

    def calls(self) -> list[CallRecord]:
        """The security-ir calls made since the scenario started."""
        return [c for c in self.services.emulator.calls() if c.timestamp >= self.started]


@dataclass(frozen=True)
class Scenario:
    """A named stack story with its faults and expectations."""

    name: str
    group: str
    title: str
    seeds: tuple[Mapping[str, Any], ...]
    steps: tuple[Step, ...] = ()
    final: Mapping[str, Expect] = field(default_factory=dict)
    calls: tuple[str, ...] | None = None
    timeout: float = 30.0
    strict: bool = True
    custom: Callable[[Run], None] | None = None
    custom_faults: str = ""
    #: Runs right after the seeds are loaded (state the seed format cannot express).
    prepare: Callable[[LocalServices], None] | None = None
    #: Set when the expectations describe the intended behaviour that the handler
    #: does not have yet (see the text); tests mark the scenario xfail(strict).
    known_issue: str = ""
    #: Set (to the reason) when the scenario waits real seconds by design: it runs in
    #: ``make reliability`` only, not in ``make test`` (tests/e2e), which keeps a faster
    #: scenario of the same behaviour (the reason names it).
    reliability_only: str = ""
    #: The function's reserves and client timeouts at this scale (``scaled_timing``), on a
    #: worker of its own with ``timeout``: the same decisions in fewer real seconds.
    timing_scale: float = 1.0

    @property
    def faults(self) -> str:
        """Every fault injected, described."""
        described = [f.describe() for s in self.steps for f in s.faults]
        for step in self.steps:
            if step.crash_after_writes:
                described.append(
                    f"Work's sandbox killed after {step.crash_after_writes} UpdateMembership "
                    f"call(s) ({step.crash_error})"
                )
            if step.action == "cancel_update":
                described.append(
                    f"update cancelled after {step.cancel_after_writes} write(s)"
                    + (f" and {step.cancel_after_seconds:g} s" if step.cancel_after_seconds else "")
                    + ", rollback on a 2nd worker at once"
                )
        if self.custom_faults:
            described.append(self.custom_faults)
        return "; ".join(described) or "none"


@dataclass(frozen=True)
class ScenarioResult:
    """How a scenario went."""

    name: str
    group: str
    title: str
    faults: str
    outcome: str
    writes: int
    write_attempts: int
    final_ok: bool
    calls_ok: bool
    problems: tuple[str, ...]
    seconds: float
    slowest_answer: float
    known_issue: str = ""
    reliability_only: str = ""

    @property
    def ok(self) -> bool:
        """True when every expectation held."""
        return not self.problems


# --------------------------------------------------------------------------- checks
def configure_tasks(
    services: LocalServices,
    pool: WorkerPool,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run the execution's tasks (Work, Answer) as the pool's workers run the dispatcher:
    the same interpreter, the same environment unless ``env`` (another package: the
    built tasks' own), and the function timeout ``timeout``."""
    services.states.configure(env=dict(env or pool.env), timeout=timeout, python=pool.python)


def _check_deliveries(run: Run, deliveries: Sequence[Delivery], step: Step | None) -> None:
    for delivery in deliveries:
        seconds = delivery.answer_seconds
        kind = delivery.event["RequestType"]
        # What the scenario breaks on purpose ends as broken: a killed sandbox, a
        # refused Invoke, a lost result (the definition retries or catches them).
        # A task whose execution a newer request stopped ran on ("stopped"), as on AWS.
        broken = {
            {"invoke_kill": "killed", "invoke_error": "refused", "invoke_drop": "lost"}[f.kind]
            for s in run.scenario.steps
            for f in s.faults
            if f.kind.startswith("invoke_")
        } | {"ok", None, "stopped"}
        if any(s.crash_after_writes for s in run.scenario.steps):
            broken.add("killed")
        # The Answer task fails when its PUT fails; the definition retries it.
        answer_broken = any(f.kind.startswith("put_") for s in run.scenario.steps for f in s.faults)
        for attempt in delivery.task_runs:
            run.expect(
                attempt.outcome in broken
                or (
                    answer_broken and attempt.state == "Answer" and attempt.outcome == "TaskFailed"
                ),
                f"{kind}: task {attempt.state} (attempt {attempt.attempt}) ended {attempt.outcome}",
            )
        if seconds is None:
            if delivery.abandoned:
                continue
            if run.scenario.strict:
                run.problems.append(f"{kind}: no answer")
            continue
        deadline = delivery.answer_deadline
        run.expect(
            seconds < deadline,
            f"{kind}: answered after {seconds:.1f} s, past the {deadline:g} s deadline",
        )
        if step is not None and step.answer_within is not None:
            run.expect(
                seconds < step.answer_within,
                f"{kind}: answered after {seconds:.1f} s, expected < {step.answer_within:g} s",
            )
        for result in delivery.results:
            run.expect(not result.timed_out, f"{kind}: the invocation was killed at its deadline")
            run.expect(result.error is None, f"{kind}: the handler raised {result.error}")


def _crash_point(services: LocalServices, step: Step) -> Callable[[], bool] | None:
    """Hold the UpdateMembership call after ``step.crash_after_writes`` (a ``block``
    fault); the returned check holds once that call is in flight."""
    if not step.crash_after_writes:
        return None
    rule = services.emulator.add_fault(
        "block", "UpdateMembership", on_call=step.crash_after_writes + 1
    )

    def in_flight() -> bool:
        rules = services.emulator.faults()["rules"]
        return any(r["id"] == rule["id"] and r["fired"] for r in rules)

    return in_flight


def _bound(
    hook: Callable[[LocalServices], None] | None, services: LocalServices
) -> Callable[[], None] | None:
    return None if hook is None else lambda: hook(services)


def _play_step(run: Run, step: Step) -> None:
    stack, services = run.stack, run.services
    if step.before is not None:
        step.before(services)
    for fault in step.faults:
        fault.arm(services)
    crash_when = _crash_point(services, step)
    try:
        operation: Operation | None = None
        if step.action == "cold":
            stack.worker.kill()
            return
        if step.action == "create":
            assert step.properties is not None
            operation = stack.create(step.properties, later_failure=step.later_failure)
        elif step.action == "update":
            assert step.properties is not None
            operation = stack.update(
                step.properties,
                later_failure=step.later_failure,
                crash_when=crash_when,
                crash_error=step.crash_error,
                after_answer=_bound(step.after_answer, services),
            )
        elif step.action == "cancel_update":
            operation = _cancel_update(run, step)
        elif step.action == "continue_rollback":
            operation = stack.continue_rollback()
        else:
            operation = stack.delete()
        run.statuses.append(operation.stack_status)
        if step.expect:
            run.expect(
                operation.stack_status == step.expect,
                f"{step.action}: stack is {operation.stack_status}, expected {step.expect}",
            )
        _check_answer(run, step, operation.first_answer)
        _check_deliveries(run, operation.deliveries, step)
        if step.work_steps is not None and operation.deliveries:
            first = operation.deliveries[0]
            run.expect(
                (len(first.accepted), first.work_steps) == (1, step.work_steps),
                f"{step.action}: answered {len(first.accepted)} time(s) after "
                f"{first.work_steps} Work step(s), expected once after {step.work_steps}",
            )
    finally:
        services.emulator.clear_faults()
        services.receiver.clear_faults()
        services.states.clear_faults()


def _check_answer(run: Run, step: Step, answer: Answer | None) -> None:
    reason = answer.reason if answer is not None else ""
    label = step.action
    if step.answer_status:
        status = answer.status if answer is not None else None
        run.expect(
            status == step.answer_status,
            f"{label}: answered {status}, expected {step.answer_status}: {reason[:200]!r}",
        )
    for text in step.reason_has:
        run.expect(text in reason, f"{label}: reason lacks {text!r}: {reason!r}")
    for text in step.reason_lacks:
        run.expect(text not in reason, f"{label}: reason holds {text!r}: {reason!r}")
    if step.reason_starts:
        run.expect(
            reason.startswith(step.reason_starts),
            f"{label}: reason does not start with {step.reason_starts!r}: {reason[:200]!r}",
        )
    if step.reason_ends:
        run.expect(
            reason.endswith(step.reason_ends),
            f"{label}: reason does not end with {step.reason_ends!r}: ...{reason[-200:]!r}",
        )
    if step.physical_has:
        physical = answer.physical_id if answer is not None else ""
        run.expect(
            step.physical_has in physical,
            f"{label}: physical id {physical!r} lacks {step.physical_has!r}",
        )


def _cancel_update(run: Run, step: Step) -> Operation:
    """Cancel an update mid-way: its rollback overlaps the forward invocation."""
    assert step.properties is not None
    emulator, second = run.services.emulator, run.pool.get(1)
    second.start()  # warm, so the rollback is not delayed by a cold start
    began = time.time()

    def written() -> bool:
        if time.time() < began + step.cancel_after_seconds:
            return False
        calls = emulator.calls("UpdateMembership")
        return sum(1 for c in calls if c.timestamp >= began) >= step.cancel_after_writes

    operation = run.stack.cancel_update(
        step.properties, cancel_when=written, rollback_worker=second
    )
    run.expect(
        operation.overlapped is True,
        "cancel_update: the forward execution had ended before the rollback was delivered",
    )
    return operation


def _scaled_worker(
    scenario: Scenario, services: LocalServices, pool: WorkerPool
) -> LambdaWorker | None:
    """For a scenario at ``timing_scale``: its own worker, its execution's tasks alike."""
    if scenario.timing_scale == 1.0:
        return None
    env = {**pool.env, **scaled_timing(scenario.timing_scale)}
    services.states.configure(env=env, timeout=scenario.timeout, python=pool.python)
    return LambdaWorker(
        env, timeout=scenario.timeout, name=f"scaled-{scenario.name}", python=pool.python
    )


def run_scenario(
    scenario: Scenario,
    services: LocalServices,
    pool: WorkerPool,
    *,
    stack_name: str = "",
    task_env: Mapping[str, str] | None = None,
) -> ScenarioResult:
    """Play ``scenario`` from a clean emulator; every broken expectation is in ``problems``.

    ``task_env``: the environment of the execution's tasks when they run from
    another package than the dispatcher (the built WorkFunction's).
    """
    services.emulator.reset()
    services.forget_paces()
    services.receiver.reset()
    services.states.reset()
    configure_tasks(services, pool, scenario.timeout, task_env)
    services.emulator.seed_many(scenario.seeds)
    if scenario.prepare is not None:
        scenario.prepare(services)
    marks = pool.log_marks()
    own = _scaled_worker(scenario, services, pool)
    stack = StackDriver(
        services.receiver,
        own or pool.get(0),
        stack_name=stack_name or f"e2e-{scenario.name}",
        timeout=scenario.timeout,
        strict=scenario.strict,
        states=services.states,
    )
    run = Run(scenario, services, pool, stack, time.time())
    began = time.monotonic()
    try:
        for step in scenario.steps:
            _play_step(run, step)
        if scenario.custom is not None:
            scenario.custom(run)
    except ContractViolation as error:
        run.problems.append(str(error))
    finally:
        services.emulator.clear_faults()
        services.receiver.clear_faults()
        services.states.clear_faults()
    # An execution (or a task past its timeout) CloudFormation stopped waiting for may
    # still be changing the membership: the final state is read once nothing runs.
    settle = 3 * (scenario.timeout + 1)
    run.expect(
        services.states.wait_idle(settle),
        f"executions or their tasks still ran {settle:g} s after the last step",
    )
    seconds = time.monotonic() - began
    final_problems: list[str] = []
    for membership_id, expect in scenario.final.items():
        alias = ALIASES.get(membership_id, membership_id)
        final_problems += state_problems(services.emulator.state(membership_id), expect, alias)
    calls = run.calls()
    summary = [call_summary(c) for c in calls]
    calls_ok = scenario.calls is None or tuple(summary) == scenario.calls
    if not calls_ok:
        run.problems.append(f"calls were {summary}, expected {list(scenario.calls or ())}")
    secrets = sensitive_values(
        scenario.seeds, [s.properties for s in scenario.steps], stack.properties
    )
    urls = [str(d.event["ResponseURL"]) for d in stack.deliveries] + run.extra_urls
    logs = pool.logs_since(marks) + "".join(run.extra_logs) + services.states.logs()
    if own is not None:
        logs += own.logs()
        own.close()
    run.problems += log_leaks(logs, secrets, urls)
    updates = [c for c in calls if c.operation == "UpdateMembership"]
    answers = [d.answer_seconds for d in stack.deliveries if d.answer_seconds is not None]
    return ScenarioResult(
        name=scenario.name,
        group=scenario.group,
        title=scenario.title,
        faults=scenario.faults,
        outcome=" > ".join(run.statuses) or "-",
        writes=sum(1 for c in updates if c.status == 200),
        write_attempts=len(updates),
        final_ok=not final_problems,
        calls_ok=calls_ok,
        problems=tuple(run.problems + final_problems),
        seconds=seconds,
        slowest_answer=max(answers, default=0.0),
        known_issue=scenario.known_issue,
        reliability_only=scenario.reliability_only,
    )


# --------------------------------------------------------------------------- custom bodies


def _same_bodies(run: Run, deliveries: Sequence[Delivery], label: str) -> None:
    bodies = [p.body for d in deliveries for p in d.accepted]
    run.expect(len(bodies) >= 2, f"{label}: expected several answers, got {len(bodies)}")
    # Compared as JSON documents (as CloudFormation reads them): the replayed answer's
    # Data comes back from the idempotency store with its keys in another order.
    run.expect(all(b == bodies[0] for b in bodies), f"{label}: the answers differ")


def _duplicate_in_a_row(run: Run) -> None:
    """The same Create event delivered twice to a warm worker, then once more cold."""
    stack = run.stack
    event = stack.event("Create", cfn_properties(declare(MembershipName=NAMES[1])))
    first = stack.deliver(event)
    second = stack.deliver(event)
    stack.worker.kill()
    third = stack.deliver(event)
    run.expect(third.results[0].cold, "third delivery: expected a cold start")
    _check_deliveries(run, [first, second, third], None)
    _same_bodies(run, [first, second, third], "duplicate in a row")
    answer = first.answer
    run.expect(answer is not None and answer.ok, "duplicate in a row: first answer not SUCCESS")
    run.statuses.append("3 x SUCCESS" if all(d.answer for d in (first, second, third)) else "?")


def _duplicate_at_once(run: Run) -> None:
    """The same Create event delivered to two warm workers at the same moment: one
    execution, one answer."""
    stack = run.stack
    workers = [run.pool.get(0), run.pool.get(1)]
    for worker in workers:
        worker.start()
    run.services.emulator.hang("GetMembership", 1.5)
    event = stack.event("Create", cfn_properties(declare(MembershipName=NAMES[1])))
    delivery = stack.deliver(event, workers=workers)
    _check_deliveries(run, [delivery], None)
    # Both dispatchers start the same execution (same name, same input): it answers once.
    run.expect(len(delivery.accepted) == 1, f"expected 1 answer, got {len(delivery.accepted)}")
    executions = run.services.states.executions(str(event["RequestId"]))
    run.expect(len(executions) == 1, f"{len(executions)} executions, expected 1")
    run.statuses.append(f"{len(delivery.accepted)} x {delivery.answer and delivery.answer.status}")


def _put_retried(run: Run) -> None:
    delivery = run.stack.deliveries[0]
    statuses = [p.status for p in delivery.puts]
    run.expect(statuses == [500, 500, 200], f"response PUT statuses {statuses} != [500, 500, 200]")
    run.expect(len({p.raw for p in delivery.puts}) == 1, "the retried PUT bodies differ")


def _put_reset(run: Run) -> None:
    delivery = run.stack.deliveries[0]
    statuses = [p.status for p in delivery.puts]
    run.expect(statuses == [None, 200], f"response PUT statuses {statuses} != [None, 200]")


def _put_forbidden(run: Run) -> None:
    """The 403 is not retried by the sender (no second PUT at once): the Answer task fails
    at once and the definition's Retry (2 s later) sends the same answer."""
    delivery = run.stack.deliveries[0]
    statuses = [p.status for p in delivery.puts]
    run.expect(statuses == [403, 200], f"response PUT statuses {statuses} != [403, 200]")
    run.expect(len({p.raw for p in delivery.puts}) == 1, "the retried PUT bodies differ")
    if len(delivery.puts) == 2:
        gap = delivery.puts[1].time - delivery.puts[0].time
        run.expect(gap >= 1.5, f"the PUT was repeated {gap:.1f} s after a 403, not by the Retry")
    answers = [r for r in delivery.task_runs if r.state == "Answer"]
    run.expect(
        [r.outcome for r in answers] == ["TaskFailed", "ok"],
        f"Answer task attempts ended {[r.outcome for r in answers]}, expected TaskFailed, ok",
    )
    first = answers[0] if answers else None
    took = first.ended - first.started if first is not None and first.ended else None
    run.expect(took is not None and took < 5, f"the Answer task took {took} s after a 403")


def _late_write_settles(run: Run) -> None:
    """Wait until the emulator answered the hung call (its answer comes after the handler's)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if len([c for c in run.calls() if c.operation == "UpdateMembership"]) >= 2:
            return
        time.sleep(0.1)
    run.problems.append("the hung UpdateMembership was never answered")


def _put_hang(run: Run) -> None:
    delivery = run.stack.deliveries[0]
    statuses = [p.status for p in delivery.puts]
    run.expect(statuses == [None, 200], f"response PUT statuses {statuses} != [None, 200]")


def _table_unreachable(run: Run) -> None:
    """A worker whose idempotency table endpoint refuses connections."""
    env = dict(run.pool.env)
    env["AWS_ENDPOINT_URL_DYNAMODB"] = f"http://127.0.0.1:{free_port()}"
    with LambdaWorker(env, timeout=run.scenario.timeout, name="no-table") as worker:
        stack = StackDriver(
            run.services.receiver,
            worker,
            stack_name="e2e-no-table",
            timeout=worker.timeout,
            states=run.services.states,
        )
        try:
            operation = stack.create(declare(MembershipName=N1))
            run.statuses.append(operation.stack_status)
            answer = operation.first_answer
            reason = answer.reason if answer is not None else ""
            run.expect(
                "could not write the request record in table" in reason,
                f"Create reason: {reason!r}",
            )
            run.expect(
                operation.stack_status == "ROLLBACK_COMPLETE",
                f"create: stack is {operation.stack_status}, expected ROLLBACK_COMPLETE "
                "(the rollback Delete needs no call, so it should not need the table)",
            )
            _check_deliveries(run, operation.deliveries, None)
        finally:
            run.extra_logs.append(worker.logs())
            run.extra_urls += [str(d.event["ResponseURL"]) for d in stack.deliveries]


def _without_features(services: LocalServices) -> None:
    """Membership A reports no optInFeatures (the seed format always has some)."""
    emulator = services.emulator
    with emulator._lock:
        emulator._memberships[A].pop("optInFeatures", None)


def _full_reason_logged(run: Run) -> None:
    """The cut reason's full text is in the function's log (its last problem too)."""
    logs = run.pool.logs_since({})
    run.expect(
        "reason truncated for CloudFormation" in logs and "OrganizationalUnits[999]" in logs,
        "the full reason (up to OrganizationalUnits[999]) is not in the function's log",
    )


#: The function timeout (the dispatcher's and the tasks') and the table's delay of the
#: slow-bookkeeping scenario: after the write each table call answers 4.5 s late, under
#: the 5 s read timeout (slow, not down: the Answer task's claim needs the table), so
#: the Work step's bookkeeping runs into its reserve and leaves the lease to lapse; a
#: first GetMembership needs 19 s left, so 21 s is the least.
SLOW_TABLE_TIMEOUT, SLOW_TABLE_DELAY = 21.0, 4.5
#: The same at a third (``scaled_timing(1 / 3)``; 1.5 s under a 1.67 s read timeout), but
#: for the function timeout: a first GetMembership needs 19 / 3 s left, and 8 s (not 7)
#: keeps the margin for a loaded machine.
SLOW_TABLE_THIRD_TIMEOUT, SLOW_TABLE_THIRD_DELAY = 8.0, 1.5


def scaled_timing(scale: float) -> dict[str, str]:
    """Every reserve and client timeout of the function at ``scale`` times its production
    value, as ``SIR_TIMING_*`` variables (src/sir_membership/timing.py): a scenario with
    these and its own times scaled alike plays the same decisions in fewer real seconds."""
    # Imported here, not at the top: sirlocal.artifact_check imports this module where
    # sir_membership is only the built artifact's, in another process.
    from sir_membership.timing import PREFIX, Timing  # noqa: PLC0415 - see above

    return {
        PREFIX + f.name.upper(): f"{getattr(Timing(), f.name) * scale:.3f}" for f in fields(Timing)
    }


def _slow_bookkeeping(timeout: float, delay: float, scale: float = 1.0) -> Callable[[Run], None]:
    """The table turns slow after the last write: the timer sends the settled SUCCESS
    (a worker of function timeout ``timeout``, the function's times at ``scale``)."""

    def play(run: Run) -> None:
        _slow_bookkeeping_run(run, timeout, delay, scaled_timing(scale) if scale != 1 else {})

    return play


def _slow_bookkeeping_run(
    run: Run, timeout: float, delay: float, timing: Mapping[str, str]
) -> None:
    services = run.services
    began = time.time()

    def written() -> bool:
        return any(c.timestamp >= began for c in services.emulator.calls("UpdateMembership"))

    with SlowTable(services.dynamodb_url, delay=delay, slow_when=written) as table:
        env = {**run.pool.env, **timing}
        env["AWS_ENDPOINT_URL_DYNAMODB"] = table.url
        # The dispatcher and the execution's tasks all see the slow table.
        services.states.configure(env=env, timeout=timeout, python=run.pool.python)
        task_mark = services.states.log_mark()
        with LambdaWorker(env, timeout=timeout, name="slow-table") as worker:
            worker.start()
            stack = StackDriver(
                services.receiver,
                worker,
                stack_name="e2e-slow-table",
                timeout=worker.timeout,
                states=services.states,
            )
            mark = worker.log_mark()
            try:
                created = stack.create(declare())  # no write: the table is still fast
                run.statuses.append(created.stack_status)
                operation = stack.update(declare(MembershipName=N1))
                run.statuses.append(operation.stack_status)
                answer = operation.first_answer
                run.expect(
                    answer is not None and answer.ok,
                    f"Update: {answer.status if answer else 'no answer'} "
                    f"({answer.reason if answer else ''!r}), expected SUCCESS",
                )
                run.expect(
                    operation.stack_status == "UPDATE_COMPLETE",
                    f"update: stack is {operation.stack_status}, expected UPDATE_COMPLETE",
                )
                logs = worker.logs(mark) + services.states.logs(task_mark)
                delivery = operation.deliveries[0]
                steps = [r.outcome for r in delivery.task_runs if r.state == "Work"]
                # The Work step ran short of time in its bookkeeping: it left the lease to
                # lapse (or Lambda ended it, and the Answer task sent the settled answer).
                run.expect(
                    "little time left" in logs or "timeout" in steps,
                    "the Work step's bookkeeping did not run short of time (nothing was "
                    f"tested): slow table calls {table.delayed}, Work steps {steps}",
                )
                seconds = delivery.answer_seconds
                run.expect(
                    seconds is not None and seconds < delivery.answer_deadline,
                    f"Update: answered after {seconds} s, deadline {delivery.answer_deadline:g} s",
                )
                run.expect(
                    len(table.delayed) >= 2,
                    f"only {table.delayed} was slowed after the write",
                )
            finally:
                run.extra_logs.append(worker.logs())
                run.extra_urls += [str(d.event["ResponseURL"]) for d in stack.deliveries]


#: The second stack's function timeout in ``busy-membership``: it may wait for the
#: lease only until 20 s (the work reserve) are left, so about 1 s.
BUSY_TIMEOUT = 21.0


def _duplicate_joins_execution(run: Run) -> None:
    """The Update runs in several Work steps; CloudFormation delivers it again meanwhile:
    the duplicate's start joins the running execution (same name, same input)."""
    stack, services = run.stack, run.services
    services.emulator.set_propagation_model("conflict", 2.5)
    new = cfn_properties(declare(OrganizationalUnits=ous(1, 22)))
    assert stack.physical_id is not None
    assert stack.properties is not None
    event = stack.event(
        "Update", new, physical_id=stack.physical_id, old_properties=stack.properties
    )
    request_id = str(event["RequestId"])
    pending = stack.begin(event)
    waited_until = time.time() + 60.0

    def steps() -> int:
        return sum(1 for r in services.states.runs(request_id) if r.state == "Work")

    while steps() < 2 and time.time() < waited_until:
        time.sleep(0.05)
    run.expect(steps() >= 2, "the Update did not take several Work steps")
    second = run.pool.get(1).start()
    duplicate = stack.deliver(event, workers=[second])
    first = pending.finish()
    executions = services.states.executions(request_id)
    run.expect(
        len(executions) == 1,
        f"{len(executions)} executions for the request, expected the duplicate to join one",
    )
    accepted = [p for p in services.receiver.requests(first.path) if p.accepted]
    bodies = {p.raw for p in accepted}
    answer = first.answer
    run.expect(
        len(bodies) == 1 and len(accepted) == 1 and answer is not None and answer.ok,
        f"{len(accepted)} answer(s) ({len(bodies)} distinct), expected one SUCCESS",
    )
    applied = [
        c
        for c in run.calls()
        if c.operation == "UpdateMembership" and c.error is None and c.status is not None
    ]
    run.expect(len(applied) == 4, f"{len(applied)} UpdateMembership calls applied, expected 4")
    (own,) = duplicate.results
    run.expect(
        own.error is None and not own.timed_out and not own.crashed,
        "the duplicate's own invocation did not end normally",
    )
    run.statuses.append(f"{len(accepted)} x {answer.status if answer else None}")


def _calls_one_of(*allowed: Sequence[str]) -> Callable[[Run], None]:
    """A check: the calls are exactly one of ``allowed`` (where a jittered wait decides
    whether the Work step sleeps it or a Wait state carries it to a new step)."""

    def check(run: Run) -> None:
        summary = [call_summary(c) for c in run.calls()]
        options = [list(a) for a in allowed]
        run.expect(summary in options, f"calls were {summary}, expected one of {options}")

    return check


def calls_with_rereads(expected: Sequence[str], after: str) -> Callable[[Run], None]:
    """A check: the calls are ``expected``, but for the reads repeated after ``after``.

    After a call of unknown outcome (``after``) the next step reads until the
    stale-read grace shows it; how many reads fit depends on the clock. Reads
    only: a repeated write fails the check.
    """

    def check(run: Run) -> None:
        summary = [call_summary(c) for c in run.calls()]
        start = summary.index(after) + 1 if after in summary else len(summary)
        compact = list(summary[:start])
        for call in summary[start:]:
            if not (call == "Get A" and compact and compact[-1] == "Get A"):
                compact.append(call)
        run.expect(
            compact == list(expected),
            f"calls were {summary}, expected {list(expected)} (reads may repeat after {after})",
        )

    return check


def _fenced_out(landed: Sequence[Sequence[str]]) -> Callable[[Run], None]:
    """A check: the cancelled Update's calls are one of ``landed`` (those made before the
    rollback took the fence, and one in flight then), then the rollback's read and the
    exact inverse of each, in order; no call of the Update after the rollback's."""

    def check(run: Run) -> None:
        summary = [call_summary(c) for c in run.calls()]
        # The rollback reads again while its reads do not match its journal (a call that
        # landed after the fence is not in the Update's journal): reads, never writes.
        compact = summary
        first = next((i for i, c in enumerate(summary) if c == "Get A" and i >= 2), None)
        if first is not None:
            end = first
            while end < len(summary) and summary[end] == "Get A":
                end += 1
            compact = [*summary[: first + 1], *summary[end:]]
        allowed = []
        for forward in landed:
            inverse = [c.replace("+5 -0", "+0 -5").replace("+2 -0", "+0 -2") for c in forward]
            allowed.append(["Get A", "Get A", *forward, "Get A", *inverse])
        run.expect(
            compact in allowed,
            f"calls were {summary}, expected one of {allowed} (the rollback's reads repeated)",
        )

    return check


def _busy_membership(run: Run) -> None:
    """A second stack's Create on A while the first stack's Update holds A's lease."""
    services, first = run.services, run.stack
    began = time.time()
    updated: list[Operation] = []
    services.emulator.add_fault("hang", "UpdateMembership", times=3, seconds=1.5)
    update = threading.Thread(
        target=lambda: updated.append(first.update(declare(OrganizationalUnits=ous(1, 14)))),
        name="first-stack-update",
    )
    update.start()
    try:
        while not any(c.timestamp >= began for c in services.emulator.calls("UpdateMembership")):
            if not update.is_alive():
                break
            time.sleep(0.02)
        worker = run.pool.get(1).start()
        mark, declared = worker.log_mark(), declare(MembershipName=N1)
        second = StackDriver(
            services.receiver,
            worker,
            stack_name="e2e-busy-2",
            timeout=BUSY_TIMEOUT,
            states=services.states,
        )
        created = second.create(declared)
        run.problems += log_leaks(worker.logs(mark), sensitive_values(declared), [])
        run.extra_urls += [str(d.event["ResponseURL"]) for d in second.deliveries]
        run.statuses.append(f"2nd stack {created.stack_status}")
        # It waited for the lease in Wait states, between Work steps.
        run.expect(
            created.stack_status == "CREATE_COMPLETE",
            f"2nd stack: {created.stack_status}, expected CREATE_COMPLETE",
        )
        run.expect(
            bool(created.deliveries) and created.deliveries[0].work_steps >= 2,
            "2nd stack: its Create did not wait between Work steps",
        )
        run.expect(
            not update.is_alive(), "the 2nd stack's Create ended before the 1st stack's Update"
        )
        _check_deliveries(run, created.deliveries, None)
    finally:
        update.join(timeout=60)
    if updated:
        run.statuses.append(f"1st stack {updated[0].stack_status}")
        run.expect(
            updated[0].stack_status == "UPDATE_COMPLETE",
            f"1st stack: {updated[0].stack_status}, expected UPDATE_COMPLETE",
        )
        _check_deliveries(run, updated[0].deliveries, None)
    else:
        run.problems.append("the first stack's Update did not finish")


def _cold_each_step(run: Run) -> None:
    colds = [d.results[0].cold for d in run.stack.deliveries]
    run.expect(colds == [True, True, True], f"cold starts per delivery: {colds}")


# --------------------------------------------------------------------------- the scenarios

N0, N1 = NAMES[0], NAMES[1]
BASE_OUS = frozenset({ou(1), ou(2), FOREIGN[0]})
TRIAGE_ON = {"Triage": True}
TRIAGE_OFF = {"Triage": False}
SEEDED_EMAILS = frozenset(p[2] for p in PEOPLE[0:2])


def _as_seeded_untriaged(ou_ids: Iterable[str]) -> Expect:
    """``seed(triage=False)`` with ``ou_ids``: its name, its team, Triage off."""
    return Expect(ous=frozenset(ou_ids), name=N0, emails=SEEDED_EMAILS, features=TRIAGE_OFF)


#: Only MembershipId and OUs: name, team and features are not managed.
UNDECLARED = declare(
    MembershipName=None, IncidentResponseTeam=None, OptInFeatures=None, OrganizationalUnits=[ou(1)]
)
#: UNDECLARED, now declaring a new name, another team, Triage on and 7 more OUs.
NEWLY_DECLARED = declare(
    MembershipName=N1,
    IncidentResponseTeam=team(1, 3),
    OptInFeatures=[{"FeatureName": "Triage", "IsEnabled": True}],
    OrganizationalUnits=ous(1, 8),
)


def _applied_updates(expected: int, min_work_steps: int = 0) -> Callable[[Run], None]:
    """A check: exactly ``expected`` UpdateMembership calls were applied (refusals aside).

    Under a propagation model the number of refused attempts depends on the
    backoff's jitter, so the exact call list is not pinned; the applied calls
    are (the bound of the plan) and the update is answered SUCCESS once.
    """

    def check(run: Run) -> None:
        applied = [
            c
            for c in run.calls()
            if c.operation == "UpdateMembership" and c.error is None and c.status is not None
        ]
        run.expect(
            len(applied) == expected,
            f"{len(applied)} UpdateMembership calls were applied, expected {expected}",
        )
        updates = [d for d in run.stack.deliveries if d.event["RequestType"] == "Update"]
        answers = [p for d in updates for p in d.accepted]
        statuses = [d.answer.status if d.answer else None for d in updates]
        run.expect(
            (len(answers), statuses) == (1, ["SUCCESS"]),
            f"the update was answered {len(answers)} time(s), {statuses}; expected SUCCESS once",
        )
        steps = [d.work_steps for d in updates]
        run.expect(
            all(n >= min_work_steps for n in steps),
            f"the update took {steps} Work step(s), expected at least {min_work_steps}",
        )

    return check


def _propagation(name: str, title: str, fault: Fault, **options: Any) -> Scenario:
    """+20 OUs (4 UpdateMembership calls) on A while ``fault``'s propagation model is armed."""
    extra = tuple(options.pop("extra_faults", ()))
    min_work_steps = int(options.pop("min_work_steps", 0))
    return Scenario(
        name,
        "propagation",
        title,
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 22)),
                options.pop("expect", "UPDATE_COMPLETE"),
                faults=(fault, *extra),
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 22), FOREIGN[0]}))},
        custom=_applied_updates(4, min_work_steps),
        **options,
    )


def _s(*steps: Step) -> tuple[Step, ...]:
    return steps


SCENARIOS: tuple[Scenario, ...] = (
    # -- lifecycle ------------------------------------------------------------------------
    Scenario(
        "update-name",
        "lifecycle",
        "create, rename, delete (Retain)",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step("update", declare(MembershipName=N1), "UPDATE_COMPLETE"),
            Step("delete", expect="DELETE_COMPLETE"),
        ),
        {A: Expect(ous=BASE_OUS, name=N1)},
        ("Get A", "Get A", "Update A +0 -0 name"),
    ),
    Scenario(
        "update-team",
        "lifecycle",
        "replace the team, then reorder it with other email case (no call)",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step("update", declare(IncidentResponseTeam=team(0, 3)), "UPDATE_COMPLETE"),
            Step(
                "update",
                declare(
                    IncidentResponseTeam=[
                        {**r, "Email": r["Email"].upper()} for r in reversed(team(0, 3))
                    ]
                ),
                "UPDATE_COMPLETE",
            ),
        ),
        {A: Expect(emails=frozenset(p[2] for p in PEOPLE), name=N0)},
        ("Get A", "Get A", "Update A +0 -0 team", "Get A"),
    ),
    Scenario(
        "update-features",
        "lifecycle",
        "turn Triage off",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OptInFeatures=[{"FeatureName": "Triage", "IsEnabled": False}]),
                "UPDATE_COMPLETE",
            ),
        ),
        {A: Expect(features={"Triage": False}, ous=BASE_OUS)},
        ("Get A", "Get A", "Update A +0 -0 features"),
    ),
    Scenario(
        "update-cover-entire-org",
        "lifecycle",
        "switch to CoverEntireOrganization (declared OUs removed, foreign kept)",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(CoverEntireOrganization=True, OrganizationalUnits=[]),
                "UPDATE_COMPLETE",
            ),
        ),
        {A: Expect(cover=True, ous=frozenset({FOREIGN[0]}))},
        ("Get A", "Get A", "Update A +0 -2 cover"),
    ),
    Scenario(
        "update-ous",
        "lifecycle",
        "add 12 OUs and remove 1 (3 calls, batches of 5)",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step("update", declare(OrganizationalUnits=ous(2, 14)), "UPDATE_COMPLETE"),
        ),
        {A: Expect(ous=frozenset({*ous(2, 14), FOREIGN[0]}))},
        ("Get A", "Get A", "Update A +5 -1", "Update A +5 -0", "Update A +2 -0"),
    ),
    Scenario(
        "undo-cancellation",
        "lifecycle",
        "Cancelled membership: a change without Undo fails, with Undo reactivates",
        (seed(status="Cancelled"),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(MembershipName=N1),
                "UPDATE_ROLLBACK_COMPLETE",
                reason_has=("is Cancelled", "UndoMembershipCancellation"),
            ),
            Step(
                "update",
                declare(MembershipName=N1, UndoMembershipCancellation=True),
                "UPDATE_COMPLETE",
            ),
        ),
        {A: Expect(status="Active", name=N1)},
        ("Get A", "Get A", "Get A", "Get A", "Update A +0 -0 name undo"),
    ),
    Scenario(
        "update-unmanaged-only",
        "lifecycle",
        "an update that changes only OnDelete makes no write",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step("update", declare(OnDelete="RemoveOrganizationalUnits"), "UPDATE_COMPLETE"),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        ("Get A", "Get A"),
    ),
    Scenario(
        "replacement",
        "lifecycle",
        "new MembershipId: B taken over, A cleaned up (RemoveOrganizationalUnits)",
        (seed(), seed(B, name=NAMES[2], ou_ids=[ou(5)])),
        _s(
            Step("create", declare(OnDelete="RemoveOrganizationalUnits"), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(
                    MembershipId=B,
                    OrganizationalUnits=[ou(5), ou(6)],
                    OnDelete="RemoveOrganizationalUnits",
                ),
                "UPDATE_COMPLETE",
            ),
            Step("delete", expect="DELETE_COMPLETE"),
        ),
        {A: Expect(ous=frozenset({FOREIGN[0]}), name=N0), B: Expect(ous=frozenset(), name=N0)},
        (
            "Get A",
            "Get B",
            "Update B +1 -0 name",
            "Get A",
            "Update A +0 -2",
            "Get B",
            "Update B +0 -2",
        ),
    ),
    Scenario(
        "replacement-rolled-back",
        "rollback",
        "replacement succeeds, a later resource fails: back to A, B restored from the journal",
        (seed(), seed(B, name=NAMES[2], ou_ids=[ou(5)])),
        _s(
            Step("create", declare(OnDelete="RemoveOrganizationalUnits"), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(
                    MembershipId=B,
                    OrganizationalUnits=[ou(6)],
                    OnDelete="RemoveOrganizationalUnits",
                ),
                "UPDATE_ROLLBACK_COMPLETE",
                later_failure="Resource handler returned message: injected failure",
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0), B: Expect(ous=frozenset({ou(5)}), name=NAMES[2])},
        # CloudFormation sends the new id no rollback Update: it deletes B in the clean-up
        # (the stack is UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS), and that Delete
        # restores B from the journal (its name too), whatever OnDelete says; A was never
        # touched.
        ("Get A", "Get B", "Update B +1 -0 name", "Get B", "Update B +0 -1 name"),
    ),
    Scenario(
        "delete-remove-ous",
        "lifecycle",
        "OnDelete RemoveOrganizationalUnits removes the declared OUs only",
        (seed(),),
        _s(
            Step(
                "create",
                declare(OrganizationalUnits=ous(1, 3), OnDelete="RemoveOrganizationalUnits"),
                "CREATE_COMPLETE",
            ),
            Step("delete", expect="DELETE_COMPLETE"),
        ),
        {A: Expect(ous=frozenset({FOREIGN[0]}))},
        ("Get A", "Update A +1 -0", "Get A", "Update A +0 -3"),
    ),
    Scenario(
        "delete-retain",
        "lifecycle",
        "OnDelete Retain makes no call",
        (seed(),),
        _s(
            Step("create", declare(OrganizationalUnits=ous(1, 3)), "CREATE_COMPLETE"),
            Step("delete", expect="DELETE_COMPLETE"),
        ),
        {A: Expect(ous=frozenset({*ous(1, 3), FOREIGN[0]}))},
        ("Get A", "Update A +1 -0"),
    ),
    Scenario(
        "cold-starts",
        "lifecycle",
        "every operation on a fresh worker (cold start)",
        (seed(),),
        _s(
            Step("cold"),
            Step("create", declare(MembershipName=N1), "CREATE_COMPLETE"),
            Step("cold"),
            Step("update", declare(MembershipName=N1, OrganizationalUnits=ous(1, 3))),
            Step("cold"),
            Step(
                "delete",
                expect="DELETE_COMPLETE",
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 3), FOREIGN[0]}), name=N1)},
        ("Get A", "Update A +0 -0 name", "Get A", "Update A +1 -0"),
        custom=_cold_each_step,
    ),
    Scenario(
        "create-not-found",
        "lifecycle",
        "MembershipId of no membership: CREATE_FAILED, rollback makes no call",
        (seed(),),
        _s(
            Step(
                "create",
                declare(MembershipId=C),
                "ROLLBACK_COMPLETE",
                reason_has=("m-e2ec00000003 was not found",),
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        ("Get C !ResourceNotFoundException",),
    ),
    Scenario(
        "create-terminated",
        "lifecycle",
        "a Terminated membership cannot be changed",
        (seed(status="Terminated"),),
        _s(
            Step(
                "create",
                declare(MembershipName=N1),
                "ROLLBACK_COMPLETE",
                reason_has=("is Terminated",),
            ),
        ),
        {A: Expect(status="Terminated", name=N0)},
        ("Get A",),
    ),
    # -- faults ---------------------------------------------------------------------------
    Scenario(
        "throttle-storm",
        "faults",
        "5 throttles in a row on UpdateMembership (60 s function timeout)",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 3)),
                "UPDATE_COMPLETE",
                faults=(Fault("error", "UpdateMembership", times=5, error="ThrottlingException"),),
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 3), FOREIGN[0]}))},
        # The backoff after the 5th throttle (3.2-6.4 s, jittered) is slept in the step
        # when under 5 s; else a Wait state carries it and the next Work step reads first.
        custom=_calls_one_of(
            ("Get A", "Get A", *["Update A +1 -0 !ThrottlingException"] * 5, "Update A +1 -0"),
            (
                "Get A",
                "Get A",
                *["Update A +1 -0 !ThrottlingException"] * 5,
                "Get A",
                "Update A +1 -0",
            ),
        ),
        timeout=60.0,
    ),
    Scenario(
        "throttle-get",
        "faults",
        "2 throttles on GetMembership during Create",
        (seed(),),
        _s(
            Step(
                "create",
                declare(MembershipName=N1),
                "CREATE_COMPLETE",
                faults=(Fault("error", "GetMembership", times=2, error="ThrottlingException"),),
            ),
        ),
        {A: Expect(name=N1, ous=BASE_OUS)},
        (
            "Get A !ThrottlingException",
            "Get A !ThrottlingException",
            "Get A",
            "Update A +0 -0 name",
        ),
    ),
    Scenario(
        "propagation-conflicts",
        "faults",
        "ConflictException x2 after each OU change while accounts propagate",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 14)),
                "UPDATE_COMPLETE",
                faults=(Fault("propagation", times=2),),
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 14), FOREIGN[0]}))},
        # Pacing: after a refusal, the wait for the window is a Wait state (no Lambda
        # running), so each next Work step reads the membership before its call.
        (
            "Get A",
            "Get A",
            "Update A +5 -0",
            "Update A +5 -0 !ConflictException",
            "Get A",
            "Update A +5 -0 !ConflictException",
            "Get A",
            "Update A +5 -0",
            "Get A",
            "Update A +2 -0 !ConflictException",
            "Get A",
            "Update A +2 -0 !ConflictException",
            "Get A",
            "Update A +2 -0",
        ),
    ),
    _propagation(
        "propagation-conflict-20",
        "+20 OUs while each OU change is refused (Conflict) for P = 1 s",
        Fault("model", model="conflict", seconds=1.0),
    ),
    _propagation(
        "propagation-conflict-retry-after-20",
        "+20 OUs while each OU change is refused for P = 1 s, with Retry-After",
        Fault("model", model="conflict", seconds=1.0, retry_after=True),
    ),
    _propagation(
        "propagation-stale-reads-20",
        "+20 OUs while each OU change is refused for P = 1 s and reads show it only after P",
        Fault("model", model="conflict-stale-reads", seconds=1.0),
    ),
    _propagation(
        "propagation-several-work-steps",
        "+20 OUs when calls x P (4 x 2.5 s) is carried by several Work steps and Wait states "
        "(22 s function timeout)",
        Fault("model", model="conflict", seconds=2.5),
        timeout=22.0,
        min_work_steps=2,
    ),
    _propagation(
        "propagation-several-work-steps-retry-after",
        "+20 OUs, calls x P (4 x 2.5 s) over several Work steps (22 s), the service sends "
        "Retry-After",
        Fault("model", model="conflict", seconds=2.5, retry_after=True),
        timeout=22.0,
        min_work_steps=2,
        reliability_only=(
            "8 s of propagation waits: several Work steps are played by "
            "propagation-several-work-steps, Retry-After by propagation-conflict-retry-after-20"
        ),
    ),
    _propagation(
        "propagation-several-work-steps-stale-reads",
        "+20 OUs, calls x P (4 x 2.5 s) over several Work steps (22 s), reads show a change "
        "after P",
        Fault("model", model="conflict-stale-reads", seconds=2.5),
        timeout=22.0,
        min_work_steps=2,
        reliability_only=(
            "9 s of propagation waits: several Work steps are played by "
            "propagation-several-work-steps, stale reads by propagation-stale-reads-20"
        ),
    ),
    _propagation(
        "work-step-killed-mid-call",
        "+20 OUs over several Work steps; the first step's sandbox is killed 1 s in "
        "(Lambda.ServiceException): the state machine's Retry runs the step again",
        Fault("model", model="conflict", seconds=2.5),
        timeout=22.0,
        extra_faults=(Fault("invoke_kill", seconds=1.0),),
        min_work_steps=2,
        reliability_only=(
            "2-4 min: the retried step cannot know whether a call was in flight, so it waits "
            "out the 120 s stale-read grace (Wait states) before it trusts reads; a Work step "
            "retried after its sandbox died is played by nothing-lost-1-retry-removes-dropped-ous"
        ),
    ),
    Scenario(
        "several-work-steps-past-service-timeout",
        "propagation",
        "+40 OUs at P = 4 s (8 calls) with ServiceTimeout 60 s: FAILED in time, the rollback "
        "(its own ServiceTimeout 300 s) takes several Work steps too and restores",
        (seed(),),
        _s(
            Step("create", declare(ServiceTimeout="300"), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 42), ServiceTimeout="60"),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(Fault("model", model="conflict", seconds=4.0),),
                reason_starts=(
                    "The change could not finish within the resource's ServiceTimeout of 60 s"
                ),
                reason_ends="the stack's rollback restores them from the change journal",
                answer_within=60.0,
            ),
        ),
        {A: Expect(ous=BASE_OUS)},
        timeout=22.0,
        reliability_only=(
            "40 s: plays a 60 s ServiceTimeout to its end; FAILED in time at the ServiceTimeout "
            "is played by api-hangs-past-service-timeout, the restore by the rollback scenarios"
        ),
    ),
    Scenario(
        "duplicate-delivery-joins-execution",
        "propagation",
        "+20 OUs over several Work steps; CloudFormation delivers the Update again meanwhile: "
        "its start joins the running execution, no second write, one answer",
        (seed(),),
        _s(Step("create", declare(), "CREATE_COMPLETE")),
        {A: Expect(ous=frozenset({*ous(1, 22), FOREIGN[0]}))},
        custom=_duplicate_joins_execution,
        custom_faults="propagation model conflict, P = 2.5 s; the Update delivered twice",
        timeout=22.0,
    ),
    Scenario(
        "5xx-then-replan",
        "faults",
        "InternalServerException on the 2nd and 3rd UpdateMembership: re-read, re-plan",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 14)),
                "UPDATE_COMPLETE",
                faults=(
                    Fault(
                        "error",
                        "UpdateMembership",
                        on_call=2,
                        times=2,
                        error="InternalServerException",
                    ),
                ),
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 14), FOREIGN[0]}))},
        (
            "Get A",
            "Get A",
            "Update A +5 -0",
            "Update A +5 -0 !InternalServerException",
            "Get A",
            "Update A +5 -0 !InternalServerException",
            "Get A",
            "Update A +5 -0",
            "Update A +2 -0",
        ),
    ),
    Scenario(
        "connection-resets",
        "faults",
        "TCP reset on GetMembership, then on UpdateMembership",
        (seed(),),
        _s(
            Step(
                "create",
                declare(),
                "CREATE_COMPLETE",
                faults=(Fault("reset", "GetMembership"),),
            ),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 3)),
                "UPDATE_COMPLETE",
                faults=(Fault("reset", "UpdateMembership"),),
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 3), FOREIGN[0]}))},
        (
            "Get A !reset",
            "Get A",
            "Get A",
            "Update A +1 -0 !reset",
            "Get A",
            "Update A +1 -0",
        ),
    ),
    Scenario(
        "api-hangs-past-deadline",
        "faults",
        "GetMembership hangs 40 s, function timeout 25 s: continued in a new Work step",
        (seed(),),
        _s(
            Step(
                "create",
                declare(MembershipName=N1),
                "CREATE_COMPLETE",
                faults=(Fault("hang", "GetMembership", seconds=40.0),),
                work_steps=2,
            ),
        ),
        {A: Expect(name=N1, ous=BASE_OUS)},
        None,  # the hung call is recorded only when the emulator answers it, 40 s later
        timeout=25.0,
    ),
    Scenario(
        "api-hangs-past-service-timeout",
        "faults",
        "GetMembership hangs 40 s, function timeout 25 s, ServiceTimeout 45 s: FAILED in time",
        (seed(),),
        _s(
            Step(
                "create",
                declare(MembershipName=N1, ServiceTimeout="45"),
                "ROLLBACK_COMPLETE",
                faults=(Fault("hang", "GetMembership", seconds=40.0),),
                reason_starts=(
                    "The change could not finish within the resource's ServiceTimeout of 45 s "
                    "over 1 Work step(s) (last error from the service: ReadTimeoutError): "
                    "raise ServiceTimeout (up to 3600) and retry. No change was applied"
                ),
                answer_within=22.0,
                work_steps=1,
            ),
        ),
        {A: Expect(name=N0, ous=BASE_OUS)},
        (),  # the hung call is recorded only when the emulator answers it, 40 s later
        timeout=25.0,
    ),
    Scenario(
        "slow-api-out-of-time",
        "faults",
        "GetMembership takes 9 s of a 25 s timeout: no UpdateMembership is started in it, "
        "the next Work step makes the change",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(MembershipName=N1),
                "UPDATE_COMPLETE",
                faults=(Fault("hang", "GetMembership", seconds=9.0),),
                work_steps=2,
            ),
        ),
        {A: Expect(name=N1, ous=BASE_OUS)},
        ("Get A", "Get A", "Get A", "Update A +0 -0 name"),
        timeout=25.0,
    ),
    Scenario(
        "ambiguous-write",
        "faults",
        "UpdateMembership hangs 12 s (read timeout 10 s): re-read, re-sent once, no double add",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 3)),
                "UPDATE_COMPLETE",
                faults=(Fault("hang", "UpdateMembership", seconds=12.0),),
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 3), FOREIGN[0]}))},
        (
            "Get A",
            "Get A",
            "Get A",
            "Update A +1 -0",
            "Update A +1 -0 !ValidationException",  # the late first call, refused
        ),
        timeout=40.0,
        custom=_late_write_settles,
    ),
    Scenario(
        "response-put-hang",
        "faults",
        "the ResponseURL never answers the first PUT: timed out after 10 s and retried",
        (seed(),),
        _s(
            Step(
                "create",
                declare(),
                "CREATE_COMPLETE",
                faults=(Fault("put_hang", seconds=15.0),),
            ),
        ),
        {A: Expect(name=N0, ous=BASE_OUS)},
        ("Get A",),
        custom=_put_hang,
    ),
    Scenario(
        "access-denied",
        "faults",
        "the role lacks security-ir:GetMembership",
        (seed(),),
        _s(
            Step(
                "create",
                declare(MembershipName=N1),
                "ROLLBACK_COMPLETE",
                faults=(
                    Fault("error", "GetMembership", times=None, error="AccessDeniedException"),
                ),
                reason_has=("Access denied for security-ir:GetMembership",),
            ),
        ),
        {A: Expect(name=N0, ous=BASE_OUS)},
        ("Get A !AccessDeniedException",),
    ),
    Scenario(
        "response-put-5xx",
        "faults",
        "the ResponseURL answers 500 twice: the answer is retried and delivered",
        (seed(),),
        _s(
            Step(
                "create",
                declare(MembershipName=N1),
                "CREATE_COMPLETE",
                faults=(Fault("put_status", status=500, times=2),),
            ),
        ),
        {A: Expect(name=N1, ous=BASE_OUS)},
        ("Get A", "Update A +0 -0 name"),
        custom=_put_retried,
    ),
    Scenario(
        "response-put-reset",
        "faults",
        "the ResponseURL resets the connection once: retried and delivered",
        (seed(),),
        _s(
            Step(
                "create",
                declare(),
                "CREATE_COMPLETE",
                faults=(Fault("put_reset", times=1),),
            ),
        ),
        {A: Expect(name=N0, ous=BASE_OUS)},
        ("Get A",),
        custom=_put_reset,
    ),
    Scenario(
        "response-put-403",
        "faults",
        "the ResponseURL answers 403 once: the sender does not retry it, the Answer task "
        "fails and the state machine's Retry delivers the same answer",
        (seed(),),
        _s(
            Step(
                "create",
                declare(MembershipName=N1),
                "CREATE_COMPLETE",
                faults=(Fault("put_status", status=403, times=1),),
                answer_status="SUCCESS",
            ),
        ),
        {A: Expect(name=N1, ous=BASE_OUS)},
        ("Get A", "Update A +0 -0 name"),
        custom=_put_forbidden,
    ),
    # -- partial failure and rollback -----------------------------------------------------
    Scenario(
        "partial-failure-rollback",
        "rollback",
        "+12 -4 OUs and a rename; AccessDenied on the 2nd of 3 calls; rollback",
        (seed(ou_ids=[*ous(1, 4), *FOREIGN]),),
        _s(
            Step("create", declare(OrganizationalUnits=ous(1, 4)), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(MembershipName=N1, OrganizationalUnits=ous(5, 16)),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(
                    Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),
                ),
                reason_has=(". 1 of 3 UpdateMembership calls were applied",),
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 4), *FOREIGN}), name=N0)},
        (
            "Get A",
            "Get A",
            "Update A +5 -4 name",
            "Update A +5 -0 !AccessDeniedException",
            "Get A",
            "Update A +4 -5 name",
        ),
    ),
    Scenario(
        "later-failure-rollback",
        "rollback",
        "+7 -1 OUs succeed, a later resource fails: rolled back",
        (seed(ou_ids=[*ous(1, 2), *FOREIGN]),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(2, 9)),
                "UPDATE_ROLLBACK_COMPLETE",
                later_failure="Resource handler returned message: injected failure",
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 2), *FOREIGN}), name=N0)},
        (
            "Get A",
            "Get A",
            "Update A +5 -1",
            "Update A +2 -0",
            "Get A",
            "Update A +1 -5",
            "Update A +0 -2",
        ),
    ),
    Scenario(
        "replacement-to-missing",
        "rollback",
        "Update to a MembershipId that does not exist: A is kept as it was",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(MembershipId=C, OrganizationalUnits=[ou(7)]),
                "UPDATE_ROLLBACK_COMPLETE",
                reason_has=("was not found",),
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        ("Get A", "Get C !ResourceNotFoundException", "Get A"),
    ),
    Scenario(
        "create-partial-failure",
        "rollback",
        "Create adds 12 OUs and renames; AccessDenied on the 2nd of 3 calls: undone",
        (seed(),),
        _s(
            Step(
                "create",
                declare(MembershipName=N1, OrganizationalUnits=ous(1, 14)),
                "ROLLBACK_COMPLETE",
                faults=(
                    Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),
                ),
                reason_has=(
                    ". 1 of 3 UpdateMembership calls were applied",
                    "they were undone",
                ),
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        (
            "Get A",
            "Update A +5 -0 name",
            "Update A +5 -0 !AccessDeniedException",
            "Get A",
            "Update A +0 -5 name",
        ),
    ),
    Scenario(
        "rollback-keeps-preexisting-ou",
        "rollback",
        "the new declaration lists an OU someone else had associated; the update fails",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=[ou(1), ou(2), FOREIGN[0], *ous(3, 8)]),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(
                    Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),
                ),
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        (
            "Get A",
            "Get A",
            "Update A +5 -0",
            "Update A +1 -0 !AccessDeniedException",
            "Get A",
            "Update A +0 -5",
        ),
    ),
    Scenario(
        "replacement-partial-failure",
        "rollback",
        "Update to B (+7 OUs, rename) fails on the 2nd call: B is put back, A untouched",
        (seed(), seed(B, name=NAMES[2], ou_ids=[ou(20)])),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(MembershipId=B, OrganizationalUnits=[ou(20), *ous(21, 27)]),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(
                    Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),
                ),
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0), B: Expect(ous=frozenset({ou(20)}), name=NAMES[2])},
        (
            "Get A",
            "Get B",
            "Update B +5 -0 name",
            "Update B +2 -0 !AccessDeniedException",
            "Get B",
            "Update B +0 -5 name",
            "Get A",
        ),
    ),
    # -- the change journal (issue 8): what a rollback or an undo restores ---------------
    Scenario(
        "rollback-restores-newly-declared",
        "rollback",
        "an Update newly declares name, team, Triage on, +7 OUs; the 2nd call is denied: "
        "the rollback restores all of them from the journal",
        (seed(ou_ids=[ou(1), FOREIGN[0]], triage=False),),
        _s(
            Step("create", UNDECLARED, "CREATE_COMPLETE"),
            Step(
                "update",
                NEWLY_DECLARED,
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(
                    Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),
                ),
                reason_has=(
                    ". 1 of 2 UpdateMembership calls were applied",
                    "restores them from the change journal",
                ),
            ),
        ),
        {A: _as_seeded_untriaged({ou(1), FOREIGN[0]})},
        (
            "Get A",
            "Get A",
            "Update A +5 -0 features name team",
            "Update A +2 -0 !AccessDeniedException",
            "Get A",
            "Update A +0 -5 features name team",
        ),
    ),
    Scenario(
        "later-failure-restores-newly-declared",
        "rollback",
        "the same Update succeeds (and declares an OU associated outside the stack); a later "
        "resource fails: name, team, Triage restored, the foreign OU stays",
        (seed(ou_ids=[ou(1), *FOREIGN], triage=False),),
        _s(
            Step("create", UNDECLARED, "CREATE_COMPLETE"),
            Step(
                "update",
                {**NEWLY_DECLARED, "OrganizationalUnits": [ou(1), FOREIGN[1], *ous(2, 8)]},
                "UPDATE_ROLLBACK_COMPLETE",
                later_failure="Resource handler returned message: injected failure",
            ),
        ),
        {A: _as_seeded_untriaged({ou(1), *FOREIGN})},
        (
            "Get A",
            "Get A",
            "Update A +5 -0 features name team",
            "Update A +2 -0",
            "Get A",
            "Update A +0 -5 features name team",
            "Update A +0 -2",
        ),
    ),
    Scenario(
        "failed-before-first-write-keeps-foreign-ou",
        "rollback",
        "an Update newly declares an OU someone else associated and fails before its first "
        "write (GetMembership denied): its rollback does not remove that OU",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=[ou(1), ou(2), FOREIGN[0], ou(3)]),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(Fault("error", "GetMembership", error="AccessDeniedException"),),
                reason_has=("Access denied for security-ir:GetMembership",),
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        ("Get A", "Get A !AccessDeniedException", "Get A"),
    ),
    Scenario(
        "create-undo-without-features",
        "rollback",
        "a Create enables Triage on a membership that reports no optInFeatures, renames, "
        "+12 OUs; the 2nd call is denied: the undo disables Triage again",
        (seed(),),
        _s(
            Step(
                "create",
                declare(MembershipName=N1, OrganizationalUnits=ous(1, 14)),
                "ROLLBACK_COMPLETE",
                faults=(
                    Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),
                ),
                reason_has=("they were undone, membership m-e2ea00000001 is as it was",),
                physical_has="-failed-",
            ),
        ),
        # The service cannot drop a feature entry: disabled is what "none" comes back as.
        {A: Expect(ous=BASE_OUS, name=N0, features=TRIAGE_OFF)},
        (
            "Get A",
            "Update A +5 -0 features name",
            "Update A +5 -0 !AccessDeniedException",
            "Get A",
            "Update A +0 -5 features name",
        ),
        prepare=_without_features,
    ),
    Scenario(
        "create-unknown-outcome",
        "rollback",
        "a Create's UpdateMembership outlives the read timeout, then GetMembership is denied: "
        "unknown outcome, -unrestored- id; the rollback Delete restores from the journal",
        (seed(),),
        _s(
            Step(
                "create",
                declare(MembershipName=N1, OrganizationalUnits=ous(1, 5)),
                "ROLLBACK_COMPLETE",
                faults=(
                    Fault("hang", "UpdateMembership", seconds=12.0),
                    Fault(
                        "error", "GetMembership", on_call=2, times=2, error="AccessDeniedException"
                    ),
                    # The rollback Delete's read answers once the late write was applied.
                    Fault("hang", "GetMembership", on_call=4, seconds=4.0),
                ),
                reason_has=(
                    "outcome of 1 UpdateMembership call is unknown (it may have been applied)",
                    "the rollback Delete restores them from the change journal",
                ),
                reason_lacks=("no change was applied", "No change was applied"),
                physical_has="-unrestored-",
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        (
            "Get A",
            "Get A !AccessDeniedException",
            "Get A !AccessDeniedException",
            "Update A +3 -0 name",  # the late write, recorded when the emulator answers it
            "Get A",
            "Update A +0 -3 name",
        ),
        timeout=40.0,
        reliability_only=(
            "15 s: a write held past the 10 s read timeout; the read timeout is played by "
            "ambiguous-write, unknown outcomes restored by the Delete by tests/test_stateful.py"
        ),
    ),
    Scenario(
        "cancelled-update-overlap",
        "rollback",
        "an Update (+12 OUs, 1 s a call) is cancelled after its 1st call; the rollback arrives "
        "while it runs and takes the fence: the Update writes no more (a call already in "
        "flight lands), the rollback restores exactly what it wrote",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "cancel_update",
                declare(OrganizationalUnits=ous(1, 14)),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(Fault("hang", "UpdateMembership", times=3, seconds=1.0),),
                cancel_after_writes=1,
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0, emails=SEEDED_EMAILS, features=TRIAGE_ON)},
        # Exact, given how many of the Update's calls (+5, +5, +2) landed before the
        # rollback took the fence: 1, or 2 when the next was already in flight.
        custom=_fenced_out((("Update A +5 -0",), ("Update A +5 -0", "Update A +5 -0"))),
    ),
    Scenario(
        "cancelled-update-before-first-write",
        "rollback",
        "an Update (+12 OUs) is cancelled 0.5 s in, while its GetMembership takes 2 s "
        "(before it journals): the rollback takes the fence, the Update never writes, the "
        "membership is as it was",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "cancel_update",
                declare(OrganizationalUnits=ous(1, 14)),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(Fault("hang", "GetMembership", seconds=2.0),),
                cancel_after_writes=0,
                cancel_after_seconds=0.5,
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0, emails=SEEDED_EMAILS, features=TRIAGE_ON)},
        # The Create's read, the Update's (fenced out before its first write), the rollback's.
        ("Get A", "Get A", "Get A"),
    ),
    Scenario(
        "busy-membership",
        "rollback",
        "another stack's Create on the same membership while this stack's Update (+12 OUs, "
        "1.5 s a call) holds its lease: it waits (Wait states between Work steps), then applies",
        (seed(),),
        _s(Step("create", declare(), "CREATE_COMPLETE")),
        {A: Expect(ous=frozenset({*ous(1, 14), FOREIGN[0]}), name=N1)},
        (
            "Get A",
            "Get A",
            "Update A +5 -0",
            "Update A +5 -0",
            "Update A +2 -0",
            "Get A",
            "Update A +0 -0 name",
        ),
        custom=_busy_membership,
        custom_faults="UpdateMembership takes 1.5 s x3; a 2nd stack on the same membership",
    ),
    Scenario(
        "rollback-retried",
        "rollback",
        "an Update (+6 OUs, rename) fails on its 2nd call and its rollback's first call is "
        "denied too: continuing the rollback restores from the journal",
        (seed(),),
        _s(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(MembershipName=N1, OrganizationalUnits=ous(1, 8)),
                "UPDATE_ROLLBACK_FAILED",
                faults=(
                    Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),
                    Fault("error", "UpdateMembership", on_call=3, error="AccessDeniedException"),
                ),
            ),
            Step("continue_rollback", expect="UPDATE_ROLLBACK_COMPLETE"),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        (
            "Get A",
            "Get A",
            "Update A +5 -0 name",
            "Update A +1 -0 !AccessDeniedException",
            "Get A",
            "Update A +0 -5 name !AccessDeniedException",
            "Get A",
            "Update A +0 -5 name",
        ),
    ),
    Scenario(
        "long-non-ascii-reason",
        "faults",
        "1,000 OU ids pasted with en-dashes: the long reason is cut by bytes, not replaced "
        "(values that do not look like ids are not echoed)",
        (seed(),),
        _s(
            Step(
                "create",
                declare(OrganizationalUnits=[f"ou\u2013e2e1\u2013{i:08d}" for i in range(1000)]),
                "ROLLBACK_COMPLETE",
                reason_starts=(
                    "Invalid properties: OrganizationalUnits[0] is invalid (16 characters, not "
                    "shown): does not match ou-"
                ),
                reason_ends=" [truncated]",
                answer_within=3.0,
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        (),
        custom=_full_reason_logged,
    ),
    Scenario(
        "slow-table-after-last-write",
        "faults",
        "a rename; after its write the table answers 4.5 s late (read timeout 5 s, 21 s "
        "timeout): the Work step's bookkeeping runs short of time, SUCCESS is still sent once",
        (seed(),),
        final={A: Expect(ous=BASE_OUS, name=N1)},
        calls=("Get A", "Get A", "Update A +0 -0 name"),
        custom=_slow_bookkeeping(SLOW_TABLE_TIMEOUT, SLOW_TABLE_DELAY),
        custom_faults=f"DynamoDB answers {SLOW_TABLE_DELAY:g} s late after the write",
        reliability_only=(
            "37 s: a Work step that runs into the reserve of a 21 s function timeout; "
            "slow-table-after-last-write-a-third plays it with every time cut to a third"
        ),
    ),
    Scenario(
        "slow-table-after-last-write-a-third",
        "faults",
        "slow-table-after-last-write with every time a third: the function's reserves and "
        "timeouts (SIR_TIMING_*), the table 1.5 s late, an 8 s function timeout",
        (seed(),),
        final={A: Expect(ous=BASE_OUS, name=N1)},
        calls=("Get A", "Get A", "Update A +0 -0 name"),
        custom=_slow_bookkeeping(SLOW_TABLE_THIRD_TIMEOUT, SLOW_TABLE_THIRD_DELAY, 1 / 3),
        custom_faults=(
            f"DynamoDB answers {SLOW_TABLE_THIRD_DELAY:g} s late after the write; "
            "the function's reserves and timeouts at a third"
        ),
    ),
    Scenario(
        "table-unreachable",
        "faults",
        "the idempotency table refuses connections: Create fails, its rollback Delete succeeds",
        (seed(),),
        final={A: Expect(ous=BASE_OUS, name=N0)},
        calls=(),
        custom=_table_unreachable,
        custom_faults="DynamoDB endpoint refuses connections",
    ),
    # -- duplicates ------------------------------------------------------------------------
    Scenario(
        "duplicate-in-a-row",
        "duplicates",
        "the same Create delivered twice (warm), then again after a cold start",
        (seed(),),
        final={A: Expect(name=N1, ous=BASE_OUS)},
        calls=("Get A", "Update A +0 -0 name"),
        custom=_duplicate_in_a_row,
        custom_faults="same event x3",
    ),
    Scenario(
        "duplicate-at-once",
        "duplicates",
        "the same Create delivered to two workers at the same moment: one execution, one answer",
        (seed(),),
        final={A: Expect(name=N1, ous=BASE_OUS)},
        calls=("Get A", "Update A +0 -0 name"),
        custom=_duplicate_at_once,
        custom_faults="same event on 2 workers at once; GetMembership hangs 1.5 s",
    ),
)

SCENARIOS_BY_NAME = {s.name: s for s in SCENARIOS}


# --------------------------------------------------------------------------- bad input


@dataclass(frozen=True)
class BadInput:
    """An invalid declaration and the property its FAILED reason must name."""

    name: str
    properties: Mapping[str, Any]
    names: tuple[str, ...]


def _bad(name: str, names: str | tuple[str, ...], **overrides: Any) -> BadInput:
    return BadInput(name, declare(**overrides), (names,) if isinstance(names, str) else names)


def _bad_raw(name: str, names: str | tuple[str, ...], properties: Mapping[str, Any]) -> BadInput:
    return BadInput(name, properties, (names,) if isinstance(names, str) else names)


def _with(key: str, value: Any) -> dict[str, Any]:
    return {**declare(), key: value}


_P = PEOPLE[0]
INVALID_INPUTS: tuple[BadInput, ...] = (
    # unknown keys and typos
    _bad_raw("unknown-key", "Foo", _with("Foo", "bar")),
    _bad_raw("typo-membership-name", "MembershipNmae", _with("MembershipNmae", N0)),
    _bad_raw("typo-ous", "OrganisationalUnits", _with("OrganisationalUnits", [ou(1)])),
    _bad_raw("typo-on-delete", "OnDeletion", _with("OnDeletion", "Retain")),
    _bad_raw("lowercase-key", "membershipId", _with("membershipId", A)),
    _bad_raw("typo-cover", "CoverEntireOrg", _with("CoverEntireOrg", "true")),
    # MembershipId
    _bad("missing-membership-id", "MembershipId", MembershipId=None),
    _bad("membership-id-no-prefix", "MembershipId", MembershipId="abcdef012345"),
    _bad("membership-id-uppercase", "MembershipId", MembershipId="m-ABCDEF012345"),
    _bad("membership-id-short", "MembershipId", MembershipId="m-abc123"),
    _bad("membership-id-long", "MembershipId", MembershipId="m-" + "a" * 33),
    _bad("membership-id-list", "MembershipId", MembershipId=[A]),
    _bad(
        "membership-id-arn", "MembershipId", MembershipId=f"arn:aws:security-ir::1:membership/{A}"
    ),
    # MembershipName
    _bad("name-too-short", "MembershipName", MembershipName="ab"),
    _bad("name-too-long", "MembershipName", MembershipName="Long Secret Name " * 4),
    _bad("name-object", "MembershipName", MembershipName={"Fn::Sub": "x"}),
    # OrganizationalUnits
    _bad("ou-bad-pattern", "OrganizationalUnits[0]", OrganizationalUnits=["ou-bad"]),
    _bad("ou-uppercase", "OrganizationalUnits[1]", OrganizationalUnits=[ou(1), "ou-AB12-ABCDEF12"]),
    _bad("ou-root-id", "OrganizationalUnits[0]", OrganizationalUnits=["r-ab12"]),
    _bad("ou-account-id", "OrganizationalUnits[0]", OrganizationalUnits=["123456789012"]),
    _bad("ou-whitespace", "OrganizationalUnits[0]", OrganizationalUnits=[" " + ou(1)]),
    _bad("ou-duplicate", "OrganizationalUnits[2]", OrganizationalUnits=[ou(1), ou(2), ou(1)]),
    _bad("ou-not-a-list", "OrganizationalUnits", OrganizationalUnits=ou(1)),
    _bad("ou-comma-string", "OrganizationalUnits", OrganizationalUnits=f"{ou(1)},{ou(2)}"),
    # booleans (CloudFormation sends strings)
    _bad("cover-yes", "CoverEntireOrganization", CoverEntireOrganization="yes"),
    _bad("cover-one", "CoverEntireOrganization", CoverEntireOrganization=1),
    _bad("cover-empty", "CoverEntireOrganization", CoverEntireOrganization=""),
    _bad("undo-maybe", "UndoMembershipCancellation", UndoMembershipCancellation="maybe"),
    _bad(
        "cover-with-ous",
        ("CoverEntireOrganization", "OrganizationalUnits"),
        CoverEntireOrganization=True,
    ),
    # OptInFeatures
    _bad(
        "feature-enabled-word",
        "OptInFeatures[0].IsEnabled",
        OptInFeatures=[{"FeatureName": "Triage", "IsEnabled": "enabled"}],
    ),
    _bad(
        "feature-unknown-name",
        "OptInFeatures[0].FeatureName",
        OptInFeatures=[{"FeatureName": "Containment", "IsEnabled": True}],
    ),
    _bad(
        "feature-duplicate",
        "OptInFeatures[1].FeatureName",
        OptInFeatures=[{"FeatureName": "Triage", "IsEnabled": True}] * 2,
    ),
    _bad("features-empty", "OptInFeatures", OptInFeatures=[]),
    _bad(
        "features-too-many",
        "OptInFeatures",
        OptInFeatures=[{"FeatureName": "Triage", "IsEnabled": True}] * 3,
    ),
    _bad(
        "feature-missing-enabled",
        "OptInFeatures[0].IsEnabled",
        OptInFeatures=[{"FeatureName": "Triage"}],
    ),
    _bad(
        "feature-typo-key",
        "OptInFeatures[0].Enabled",
        OptInFeatures=[{"FeatureName": "Triage", "Enabled": True}],
    ),
    _bad("features-object", "OptInFeatures", OptInFeatures={"Triage": True}),
    # IncidentResponseTeam
    _bad("team-of-one", "IncidentResponseTeam", IncidentResponseTeam=team(0, 1)),
    _bad(
        "team-of-eleven",
        "IncidentResponseTeam",
        IncidentResponseTeam=[
            {"Name": f"{_P[0]} {i:02d}", "JobTitle": _P[1], "Email": f"r{i:02d}.{_P[2]}"}
            for i in range(11)
        ],
    ),
    _bad(
        "team-duplicate-email",
        "IncidentResponseTeam[1].Email",
        IncidentResponseTeam=[team()[0], {**team()[1], "Email": _P[2].upper()}],
    ),
    _bad(
        "team-bad-email",
        "IncidentResponseTeam[0].Email",
        IncidentResponseTeam=[{**team()[0], "Email": "quentin.zephyrsson"}, team()[1]],
    ),
    _bad(
        "team-email-with-space",
        "IncidentResponseTeam[1].Email",
        IncidentResponseTeam=[team()[0], {**team()[1], "Email": "ottilie marchbanks@example.com"}],
    ),
    _bad(
        "team-missing-job-title",
        "IncidentResponseTeam[1].JobTitle",
        IncidentResponseTeam=[
            team()[0],
            {k: v for k, v in team()[1].items() if k != "JobTitle"},
        ],
    ),
    _bad(
        "team-name-too-short",
        "IncidentResponseTeam[0].Name",
        IncidentResponseTeam=[{**team()[0], "Name": "Qz"}, team()[1]],
    ),
    _bad(
        "team-title-too-long",
        "IncidentResponseTeam[0].JobTitle",
        IncidentResponseTeam=[{**team()[0], "JobTitle": "Secret Title " * 5}, team()[1]],
    ),
    _bad(
        "team-unknown-key",
        "IncidentResponseTeam[0].Phone",
        IncidentResponseTeam=[{**team()[0], "Phone": "+1 555 0100"}, team()[1]],
    ),
    _bad(
        "team-bad-preference",
        "IncidentResponseTeam[0].CommunicationPreferences[0]",
        IncidentResponseTeam=[{**team()[0], "CommunicationPreferences": ["Pager"]}, team()[1]],
    ),
    _bad(
        "team-member-string",
        "IncidentResponseTeam[1]",
        IncidentResponseTeam=[team()[0], _P[2]],
    ),
    _bad("team-object", "IncidentResponseTeam", IncidentResponseTeam=team()[0]),
    # OnDelete
    _bad("on-delete-delete", "OnDelete", OnDelete="Delete"),
    _bad("on-delete-lowercase", "OnDelete", OnDelete="retain"),
    # several at once: every problem is named
    _bad(
        "everything-wrong",
        ("MembershipId", "MembershipName", "OrganizationalUnits[0]", "OnDelete", "Colour"),
        MembershipId="x",
        MembershipName="y",
        OrganizationalUnits=["z"],
        OnDelete="Keep",
        Colour="blue",
    ),
)

#: Answers to bad input must come at once (no call is made, nothing to wait for).
BAD_INPUT_ANSWER_SECONDS = 3.0


@dataclass(frozen=True)
class BadInputResult:
    """How one invalid declaration was answered, on Create and on Update."""

    name: str
    problems: tuple[str, ...]
    create_seconds: float
    update_seconds: float


def check_bad_input(
    bad: BadInput, services: LocalServices, pool: WorkerPool, stack: StackDriver
) -> BadInputResult:
    """Create with ``bad`` (then rollback), and Update a healthy stack to it (then rollback).

    ``stack`` must hold a healthy resource for ``A`` (CREATE/UPDATE_*_COMPLETE);
    it is left that way.
    """
    problems: list[str] = []
    marks = pool.log_marks()
    task_mark = services.states.log_mark()
    before = time.time()
    fresh = StackDriver(
        services.receiver,
        pool.get(0),
        stack_name=f"bad-{bad.name}",
        timeout=stack.timeout,
        states=services.states,
    )
    create = fresh.create(bad.properties)
    problems += _bad_answer(bad, create, "Create", "ROLLBACK_COMPLETE")
    calls = [c for c in services.emulator.calls() if c.timestamp >= before]
    if calls:
        problems.append(f"Create: calls were made: {[call_summary(c) for c in calls]}")
    before = time.time()
    update = stack.update(bad.properties)
    problems += _bad_answer(bad, update, "Update", "UPDATE_ROLLBACK_COMPLETE")
    failed_update = update.deliveries[0]
    during = [
        c
        for c in services.emulator.calls()
        if before <= c.timestamp <= failed_update.started + (failed_update.answer_seconds or 0)
    ]
    if during:
        problems.append(f"Update: calls were made: {[call_summary(c) for c in during]}")
    writes = [
        c
        for c in services.emulator.calls()
        if c.timestamp >= before and c.operation == "UpdateMembership"
    ]
    if writes:
        problems.append("Update or its rollback wrote to the membership")
    secrets = sensitive_values(bad.properties, stack.properties)
    urls = [str(d.event["ResponseURL"]) for d in (*fresh.deliveries, *update.deliveries)]
    logs = pool.logs_since(marks) + services.states.logs(task_mark)
    problems += log_leaks(logs, secrets, urls)
    return BadInputResult(
        bad.name,
        tuple(problems),
        create.deliveries[0].answer_seconds or float("inf"),
        failed_update.answer_seconds or float("inf"),
    )


def _bad_answer(bad: BadInput, operation: Operation, kind: str, status: str) -> list[str]:
    out = []
    if operation.stack_status != status:
        out.append(f"{kind}: stack is {operation.stack_status}, expected {status}")
    answer = operation.first_answer
    if answer is None or answer.status != "FAILED":
        return [*out, f"{kind}: not answered FAILED"]
    for name in bad.names:
        if name not in answer.reason:
            out.append(f"{kind}: reason does not name {name}: {answer.reason!r}")
    seconds = operation.deliveries[0].answer_seconds or float("inf")
    if seconds >= BAD_INPUT_ANSWER_SECONDS:
        out.append(f"{kind}: answered after {seconds:.1f} s")
    return out
