"""Issue 16, "Nothing lost, for real": one scenario per numbered case of the review.

Each test plays CloudFormation's events for one stack operation (and its
Lambda retries, its rollback) and asserts only what a user can see: the
answers CloudFormation gets and the membership's state afterwards. Each
failed on d06dc78 (the review's reproductions, ``shared/review/2026-12-04``)
and passes now. They run in process on a simulated clock (``World``, the
emulator's own rules behind a propagation model), so they take milliseconds
and will run unchanged once the engine behind ``World.run`` changes.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError
from memory_store import MemoryStore
from sirlocal.emulator import ServiceError, apply_update
from test_continuation import (
    BASE,
    MORE,
    Clock,
    PropagatingIR,
    World,
    created,
    declared,
    request,
    world,
)
from test_stateful import MEMBERSHIP_ID, TEAMS

from sir_membership.errors import StackStatusUnavailable
from sir_membership.journal_codec import from_json, to_json
from sir_membership.journal_store import holder_name


def emails(w: World) -> list[str]:
    return sorted(p["email"] for p in w.sir.membership["incidentResponseTeam"])


def with_team(props: dict[str, Any], team: list[dict[str, str]]) -> dict[str, Any]:
    declared_team = [
        {"Name": p["name"], "JobTitle": p["jobTitle"], "Email": p["email"]} for p in team
    ]
    return {**props, "IncidentResponseTeam": declared_team}


def crash_after_calls(w: World, calls: int) -> Any:
    """Arm a sandbox crash right after ``calls`` more UpdateMembership calls are applied."""
    original = w.sir.update_membership
    left = [calls]

    def crashing(**params: Any) -> dict[str, Any]:
        result = original(**params)
        left[0] -= 1
        if left[0] == 0:
            w.sir.update_membership = original  # type: ignore[method-assign]
            raise KeyboardInterrupt  # the sandbox dies (OOM, runtime crash)
        return result

    w.sir.update_membership = crashing  # type: ignore[method-assign]


def crashed(w: World, req: Any) -> None:
    with pytest.raises(KeyboardInterrupt):
        w.invoke(req)


# -- 1. a Lambda retry of a crashed request (R9, (e)) ----------------------------------


def test_1_the_retry_of_a_crashed_update_removes_what_the_update_drops() -> None:
    w = world("none", 0.0, timeout=120.0)
    a = declared(BASE + MORE[:10])
    assert [x.status for x in w.run(request("Create", a)).answers] == ["SUCCESS"]
    b = declared(BASE)  # drops the 10 OUs: 2 calls of 5 removals
    update = request("Update", b, a)
    crash_after_calls(w, 1)
    crashed(w, update)
    w.clock.sleep(150.0)  # Lambda retries the same event (same RequestId)
    retry = w.run(update)
    assert [x.status for x in retry.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


def test_1_the_rollback_after_the_retry_restores_what_the_crashed_invocation_changed() -> None:
    w = world("none", 0.0, timeout=120.0)
    a = declared(BASE + MORE[:10])
    assert [x.status for x in w.run(request("Create", a)).answers] == ["SUCCESS"]
    team_before = emails(w)
    b = with_team(declared(BASE), TEAMS[2])
    update = request("Update", b, a)
    crash_after_calls(w, 1)  # the first call carries the team and 5 removals
    crashed(w, update)
    w.clock.sleep(150.0)
    assert [x.status for x in w.run(update).answers] == ["SUCCESS"]
    back = w.run(request("Update", a, b))  # another resource failed: CloudFormation rolls back
    assert [x.status for x in back.answers] == ["SUCCESS"]
    assert emails(w) == team_before
    assert w.sir.ous == set(BASE + MORE[:10])


def test_1_the_retry_counts_service_timeout_from_the_first_delivery() -> None:
    w = world("conflict", 20.0, timeout=120.0)
    a = created(w)
    b = declared(BASE + MORE[:40], timeout=300)  # 8 calls x 20 s; ServiceTimeout 300 s
    update = request("Update", b, a)
    sent_at = w.clock.now
    crash_after_calls(w, 1)
    crashed(w, update)
    w.clock.sleep(240.0 - (w.clock.now - sent_at))  # the retry, at the event's max age
    chain = w.run(update)
    (answer,) = chain.answers
    assert chain.answered_at[0] - sent_at <= 300 - 10
    assert answer.status == "FAILED"
    assert "ServiceTimeout of 300 s" in answer.reason
    # The crashed call's progress was never recorded: the count starts from the entry.
    assert re.search(r"\d+ of \d+ UpdateMembership calls were applied", answer.reason)
    # What was applied is rolled back by CloudFormation's rollback Update.
    assert [x.status for x in w.run(request("Update", a, b)).answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


# -- 2. a write applied but unanswered, then stale reads (R5) ---------------------------


class LostAnswerIR(PropagatingIR):
    """Stale reads for P s after a call; the next call's answer is lost (500 after applying);
    an add of an OU already associated is rejected on that field, as the service does."""

    lose_next = False

    def update_membership(self, **params: Any) -> dict[str, Any]:
        if not (self.model != "none" and self.clock.now + 0.1 < self.until):
            try:
                apply_update(dict(self.membership), params)
            except ServiceError as error:
                self.clock.now += 0.1
                field = "membershipAccountsConfigurationsUpdate.organizationalUnitsToAdd[0]"
                raise ClientError(
                    {
                        "Error": {"Code": error.code, "Message": "rejected"},
                        "ResponseMetadata": {"HTTPStatusCode": 400},
                        "fieldList": [{"name": field, "message": "already associated"}],
                    },  # type: ignore[typeddict-unknown-key]
                    "UpdateMembership",
                ) from None
        result = super().update_membership(**params)
        if self.lose_next:
            self.lose_next = False
            raise ClientError(
                {
                    "Error": {"Code": "InternalServerException", "Message": "lost"},
                    "ResponseMetadata": {"HTTPStatusCode": 500},
                },  # type: ignore[typeddict-item]
                "UpdateMembership",
            )
        return result


def test_2_an_applied_call_whose_answer_was_lost_is_never_not_applied() -> None:
    clock = Clock()
    w = World(clock, LostAnswerIR(clock, "stale", 20.0), MemoryStore(clock=clock), timeout=120.0)
    a = created(w)
    b = declared(BASE + MORE[:3])  # one call: add 3 OUs
    w.sir.lose_next = True  # type: ignore[attr-defined]
    (answer,) = w.run(request("Update", b, a)).answers
    assert "no change was applied" not in answer.reason
    # The repeat was refused as "already associated": that proves the first applied.
    assert answer.status == "SUCCESS"
    assert w.sir.ous == set(BASE + MORE[:3])
    back = w.run(request("Update", a, b))  # CloudFormation's rollback (another resource failed)
    assert [x.status for x in back.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


def test_2_an_unknown_outcome_that_cannot_be_proven_is_reported_unknown_and_rolled_back() -> None:
    clock = Clock()
    sir = LostAnswerIR(clock, "stale", 20.0)
    w = World(clock, sir, MemoryStore(clock=clock), timeout=120.0)
    a = created(w)
    b = declared(BASE + MORE[:3])
    sir.lose_next = True
    original = sir.update_membership
    calls = [0]

    def then_denied(**params: Any) -> dict[str, Any]:
        calls[0] += 1
        if calls[0] == 1:
            return original(**params)
        raise ClientError(
            {
                "Error": {"Code": "AccessDeniedException", "Message": "denied"},
                "ResponseMetadata": {"HTTPStatusCode": 403},
            },  # type: ignore[typeddict-item]
            "UpdateMembership",
        )

    sir.update_membership = then_denied  # type: ignore[method-assign]
    (answer,) = w.run(request("Update", b, a)).answers
    sir.update_membership = original  # type: ignore[method-assign]
    assert answer.status == "FAILED"
    assert "no change was applied" not in answer.reason
    assert "unknown (it may have been applied)" in answer.reason
    back = w.run(request("Update", a, b))
    assert [x.status for x in back.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


# -- 3. a succeeded Create undone by the stack's rollback ((b)) -------------------------


@pytest.mark.parametrize("on_delete", ["Retain", "RemoveOrganizationalUnits"])
def test_3_the_rollback_of_a_succeeded_create_restores_the_membership(on_delete: str) -> None:
    w = world("none", 0.0, timeout=60.0)
    ous_before, team_before = set(w.sir.ous), emails(w)  # BASE: there before the stack
    new = {**with_team(declared(BASE + MORE[:2]), TEAMS[2]), "OnDelete": on_delete}
    w.status = "CREATE_IN_PROGRESS"
    assert [x.status for x in w.run(request("Create", new)).answers] == ["SUCCESS"]
    w.status = "ROLLBACK_IN_PROGRESS"  # another resource of the new stack failed
    rollback = w.run(request("Delete", new))
    assert [x.status for x in rollback.answers] == ["SUCCESS"]
    assert w.sir.ous == ous_before
    assert emails(w) == team_before


def test_3_a_resource_created_by_a_failed_update_is_restored_in_the_clean_up() -> None:
    w = world("none", 0.0, timeout=60.0)
    ous_before = set(w.sir.ous)
    new = {**declared(BASE + MORE[:2]), "OnDelete": "RemoveOrganizationalUnits"}
    w.status = "UPDATE_IN_PROGRESS"  # the resource is added to an existing stack
    assert [x.status for x in w.run(request("Create", new)).answers] == ["SUCCESS"]
    w.status = "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"
    assert [x.status for x in w.run(request("Delete", new)).answers] == ["SUCCESS"]
    assert w.sir.ous == ous_before


def test_3_removing_the_resource_follows_on_delete() -> None:
    w = world("none", 0.0, timeout=60.0)
    new = {**declared(BASE + MORE[:2]), "OnDelete": "RemoveOrganizationalUnits"}
    assert [x.status for x in w.run(request("Create", new)).answers] == ["SUCCESS"]
    w.status = "DELETE_IN_PROGRESS"  # the user deletes the stack
    assert [x.status for x in w.run(request("Delete", new)).answers] == ["SUCCESS"]
    assert not w.sir.ous & set(BASE + MORE[:2])


def test_3_a_delete_that_cannot_read_the_stack_status_fails_without_a_call() -> None:
    w = world("none", 0.0, timeout=60.0)
    new = {**declared(BASE + MORE[:2]), "OnDelete": "RemoveOrganizationalUnits"}
    assert [x.status for x in w.run(request("Create", new)).answers] == ["SUCCESS"]
    w.status = ""  # DescribeStacks denied
    sent = w.sir.sent
    (answer,) = w.run(request("Delete", new)).answers
    assert answer.status == "FAILED"
    assert answer.reason == "DescribeStacks denied (injected). No change was applied"
    assert w.sir.sent == sent
    assert w.sir.ous >= set(BASE + MORE[:2])


# -- 4. a rollback with no journal entry --------------------------------------------------


def test_4_a_rollback_without_a_journal_entry_never_removes_an_ou_it_did_not_converge() -> None:
    w = world("none", 0.0, timeout=60.0)
    a = declared(BASE)  # already associated: the Create makes no call
    assert [x.status for x in w.run(request("Create", a)).answers] == ["SUCCESS"]
    assert w.sir.accepted == 0
    w.store.entries.clear()  # the entry expired (14 days), or was never kept
    theirs = MORE[0]  # associated outside the stack
    w.sir.membership["membershipAccountsConfigurations"]["organizationalUnits"].append(theirs)
    b = declared([*BASE, theirs])
    original = w.sir.get_membership

    def throttled(**_params: Any) -> dict[str, Any]:
        raise ClientError(
            {
                "Error": {"Code": "ThrottlingException", "Message": "slow down"},
                "ResponseMetadata": {"HTTPStatusCode": 429},
            },  # type: ignore[typeddict-item]
            "GetMembership",
        )

    w.sir.get_membership = throttled  # type: ignore[method-assign,assignment]
    (failed,) = w.run(request("Update", b, a)).answers  # fails before its first read
    w.sir.get_membership = original  # type: ignore[method-assign]
    assert failed.status == "FAILED"
    assert [x.status for x in w.run(request("Update", a, b)).answers] == ["SUCCESS"]
    assert theirs in w.sir.ous


# -- 5. a busy membership (R1) ----------------------------------------------------------


OTHER = "arn:aws:cloudformation:us-east-1:123456789012:stack/security-ir-other/1f0e"


@pytest.mark.parametrize(("service_timeout", "held_for"), [(60, 200.0), (900, 5000.0)])
def test_5_a_busy_membership_fails_within_service_timeout_naming_the_holder(
    service_timeout: int, held_for: float
) -> None:
    w = world("none", 0.0, timeout=300.0)
    old = created(w)
    w.store.leases[MEMBERSHIP_ID] = (f"{OTHER}#Coverage#req-1", w.clock.now + held_for)
    chain = w.run(request("Update", declared(BASE + MORE[:5], timeout=service_timeout), old))
    (answer,) = chain.answers
    assert chain.answered_at[0] - chain.started <= service_timeout - 10
    assert answer.status == "FAILED"
    assert "stack security-ir-other resource Coverage" in answer.reason
    assert "No change was applied by this request" in answer.reason
    assert "ServiceTimeout of" not in answer.reason.split("(")[0]
    assert w.sir.ous == set(BASE)


def test_holder_names_show_stack_and_logical_id_only() -> None:
    assert holder_name(f"{OTHER}#Coverage#req-1") == "stack security-ir-other resource Coverage"
    assert holder_name(f"{OTHER}#req-1") == "stack security-ir-other"
    assert holder_name("garbage") == "another request"


def test_the_stack_status_reason_names_the_permission_and_the_fix() -> None:
    from botocore.exceptions import ClientError as Denied  # noqa: PLC0415

    from sir_membership import stack_status  # noqa: PLC0415

    class DeniedClient:
        def describe_stacks(self, **_kwargs: Any) -> dict[str, Any]:
            raise Denied(
                {"Error": {"Code": "AccessDenied", "Message": "no"}},  # type: ignore[typeddict-item]
                "DescribeStacks",
            )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stack_status, "cloudformation_client", DeniedClient)
        with pytest.raises(StackStatusUnavailable) as raised:
            stack_status.stack_status(OTHER)
    assert raised.value.reason == (
        "Could not read the stack's status with cloudformation:DescribeStacks (AccessDenied), "
        "which tells a rollback of the Create (restore the membership) from a removal (follow "
        "OnDelete): allow cloudformation:DescribeStacks on this stack in the function's role, "
        "then retry the delete"
    )


# -- crashes found by the stateful test (tests/test_stateful_overlap.py) ------------------


def stale_world() -> World:
    clock = Clock()
    return World(clock, LostAnswerIR(clock, "stale", 20.0), MemoryStore(clock=clock), timeout=120.0)


def test_a_retry_after_a_crash_just_past_an_applied_call_proves_it_by_the_repeat() -> None:
    w = stale_world()
    a = created(w)
    b = declared(BASE + MORE[:3])  # one call: add 3 OUs
    update = request("Update", b, a)
    crash_after_calls(w, 1)  # applied; the sandbox dies before its progress is saved
    crashed(w, update)
    w.clock.sleep(1.0)  # reads are still stale when Lambda's retry runs
    (answer,) = w.run(update).answers
    assert answer.status == "SUCCESS"
    assert w.sir.ous == set(BASE + MORE[:3])
    assert [x.status for x in w.run(request("Update", a, b)).answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


def test_a_retry_that_runs_out_of_time_never_says_no_change_after_a_crash() -> None:
    w = world("conflict", 400.0, timeout=120.0)  # every later call is refused for 400 s
    a = created(w)
    b = declared(BASE + MORE[:10], timeout=300)
    update = request("Update", b, a)
    crash_after_calls(w, 1)
    crashed(w, update)
    w.clock.sleep(60.0)
    (answer,) = w.run(update).answers
    assert answer.status == "FAILED"
    assert "no change was applied" not in answer.reason.lower()
    assert "unknown (it may have been applied)" in answer.reason or (
        "UpdateMembership calls were applied" in answer.reason
    )
    assert [x.status for x in w.run(request("Update", a, b)).answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


def test_a_link_that_died_after_recording_its_answer_sends_it_again_without_a_call() -> None:
    w = world("conflict", 20.0, timeout=45.0)
    a = created(w)
    chain = w.run(request("Update", declared(BASE + MORE[:20]), a))  # 4 calls: several links
    (answer,) = chain.answers
    assert answer.status == "SUCCESS"
    last = w.last_invoked
    assert last is not None
    assert last.continuation is not None
    sent = w.sir.sent
    again = w.invoke(last)  # Lambda retries the link that recorded the answer
    assert again == answer
    assert w.sir.sent == sent


def test_a_retry_whose_change_is_already_being_rolled_back_still_answers_once() -> None:
    w = world("none", 0.0, timeout=60.0)
    a = created(w)
    update = request("Update", declared(BASE + MORE[:3]), a)
    crash_after_calls(w, 1)
    crashed(w, update)  # the entry is this request's, phase applying
    ((key, text),) = w.store.entries.items()
    entry = from_json(text)
    assert entry.request_id == update.request_id
    w.store.entries[key] = to_json(replace(entry, phase="restoring"))  # its rollback began
    sent = w.sir.sent
    chain = w.run(update)  # Lambda's retry of the crashed invocation
    (answer,) = chain.answers
    assert answer.status == "FAILED"
    assert answer.reason.startswith("The change was superseded by its rollback")
    assert w.sir.sent == sent
