"""``resource.handle`` in process: unknown outcomes, the lease, and the settled answer.

The security-ir side is the stateful test's fake (the emulator's own rules);
the journal is kept in memory (the DynamoDB implementation is tested on moto
in ``test_journal_store``).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from memory_store import MemoryStore
from sirlocal.emulator import new_membership
from test_stateful import MEMBERSHIP_ID, POOL, STACK, TEAMS, FakeSecurityIR, Faults

from sir_membership.request import Request
from sir_membership.resource import Answer, Shell, handle
from sir_membership.service import MembershipService, RetryPolicy

FAST = RetryPolicy(
    base_delay=0.0, max_delay=0.0, max_attempts=3, call_timeout=1.0, answer_reserve=1.0
)


def fake() -> FakeSecurityIR:
    return FakeSecurityIR(
        new_membership(
            {
                "membershipId": MEMBERSHIP_ID,
                "incidentResponseTeam": TEAMS[0],
                "membershipAccountsConfigurations": {"organizationalUnits": POOL[:2]},
            }
        )
    )


def declared(ous: list[str]) -> dict[str, Any]:
    return {"ServiceToken": "t", "MembershipId": MEMBERSHIP_ID, "OrganizationalUnits": ous}


def send(
    sir: FakeSecurityIR,
    store: Any,
    kind: str,
    new: dict[str, Any],
    old: dict[str, Any] | None = None,
    physical: str = "",
    faults: Faults | None = None,
    settle: Any = None,
    seconds: float = 300.0,
) -> Answer:
    sir.start(faults or Faults())
    deadline = time.monotonic() + seconds
    remaining = lambda: deadline - time.monotonic()  # noqa: E731
    service = MembershipService(sir, remaining, policy=FAST, sleep=lambda _s: None)  # type: ignore[arg-type]
    request = Request(kind, STACK, str(uuid.uuid4()), "Membership", physical, new, old)  # type: ignore[arg-type]
    shell = Shell(store, remaining, settle=settle or (lambda _a: None))
    return handle(request, service, shell)


def ous_of(sir: FakeSecurityIR) -> set[str]:
    return set(sir.membership["membershipAccountsConfigurations"]["organizationalUnits"])


def test_an_unknown_outcome_is_never_reported_as_not_applied_and_the_rollback_resolves_it() -> None:
    """Case 5: the first call times out (it was applied) and no read works afterwards."""
    sir, store = fake(), MemoryStore()
    new = declared(POOL[:9])
    failed = send(sir, store, "Create", new, faults=Faults(updates={1: "timeout-applied"}))
    assert failed.status == "FAILED"
    assert ". The outcome of 1 UpdateMembership call is unknown (it may have been applied)" in (
        failed.reason
    )
    assert "no change was applied" not in failed.reason.lower()
    assert failed.physical_resource_id.startswith("Membership-unrestored-")
    assert ous_of(sir) == set(POOL[:7]), "the first batch was applied"
    # CloudFormation's rollback Delete of that id restores from the journal.
    rollback = send(sir, store, "Delete", new, physical=failed.physical_resource_id)
    assert rollback.status == "SUCCESS"
    assert ous_of(sir) == set(POOL[:2])


def test_a_clean_failed_create_keeps_the_id_its_delete_answers_without_the_table() -> None:
    sir, store = fake(), MemoryStore()
    failed = send(sir, store, "Create", declared(POOL[:9]), faults=Faults(updates={1: "deny"}))
    assert failed.physical_resource_id.startswith("Membership-failed-")
    assert failed.reason.endswith("in the function's role. No change was applied")


def test_a_second_writer_waits_for_the_lease_then_plans_against_what_the_first_left() -> None:
    """Case 6: the rollback arrives while the forward Update is still running."""
    sir, store = fake(), MemoryStore()
    old, new = declared(POOL[:2]), declared(POOL[:12])
    send(sir, store, "Create", old)
    release = threading.Event()
    original = sir.update_membership

    def slow(**params: Any) -> dict[str, Any]:
        release.wait(5)
        return original(**params)

    sir.update_membership = slow  # type: ignore[method-assign]
    answers: dict[str, Answer] = {}
    forward = threading.Thread(
        target=lambda: answers.update(forward=send(sir, store, "Update", new, old, MEMBERSHIP_ID))
    )
    forward.start()
    time.sleep(0.2)  # the forward holds the lease, mid-plan
    assert MEMBERSHIP_ID in store.leases
    threading.Timer(0.3, release.set).start()
    rollback = send(sir, store, "Update", old, new, MEMBERSHIP_ID)
    forward.join(10)
    assert answers["forward"].status == "SUCCESS"
    assert rollback.status == "SUCCESS"
    assert ous_of(sir) == set(POOL[:2]), "exactly as before the forward Update"


def test_a_writer_that_cannot_get_the_lease_in_time_says_so_and_writes_nothing() -> None:
    sir, store = fake(), MemoryStore()
    store.leases[MEMBERSHIP_ID] = ("someone-else", time.time() + 3600)
    started = time.monotonic()
    answer = send(sir, store, "Create", declared(POOL[:5]), seconds=21.5)
    assert 1.0 <= time.monotonic() - started < 3.0, "it waited within its own deadline"
    assert answer.status == "FAILED"
    assert answer.reason.startswith(
        f"Membership {MEMBERSHIP_ID} is being changed by another request"
    )
    assert sir.sent == 0


def test_a_lapsed_lease_does_not_block() -> None:
    sir, store = fake(), MemoryStore()
    store.leases[MEMBERSHIP_ID] = ("killed-invocation", time.time() - 1)
    assert send(sir, store, "Create", declared(POOL[:5])).status == "SUCCESS"
    assert store.leases == {}


def test_the_answer_is_settled_before_the_bookkeeping() -> None:
    """Case 8: what the timer would send if bookkeeping outlived the invocation."""
    sir, store = fake(), MemoryStore()
    settled: list[Answer] = []
    writes_when_settled: list[int] = []

    phases: list[str] = []

    def settle(answer: Answer) -> None:
        settled.append(answer)
        writes_when_settled.append(store.writes)
        entry = store.read(STACK, "Membership")
        phases.append(entry.phase if entry else "")

    answer = send(sir, store, "Create", declared(POOL[:5]), settle=settle)
    assert settled
    assert all(a == answer for a in settled)
    assert answer.status == "SUCCESS"
    # The last call's progress already recorded the final phase: only the
    # declaration record and the lease's release are left after the answer.
    assert phases[0] == "applied"
    assert store.writes == writes_when_settled[0] + 1
    assert (STACK, "Membership") in store.records
    assert MEMBERSHIP_ID not in store.leases


def test_the_rollback_of_a_replacement_waits_for_the_membership_the_forward_writes() -> None:
    """A cancelled Update to a new MembershipId: its rollback leases both memberships."""
    sir, store = fake(), MemoryStore()
    other = "m-otherother01"
    store.leases[other] = ("the-forward-update", time.time() + 3600)
    old_declaration = {**declared(POOL[:2]), "MembershipId": other}
    answer = send(
        sir, store, "Update", declared(POOL[:2]), old_declaration, MEMBERSHIP_ID, seconds=21.5
    )
    assert answer.status == "FAILED"
    assert answer.reason.startswith(f"Membership {other} is being changed by another request")
    assert (sir.reads, sir.sent) == (0, 0)
