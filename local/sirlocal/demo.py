"""``make demo``: a readable stack story, played through the real handler, offline.

Why: a new user should see what the custom resource does to a membership
before trusting it with one. This plays one stack against a seeded
membership (create; a big update with a rename; an update that fails
part-way and is rolled back; delete) with the same harness as the
end-to-end tests (:func:`sirlocal.services.local_services`,
:class:`sirlocal.driver.WorkerPool`, :class:`sirlocal.driver.StackDriver`),
so what it shows is what the tests check. For every step it prints the
stack events, the security-ir calls and the membership afterwards, with
names, titles, emails and the membership name masked, and it checks the
stack status and the state the step promises. Exit status 1 means a check
failed; every process started here is stopped on the way out.
"""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from sirlocal.driver import (
    DriverError,
    Operation,
    StackDriver,
    WorkerPool,
    format_events,
    worker_env,
)
from sirlocal.fixtures import (
    FOREIGN,
    NAMES,
    A,
    Expect,
    call_summary,
    declare,
    log_leaks,
    ou,
    ous,
    seed,
    sensitive_values,
    state_problems,
)
from sirlocal.scenarios import configure_tasks
from sirlocal.services import LocalServices, local_services
from sirlocal.story import (
    ChapterResult,
    changes,
    describe_state,
    indent,
    restored_problems,
    scrub,
    summary,
)

#: The seeded membership: 7 OUs this stack will declare plus one associated by someone else.
SEED = seed(A, ou_ids=[*ous(1, 7), FOREIGN[0]])
_ON_DELETE = "RemoveOrganizationalUnits"  # so the Delete step has something to show
CREATED = declare(OrganizationalUnits=ous(1, 8), OnDelete=_ON_DELETE)
#: +12 (ou 9..20) -7 (ou 1..7) and a rename.
UPDATED = declare(MembershipName=NAMES[1], OrganizationalUnits=ous(8, 20), OnDelete=_ON_DELETE)
#: +8 (ou 21..28) -4 (ou 9..12) and another rename: two UpdateMembership calls.
FAILING = declare(
    MembershipName=NAMES[2], OrganizationalUnits=[ou(8), *ous(13, 28)], OnDelete=_ON_DELETE
)


@dataclass(frozen=True)
class Chapter:
    """One step of the story: what it does, what must hold afterwards."""

    title: str
    what: str
    expect_status: str
    act: Callable[[StackDriver, LocalServices], Operation]
    expect: Expect | None = None  # the membership afterwards (None: not checked)
    same_as_before: bool = False  # the membership must end as it was before the step
    updates: int | None = None  # UpdateMembership calls the step must make (None: not checked)
    promise: str = ""


def _failing_update(stack: StackDriver, services: LocalServices) -> Operation:
    """The update with a fault armed: the 2nd UpdateMembership from now is refused, once."""
    services.emulator.fail("UpdateMembership", on_call=2, times=1, error="AccessDeniedException")
    try:
        return stack.update(FAILING)
    finally:
        services.emulator.clear_faults()


CHAPTERS: tuple[Chapter, ...] = (
    Chapter(
        "create",
        "adopt the membership: declare 8 OUs (7 already associated) and its current name",
        "CREATE_COMPLETE",
        lambda stack, _: stack.create(CREATED),
        Expect(ous=frozenset({*ous(1, 8), FOREIGN[0]}), name=NAMES[0]),
        promise="one read, one write (+1 OU); the foreign OU is left alone",
        updates=1,
    ),
    Chapter(
        "update",
        "add 12 OUs, remove 7, rename the membership",
        "UPDATE_COMPLETE",
        lambda stack, _: stack.update(UPDATED),
        Expect(ous=frozenset({*ous(8, 20), FOREIGN[0]}), name=NAMES[1]),
        promise="max(ceil(12/5), ceil(7/5)) = 3 UpdateMembership calls, the rename in the first",
        updates=3,
    ),
    Chapter(
        "failed update, rolled back",
        "add 8 OUs, remove 4, rename again; the 2nd UpdateMembership call is refused "
        "(fault injected: AccessDeniedException)",
        "UPDATE_ROLLBACK_COMPLETE",
        _failing_update,
        same_as_before=True,
        promise="UPDATE_FAILED naming the applied calls, then CloudFormation's rollback "
        "(old and new swapped) restores the membership exactly as it was before this step",
    ),
    Chapter(
        "delete",
        f"delete the stack (OnDelete: {_ON_DELETE})",
        "DELETE_COMPLETE",
        lambda stack, _: stack.delete(),
        Expect(ous=frozenset({FOREIGN[0]}), name=NAMES[1]),
        promise="the 13 declared OUs are removed (3 calls); the OU associated by someone else "
        "stays",
        updates=3,
    ),
)


# --------------------------------------------------------------------------- showing state


# --------------------------------------------------------------------------- the story


