"""Custom plays (``Scenario.custom``) and seed hooks (``Scenario.prepare``).

Why: a few stories cannot be told as a list of stack operations: the same
event delivered twice (in a row, at once, while the first still runs), a
second stack on the same membership, a worker whose table is unreachable or
slow. Each play here drives its stacks and workers itself, with the same
checks every step gets (:func:`~sirlocal.scenarios.play.check_deliveries`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from sirlocal.driver import Delivery, LambdaWorker, Operation, StackDriver, cfn_properties
from sirlocal.fixtures import NAMES, A, declare, log_leaks, ous, sensitive_values
from sirlocal.reliability_table import SlowTable
from sirlocal.scenarios.model import Run
from sirlocal.scenarios.play import check_deliveries, scaled_timing
from sirlocal.scenarios.shared import N1
from sirlocal.services import LocalServices, free_port


def _same_bodies(run: Run, deliveries: Sequence[Delivery], label: str) -> None:
    bodies = [p.body for d in deliveries for p in d.accepted]
    run.expect(len(bodies) >= 2, f"{label}: expected several answers, got {len(bodies)}")
    # Compared as JSON documents (as CloudFormation reads them): the replayed answer's
    # Data comes back from the idempotency store with its keys in another order.
    run.expect(all(b == bodies[0] for b in bodies), f"{label}: the answers differ")


def duplicate_in_a_row(run: Run) -> None:
    """The same Create event delivered twice to a warm worker, then once more cold."""
    stack = run.stack
    event = stack.event("Create", cfn_properties(declare(MembershipName=NAMES[1])))
    first = stack.deliver(event)
    second = stack.deliver(event)
    stack.worker.kill()
    third = stack.deliver(event)
    run.expect(third.results[0].cold, "third delivery: expected a cold start")
    check_deliveries(run, [first, second, third], None)
    _same_bodies(run, [first, second, third], "duplicate in a row")
    answer = first.answer
    run.expect(answer is not None and answer.ok, "duplicate in a row: first answer not SUCCESS")
    run.statuses.append("3 x SUCCESS" if all(d.answer for d in (first, second, third)) else "?")


def duplicate_at_once(run: Run) -> None:
    """The same Create event delivered to two warm workers at the same moment: one
    execution, one answer."""
    stack = run.stack
    workers = [run.pool.get(0), run.pool.get(1)]
    for worker in workers:
        worker.start()
    run.services.emulator.hang("GetMembership", 1.5)
    event = stack.event("Create", cfn_properties(declare(MembershipName=NAMES[1])))
    delivery = stack.deliver(event, workers=workers)
    check_deliveries(run, [delivery], None)
    # Both dispatchers start the same execution (same name, same input): it answers once.
    run.expect(len(delivery.accepted) == 1, f"expected 1 answer, got {len(delivery.accepted)}")
    executions = run.services.states.executions(str(event["RequestId"]))
    run.expect(len(executions) == 1, f"{len(executions)} executions, expected 1")
    run.statuses.append(f"{len(delivery.accepted)} x {delivery.answer and delivery.answer.status}")


def table_unreachable(run: Run) -> None:
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
            check_deliveries(run, operation.deliveries, None)
        finally:
            run.extra_logs.append(worker.logs())
            run.extra_urls += [str(d.event["ResponseURL"]) for d in stack.deliveries]


def without_features(services: LocalServices) -> None:
    """Membership A reports no optInFeatures (the seed format always has some)."""
    emulator = services.emulator
    with emulator._lock:
        emulator._memberships[A].pop("optInFeatures", None)


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


def slow_bookkeeping(timeout: float, delay: float, scale: float = 1.0) -> Callable[[Run], None]:
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


def duplicate_joins_execution(run: Run) -> None:
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


def busy_membership(run: Run) -> None:
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
        check_deliveries(run, created.deliveries, None)
    finally:
        update.join(timeout=60)
    if updated:
        run.statuses.append(f"1st stack {updated[0].stack_status}")
        run.expect(
            updated[0].stack_status == "UPDATE_COMPLETE",
            f"1st stack: {updated[0].stack_status}, expected UPDATE_COMPLETE",
        )
        check_deliveries(run, updated[0].deliveries, None)
    else:
        run.problems.append("the first stack's Update did not finish")
