"""A request's Work steps: unknown outcomes, the lease, the fence and the settled answer.

Each request goes in through the dispatcher and is carried by its execution's
Work steps (``steps_world``, on a simulated clock); the security-ir side is
the stateful test's fake (the emulator's own rules, faults per call), the
table its in-memory twins.
"""

from __future__ import annotations

from typing import Any

import steps_world
from sirlocal.emulator import new_membership
from steps_world import Clock, World, request, with_service
from test_stateful import MEMBERSHIP_ID, POOL, STACK, TEAMS, FakeSecurityIR, Faults

from sir_membership.resource import Answer
from sir_membership.service import RetryPolicy

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


def a_world(**options: Any) -> World:
    return with_service(Clock(), fake(), policy=FAST, **options)


def declared(ous: list[str], timeout: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ServiceToken": "t", "MembershipId": MEMBERSHIP_ID}
    out["OrganizationalUnits"] = ous
    if timeout is not None:
        out["ServiceTimeout"] = str(timeout)
    return out


def send(
    w: World,
    kind: str,
    new: dict[str, Any],
    old: dict[str, Any] | None = None,
    physical: str | None = None,
    faults: Faults | None = None,
) -> Answer:
    """The request's one answer, after its execution ended."""
    w.sir.start(faults or Faults())
    (answer,) = w.run(request(kind, new, old, physical=physical)).answers
    return answer


def ous_of(sir: FakeSecurityIR) -> set[str]:
    return set(sir.membership["membershipAccountsConfigurations"]["organizationalUnits"])


def test_an_unknown_outcome_is_never_reported_as_not_applied_and_the_rollback_resolves_it() -> None:
    """Case 5: the first call times out (it was applied) and no read works afterwards."""
    w = a_world()
    new = declared(POOL[:9])
    failed = send(w, "Create", new, faults=Faults(updates={1: "timeout-applied"}))
    assert failed.status == "FAILED"
    assert ". The outcome of 1 UpdateMembership call is unknown (it may have been applied)" in (
        failed.reason
    )
    assert "no change was applied" not in failed.reason.lower()
    assert failed.physical_resource_id.startswith("Membership-unrestored-")
    assert ous_of(w.sir) == set(POOL[:7]), "the first batch was applied"
    # CloudFormation's rollback Delete of that id restores from the journal.
    rollback = send(w, "Delete", new, physical=failed.physical_resource_id)
    assert rollback.status == "SUCCESS"
    assert ous_of(w.sir) == set(POOL[:2])


def test_a_clean_failed_create_keeps_the_id_its_delete_answers_without_the_table() -> None:
    w = a_world()
    failed = send(w, "Create", declared(POOL[:9]), faults=Faults(updates={1: "deny"}))
    assert failed.physical_resource_id.startswith("Membership-failed-")
    assert failed.reason.endswith("in the function's role. No change was applied")
    w.requests.down = w.store.down = True  # the rollback Delete needs no table
    assert send(w, "Delete", declared(POOL[:9]), physical=failed.physical_resource_id) == (
        Answer.success(failed.physical_resource_id, {})
    )


def test_a_rollback_that_arrives_between_a_check_and_its_call_restores_what_that_call_did() -> None:
    """Case 6: the rollback arrives while a Work step of the forward Update is under way.

    The window the fence cannot close: the forward step checked the fence,
    then the rollback took it, then the forward's call landed. The rollback
    waits for the membership's lease, the forward's next write is fenced
    out, and compare-and-restore puts back what that one call did.
    """
    w = a_world()
    old, new = declared(POOL[:2]), declared(POOL[:12])  # 2 calls
    send(w, "Create", old)
    w.sir.start(Faults())
    original = w.sir.update_membership
    rollback: list[Any] = []

    def rollback_arrives(**params: Any) -> dict[str, Any]:
        if not rollback:  # after the fence check of the forward's first call
            chain = w.deliver(request("Update", old, new))
            assert chain.execution is not None
            w.advance(chain.execution)  # its first step finds the membership's lease taken
            assert chain.execution.results[-1].next == "wait"
            rollback.append(chain)
        return original(**params)

    w.sir.update_membership = rollback_arrives  # type: ignore[method-assign]
    forward = w.run(request("Update", new, old))
    w.sir.update_membership = original  # type: ignore[method-assign]
    assert forward.execution is not None
    assert forward.execution.status == "ABORTED"
    assert forward.answers == [], "superseded: CloudFormation no longer waits for it"
    assert w.sir.sent == 1, "the forward's second call was fenced out"
    (back,) = rollback
    w.finish(back.execution)
    assert [a.status for a in back.answers] == ["SUCCESS"]
    assert ous_of(w.sir) == set(POOL[:2]), "exactly as before the forward Update"


def test_a_writer_that_cannot_get_the_lease_in_time_says_so_and_writes_nothing() -> None:
    w = a_world()
    w.store.leases[MEMBERSHIP_ID] = ("someone-else", w.clock.now + 3600)
    chain = w.run(request("Create", declared(POOL[:5], timeout=120)))
    (answer,) = chain.answers
    assert chain.answered_at[0] - chain.started <= 120 - 10, "within its own deadline"
    assert len(chain.steps) > 2, "it waited in Wait states, not in one step"
    assert answer.status == "FAILED"
    assert answer.reason.startswith(
        f"Membership {MEMBERSHIP_ID} is being changed by another request"
    )
    assert w.sir.sent == 0


def test_a_lapsed_lease_does_not_block() -> None:
    w = a_world()
    w.store.leases[MEMBERSHIP_ID] = ("killed-invocation", w.clock.now - 1)
    assert send(w, "Create", declared(POOL[:5])).status == "SUCCESS"
    assert w.store.leases == {}


def test_the_answer_is_settled_before_the_bookkeeping() -> None:
    """Case 8: what a step that died right after its last call leaves behind."""
    settled: list[Answer] = []
    writes_when_settled: list[int] = []
    phases: list[str] = []
    w = a_world()
    store = w.store

    def settle(answer: Answer) -> None:
        settled.append(answer)
        writes_when_settled.append(store.writes)
        entry = store.read(STACK, "Membership")
        phases.append(entry.phase if entry else "")

    w.settle = settle
    answer = send(w, "Create", declared(POOL[:5]))
    assert settled
    assert all(a == answer for a in settled)
    assert answer.status == "SUCCESS"
    # The last call's progress already recorded the final phase: only the
    # declaration record and the lease's release are left after the answer.
    assert phases[0] == "applied"
    assert store.writes == writes_when_settled[0] + 1
    assert len(store.records) == 1
    assert MEMBERSHIP_ID not in store.leases


def test_the_rollback_of_a_replacement_waits_for_the_membership_the_forward_writes() -> None:
    """A cancelled Update to a new MembershipId: its rollback leases both memberships."""
    w = a_world()
    other = "m-otherother01"
    w.store.leases[other] = ("the-forward-update", w.clock.now + 3600)
    old_declaration = {**declared(POOL[:2]), "MembershipId": other}
    chain = w.run(request("Update", declared(POOL[:2], timeout=60), old_declaration))
    (answer,) = chain.answers
    assert answer.status == "FAILED"
    assert answer.reason.startswith(f"Membership {other} is being changed by another request")
    assert (w.sir.reads, w.sir.sent) == (0, 0)


def test_a_step_that_loses_the_fence_before_its_journal_write_stops_without_an_answer() -> None:
    """The rollback takes the fence while a later step of the forward reads: no journal
    write, no call and no answer from the forward; the rollback restores what it applied."""
    w = steps_world.world("conflict", 20.0)
    old = steps_world.created(w)
    new = steps_world.declared(steps_world.BASE + steps_world.MORE[:10])  # 2 calls
    forward = w.deliver(request("Update", new, old))
    assert forward.execution is not None
    w.advance(forward.execution)
    assert forward.execution.results[-1].next == "wait"
    entry = w.store.read(STACK, "Membership")
    original = w.sir.get_membership
    back: list[Any] = []

    def rollback_arrives(**params: Any) -> dict[str, Any]:
        if not back:
            back.append(w.deliver(request("Update", old, new)))
            assert forward.execution is not None
            forward.execution.status = "RUNNING"  # its Stop has not reached this step
        return original(**params)

    w.sir.get_membership = rollback_arrives
    w.advance(forward.execution)
    w.sir.get_membership = original
    assert forward.execution.results[-1].next == "stop"
    assert w.store.read(STACK, "Membership") == entry, "the journal entry is as it was"
    assert w.sir.accepted == 1, "none after the fence changed hands"
    w.finish(back[0].execution)
    assert [a.status for a in back[0].answers] == ["SUCCESS"]
    assert forward.answers == []
    assert w.sir.ous == set(steps_world.BASE)
