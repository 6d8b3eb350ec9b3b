"""How a scenario is played on the project's driver, and the checks every run gets.

:func:`run_scenario` resets the services, seeds the emulator, plays each
:class:`~sirlocal.scenarios.model.Step` (arming its faults first) and then the
scenario's custom body, waits for every execution to end, and compares the
final state, the call list and the logs with the scenario's expectations.
Why apart from the table: the table is data; this is the one place that
decides how data becomes a run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields

from sirlocal.driver import (
    Answer,
    ContractViolation,
    Delivery,
    LambdaWorker,
    Operation,
    StackDriver,
    WorkerPool,
)
from sirlocal.fixtures import ALIASES, log_leaks, sensitive_values, state_problems
from sirlocal.scenarios.model import Run, Scenario, ScenarioResult, Step
from sirlocal.services import LocalServices


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


def check_deliveries(run: Run, deliveries: Sequence[Delivery], step: Step | None) -> None:
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
        check_deliveries(run, operation.deliveries, step)
        if step.work_steps is not None and operation.deliveries:
            first = operation.deliveries[0]
            run.expect(
                (len(first.accepted), first.work_steps) == (1, step.work_steps),
                f"{step.action}: answered {len(first.accepted)} time(s) after "
                f"{first.work_steps} Work step(s), expected once after {step.work_steps}",
            )
        if step.min_work_steps and operation.deliveries:
            took = operation.deliveries[0].work_steps
            run.expect(
                took >= step.min_work_steps,
                f"{step.action}: took {took} Work step(s), expected at least {step.min_work_steps}",
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
    call_problems = scenario.call_problems(calls)
    calls_ok = not call_problems
    run.problems += call_problems
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
