"""Checks a scenario runs after its steps (``Scenario.custom``), on the finished run.

Why: some outcomes cannot be pinned as one exact call list or one final
state: how many reads follow a call of unknown outcome, which of two
jittered paths a backoff takes, the response PUTs' statuses. Each check here
reads the run (its calls, deliveries, logs) and records what broke; it drives
no stack. The custom plays that do drive stacks are in
:mod:`sirlocal.scenarios.custom`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sirlocal.fixtures import call_summary
from sirlocal.scenarios.model import Run


def put_retried(run: Run) -> None:
    delivery = run.stack.deliveries[0]
    statuses = [p.status for p in delivery.puts]
    run.expect(statuses == [500, 500, 200], f"response PUT statuses {statuses} != [500, 500, 200]")
    run.expect(len({p.raw for p in delivery.puts}) == 1, "the retried PUT bodies differ")


def put_unanswered_then_ok(run: Run) -> None:
    """The first response PUT got no answer (reset, or never answered), its retry 200."""
    delivery = run.stack.deliveries[0]
    statuses = [p.status for p in delivery.puts]
    run.expect(statuses == [None, 200], f"response PUT statuses {statuses} != [None, 200]")


def put_forbidden(run: Run) -> None:
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


def late_write_settles(run: Run) -> None:
    """Wait until the emulator answered the hung call (its answer comes after the handler's)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if len([c for c in run.calls() if c.operation == "UpdateMembership"]) >= 2:
            return
        time.sleep(0.1)
    run.problems.append("the hung UpdateMembership was never answered")


def full_reason_logged(run: Run) -> None:
    """The cut reason's full text is in the function's log (its last problem too)."""
    logs = run.pool.logs_since({})
    run.expect(
        "reason truncated for CloudFormation" in logs and "OrganizationalUnits[999]" in logs,
        "the full reason (up to OrganizationalUnits[999]) is not in the function's log",
    )


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


def fenced_out(landed: Sequence[Sequence[str]]) -> Callable[[Run], None]:
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


def cold_each_step(run: Run) -> None:
    colds = [d.results[0].cold for d in run.stack.deliveries]
    run.expect(colds == [True, True, True], f"cold starts per delivery: {colds}")