def play_chapter(
    chapter: Chapter, number: int, stack: StackDriver, services: LocalServices, out: TextIO
) -> ChapterResult:
    """Run one chapter, print what happened, and check what it promised."""
    print(f"\n== {number}. {chapter.title}: {chapter.what}", file=out)
    print(f"   expected: {chapter.expect_status}; {chapter.promise}", file=out)
    before = services.emulator.state(A)
    started = time.time()
    operation = chapter.act(stack, services)
    after = services.emulator.state(A)
    calls = [c for c in services.emulator.calls() if c.timestamp >= started]
    print(f"\n  Stack events ({operation.seconds:.2f} s):", file=out)
    print(format_events(operation.events), file=out)
    secrets = sensitive_values(SEED, CREATED, UPDATED, FAILING)
    for answer in operation.answers:
        if not answer.ok:  # the table cuts reasons short; this one is the story's point
            reason = scrub(answer.reason, secrets)
            text = textwrap.fill(f"The FAILED answer's reason: {reason}", 96)
            print("\n" + textwrap.indent(text, "    "), file=out)
    writes = sum(1 for c in calls if c.operation == "UpdateMembership")
    print(f"\n  security-ir calls ({len(calls)}, {writes} UpdateMembership):", file=out)
    print(indent([call_summary(c) for c in calls] or ["(none)"]), file=out)
    print(f"\n  Membership after (changed: {changes(before, after)}):", file=out)
    print(indent(describe_state(after)), file=out)
    result = ChapterResult(chapter.title, chapter.expect_status, operation.stack_status)
    if operation.stack_status != chapter.expect_status:
        result.problems.append(
            f"stack is {operation.stack_status}, expected {chapter.expect_status}"
        )
    if chapter.expect is not None:
        result.problems += state_problems(after, chapter.expect, "membership")
    if chapter.updates is not None and writes != chapter.updates:
        result.problems.append(f"{writes} UpdateMembership calls, expected {chapter.updates}")
    if chapter.same_as_before:
        result.problems += restored_problems(before, after)
    verdict = "ok" if result.ok else "CHECK FAILED: " + "; ".join(result.problems)
    print(f"\n  -> {verdict}", file=out)
    return result


def run_story(services: LocalServices, pool: WorkerPool, out: TextIO) -> list[ChapterResult]:
    """Seed the membership and play every chapter on one stack; also check the logs for leaks."""
    services.emulator.seed(SEED)
    print(f"Seeded membership {A} ('A' in the call list):", file=out)
    print(indent(describe_state(services.emulator.state(A))), file=out)
    print(f"    ({FOREIGN[0]} stands for an OU associated outside this stack)", file=out)
    marks, task_mark = pool.log_marks(), services.states.log_mark()
    worker = pool.get(0)
    configure_tasks(services, pool, worker.timeout)
    stack = StackDriver(
        services.receiver,
        worker,
        stack_name="sir-membership-demo",
        states=services.states,
    )
    results: list[ChapterResult] = []
    for number, chapter in enumerate(CHAPTERS, start=1):
        try:
            results.append(play_chapter(chapter, number, stack, services, out))
        except DriverError as error:  # a broken answer contract, no answer, wrong stack state
            problem = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            print(f"\n  -> CHECK FAILED: {problem}; the story stops here", file=out)
            results.append(ChapterResult(chapter.title, chapter.expect_status, "-", [problem]))
            break
    urls = [str(d.event["ResponseURL"]) for d in stack.deliveries]
    logs = pool.logs_since(marks) + services.states.logs(task_mark)
    leaks = log_leaks(logs, sensitive_values(SEED, CREATED, UPDATED, FAILING), urls)
    hygiene = ChapterResult("function logs", "no sensitive value", "checked", leaks)
    print(
        f"\nFunction logs: {len(stack.deliveries)} invocations, "
        + ("no name, email, job title, membership name or ResponseURL in them" if not leaks else "")
        + "; ".join(leaks),
        file=out,
    )
    return [*results, hygiene]


def main(out: TextIO = sys.stdout) -> int:
    """Start the stand-ins, play the story, stop everything; 0 when every check held."""
    began = time.monotonic()
    print("sir-membership demo: one stack, played as CloudFormation plays it, offline.", file=out)
    print(
        "Starting the security-ir emulator, moto (DynamoDB) and the response receiver...", file=out
    )
    with local_services() as services, WorkerPool(worker_env(services.child_env())) as pool:
        worker = pool.get(0).start()
        print(
            f"  security-ir emulator  {services.security_ir_url}\n"
            f"  DynamoDB (moto)       {services.dynamodb_url} (table {services.table_name})\n"
            f"  response receiver     {services.receiver.base_url} (HTTPS, throw-away CA)\n"
            f"  Lambda worker         pid {worker.pid}, real handler, 30 s timeout\n",
            file=out,
        )
        results = run_story(services, pool, out)
    still_running = [w.name for w in pool.workers if w.alive]
    if services.moto.process.poll() is None:
        still_running.append("moto")
    print("\n".join(summary(results)), file=out)
    print(
        f"Still running: {', '.join(still_running)}"
        if still_running
        else f"Stopped the emulator, the receiver, moto and {len(pool.workers)} worker(s); "
        f"{time.monotonic() - began:.1f} s in all.",
        file=out,
    )
    return 0 if all(r.ok for r in results) and not still_running else 1


if __name__ == "__main__":
    sys.exit(main())
