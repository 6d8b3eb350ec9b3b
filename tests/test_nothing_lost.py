"""Issue 16, "Nothing lost, for real": one scenario per numbered case of the review.

Each test plays CloudFormation's events for one stack operation (and the
retries of its steps, its rollback) and asserts only what a user can see:
the answers CloudFormation gets and the membership's state afterwards. Each
failed on d06dc78 (the review's reproductions, ``shared/review/2026-12-04``)
and passes now. They run in process on a simulated clock through the
dispatcher and the state machine as its definition plays it
(``steps_world``), with the emulator's own rules behind a propagation model,
so they take milliseconds.

Where the home-made chain had "Lambda retries the crashed invocation", the
engine has two ways a step dies: of a Lambda service error (Step Functions
retries the step, which finds itself begun: ``LambdaServiceError``) or of a
function error (the Catch answers FAILED with what the journal shows:
``Crash``). A crash of the dispatcher before it started the execution is
retried by Lambda (the dispatcher's event is asynchronous).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sirlocal.emulator import ServiceError, apply_update
from steps_world import (
    BASE,
    MORE,
    Chain,
    Clock,
    Crash,
    LambdaServiceError,
    PropagatingIR,
    World,
    created,
    declared,
    fail_after_calls,
    request,
    with_service,
    world,
)
from test_stateful import MEMBERSHIP_ID, STACK, TEAMS

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


def retried_after_a_service_error(w: World, req: Any, calls: int = 1) -> Chain:
    """``req``'s first Work step applies ``calls`` calls, then its Invoke fails on Lambda's
    side: Step Functions retries the step, which carries the request to its answer."""
    fail_after_calls(w, calls, LambdaServiceError())
    chain = w.run(req)
    assert chain.execution is not None
    assert chain.execution.history[:2] == ["Work", "Work"], "the step was retried"
    return chain


# -- 1. a retried step of a request that died part-way (R9, (e)) ---------------------


def test_1_the_retry_of_a_step_that_died_removes_what_the_update_drops() -> None:
    w = world("none", 0.0)
    a = declared(BASE + MORE[:10])
    assert [x.status for x in w.run(request("Create", a)).answers] == ["SUCCESS"]
    b = declared(BASE)  # drops the 10 OUs: 2 calls of 5 removals
    retry = retried_after_a_service_error(w, request("Update", b, a))
    assert [x.status for x in retry.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


def test_1_the_rollback_after_the_retry_restores_what_the_step_that_died_changed() -> None:
    w = world("none", 0.0)
    a = declared(BASE + MORE[:10])
    assert [x.status for x in w.run(request("Create", a)).answers] == ["SUCCESS"]
    team_before = emails(w)
    b = with_team(declared(BASE), TEAMS[2])
    # The first call carries the team and 5 removals; then the step dies.
    retry = retried_after_a_service_error(w, request("Update", b, a))
    assert [x.status for x in retry.answers] == ["SUCCESS"]
    back = w.run(request("Update", a, b))  # another resource failed: CloudFormation rolls back
    assert [x.status for x in back.answers] == ["SUCCESS"]
    assert emails(w) == team_before
    assert w.sir.ous == set(BASE + MORE[:10])


def test_1_a_step_that_crashed_is_answered_failed_and_its_rollback_restores_everything() -> None:
    w = world("none", 0.0)
    a = declared(BASE + MORE[:10])
    assert [x.status for x in w.run(request("Create", a)).answers] == ["SUCCESS"]
    team_before = emails(w)
    b = with_team(declared(BASE), TEAMS[2])
    fail_after_calls(w, 1, Crash())  # the sandbox dies: a function error, caught
    update = request("Update", b, a)
    (answer,) = w.run(update).answers
    assert answer.status == "FAILED"
    # Its progress was never saved: the call in flight is unknown, never "not applied".
    assert answer.reason == (
        "The change's Work step failed (Runtime.ExitError); see the Work function's logs for "
        f"RequestId {update.request_id}. The outcome of 1 UpdateMembership call is unknown "
        "(it may have been applied); the stack's rollback restores them from the change journal"
    )
    back = w.run(request("Update", a, b))
    assert [x.status for x in back.answers] == ["SUCCESS"]
    assert emails(w) == team_before
    assert w.sir.ous == set(BASE + MORE[:10])


def test_1_a_dispatcher_retried_late_counts_service_timeout_from_the_first_delivery() -> None:
    """(e): the dispatcher's first delivery recorded the request, then its sandbox died before
    StartExecution; Lambda delivers the event again at its maximum age (240 s)."""
    w = world("conflict", 20.0)
    a = created(w)
    b = declared(BASE + MORE[:40], timeout=300)  # 8 calls x 20 s; ServiceTimeout 300 s
    update = request("Update", b, a)
    sent_at = w.clock.now
    w.crashing_starts = 1
    with pytest.raises(Crash):
        w.deliver(update)
    w.clock.sleep(240.0 - (w.clock.now - sent_at))  # Lambda's retry, at the event's max age
    chain = w.run(update)
    (answer,) = chain.answers
    assert chain.answered_at[0] - sent_at <= 300 - 10
    assert answer.status == "FAILED"
    assert "ServiceTimeout of 300 s" in answer.reason
    assert re.search(r"[1-9]\d* of 8 UpdateMembership calls were applied", answer.reason)
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
                raise ClientError(
                    {
                        "Error": {"Code": error.code, "Message": "rejected"},
                        "ResponseMetadata": {"HTTPStatusCode": 400},
                        "fieldList": error.fields["fieldList"],  # each OU it refuses
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
    w = with_service(clock, LostAnswerIR(clock, "stale", 20.0))
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
    w = with_service(clock, sir)
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
    w = world("none", 0.0)
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
    w = world("none", 0.0)
    ous_before = set(w.sir.ous)
    new = {**declared(BASE + MORE[:2]), "OnDelete": "RemoveOrganizationalUnits"}
    w.status = "UPDATE_IN_PROGRESS"  # the resource is added to an existing stack
    assert [x.status for x in w.run(request("Create", new)).answers] == ["SUCCESS"]
    w.status = "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"
    assert [x.status for x in w.run(request("Delete", new)).answers] == ["SUCCESS"]
    assert w.sir.ous == ous_before


def test_3_removing_the_resource_follows_on_delete() -> None:
    w = world("none", 0.0)
    new = {**declared(BASE + MORE[:2]), "OnDelete": "RemoveOrganizationalUnits"}
    assert [x.status for x in w.run(request("Create", new)).answers] == ["SUCCESS"]
    w.status = "DELETE_IN_PROGRESS"  # the user deletes the stack
    assert [x.status for x in w.run(request("Delete", new)).answers] == ["SUCCESS"]
    assert not w.sir.ous & set(BASE + MORE[:2])


def test_3_a_delete_that_cannot_read_the_stack_status_fails_without_a_call() -> None:
    w = world("none", 0.0)
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
    w = world("none", 0.0)
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
    w = world("none", 0.0)
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
    return with_service(clock, LostAnswerIR(clock, "stale", 20.0))


def test_a_retry_after_a_step_died_just_past_an_applied_call_proves_it_by_the_repeat() -> None:
    w = stale_world()
    a = created(w)
    b = declared(BASE + MORE[:3])  # one call: add 3 OUs
    # Applied; the Invoke then fails, and Step Functions retries 2 s later: reads are stale.
    (answer,) = retried_after_a_service_error(w, request("Update", b, a)).answers
    assert answer.status == "SUCCESS"
    assert w.sir.ous == set(BASE + MORE[:3])
    assert [x.status for x in w.run(request("Update", a, b)).answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


def test_a_retry_that_runs_out_of_time_never_says_no_change_after_a_step_died() -> None:
    w = world("conflict", 400.0)  # every later call is refused for 400 s
    a = created(w)
    b = declared(BASE + MORE[:10], timeout=300)
    (answer,) = retried_after_a_service_error(w, request("Update", b, a)).answers
    assert answer.status == "FAILED"
    assert "no change was applied" not in answer.reason.lower()
    assert "unknown (it may have been applied)" in answer.reason
    assert [x.status for x in w.run(request("Update", a, b)).answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


def test_a_step_that_died_after_recording_its_answer_sends_it_again_without_a_call() -> None:
    w = world("conflict", 20.0)
    a = created(w)
    died = [False]

    def after_the_record(name: str) -> None:
        if name == "after the outcome's record" and not died[0]:
            died[0] = True
            raise LambdaServiceError

    w.requests.point = after_the_record
    chain = w.run(request("Update", declared(BASE + MORE[:20]), a))  # 4 calls: several steps
    assert died[0]
    (answer,) = chain.answers
    assert answer.status == "SUCCESS"
    assert chain.execution is not None
    assert chain.execution.history[-4:] == ["Work", "Work", "Answer", "Done"], "retried"
    assert w.sir.accepted == 4, "the retried step made no call"


def test_an_answer_task_that_died_after_its_claim_sends_the_same_answer() -> None:
    w = world("none", 0.0)
    a = created(w)
    died = [False]

    def after_the_claim(name: str) -> None:
        if name == "after the answer's claim" and not died[0]:
            died[0] = True
            raise Crash

    w.requests.point = after_the_claim
    chain = w.run(request("Update", declared(BASE + MORE[:5]), a))
    assert died[0]
    assert [x.status for x in chain.answers] == ["SUCCESS"]
    assert chain.execution is not None
    assert chain.execution.history[-3:] == ["Answer", "Answer", "Done"]


def test_a_retry_whose_change_is_already_being_rolled_back_still_answers_once() -> None:
    w = world("none", 0.0)
    a = created(w)
    fail_after_calls(w, 1, LambdaServiceError())
    chain = w.deliver(request("Update", declared(BASE + MORE[:10]), a))
    assert chain.execution is not None
    w.advance(chain.execution)  # applied one call, then died: retried in 2 s
    ((key, text),) = w.store.entries.items()
    entry = from_json(text)
    assert entry.request_id == chain.request.request_id
    assert entry.phase == "applying"
    w.store.entries[key] = to_json(replace(entry, phase="restoring"))  # its rollback began
    sent = w.sir.sent
    w.finish(chain.execution)
    (answer,) = chain.answers
    assert answer.status == "FAILED"
    assert answer.reason.startswith("The change was superseded by its rollback")
    assert w.sir.sent == sent


def test_a_rollback_whose_step_crashed_never_says_no_change_and_its_continuation_converges() -> (
    None
):
    w = world("none", 0.0)
    a = created(w)
    b = declared(BASE + MORE[:15])  # 3 calls
    assert [x.status for x in w.run(request("Update", b, a)).answers] == ["SUCCESS"]
    fail_after_calls(w, 1, Crash())  # the rollback restores 5 OUs, then its sandbox dies
    (answer,) = w.run(request("Update", a, b)).answers
    assert answer.status == "FAILED"
    assert "no change was applied" not in answer.reason.lower()
    assert answer.reason.endswith(
        "Some of its restoring calls may have been applied; the change journal keeps what to "
        "restore: retry the rollback (continue the update rollback, or delete again)"
    ), answer.reason
    # The operator continues the rollback: CloudFormation sends it again (a new RequestId).
    assert [x.status for x in w.run(request("Update", a, b)).answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


def test_a_delete_whose_step_crashed_counts_from_its_own_entry() -> None:
    w = world("none", 0.0)
    new = {**declared(BASE + MORE[:10]), "OnDelete": "RemoveOrganizationalUnits"}
    assert [x.status for x in w.run(request("Create", new)).answers] == ["SUCCESS"]
    w.status = "DELETE_IN_PROGRESS"
    fail_after_calls(w, 1, Crash())
    (answer,) = w.run(request("Delete", new)).answers
    assert answer.status == "FAILED"
    assert "The outcome of 1 UpdateMembership call is unknown" in answer.reason, answer.reason
    assert [x.status for x in w.run(request("Delete", new)).answers] == ["SUCCESS"]
    assert not w.sir.ous & set(BASE + MORE[:10])


def test_a_create_whose_step_died_after_its_last_call_is_restored_by_its_rollback() -> None:
    w = world("none", 0.0)
    before = set(w.sir.ous)
    new = declared(BASE + MORE[:5])  # one call, whose progress records the final phase
    died = [False]

    def after_the_last_progress(name: str) -> None:
        entry = w.store.read(STACK, "Membership")
        if not died[0] and entry is not None and entry.phase == "applied":
            died[0] = True
            raise Crash  # before the step could record its answer

    original = w.store.write

    def write(*args: Any) -> None:
        original(*args)
        after_the_last_progress("after the journal write")

    w.store.write = write  # type: ignore[method-assign]
    (answer,) = w.run(request("Create", new)).answers
    w.store.write = original  # type: ignore[method-assign]
    assert died[0]
    assert answer.status == "FAILED"
    assert "-unrestored-" in answer.physical_resource_id, answer
    assert "1 of 1 UpdateMembership calls were applied" in answer.reason
    w.status = "ROLLBACK_IN_PROGRESS"
    delete = w.run(request("Delete", new, physical=answer.physical_resource_id))
    assert [x.status for x in delete.answers] == ["SUCCESS"]
    assert w.sir.ous == before


def test_a_rollback_of_a_step_that_died_with_a_call_in_flight_waits_for_fresh_reads() -> None:
    """Found by the two-stack stateful test: the step died right after an applied call, before
    its entry could count it; its rollback, within P of that call, read the membership without
    it and restored nothing (docs/journal.md, "Unknown stays unknown until proven")."""
    w = world("stale", 20.0)
    a = created(w)
    b = declared(BASE + MORE[:3])  # one call: add 3 OUs
    fail_after_calls(w, 1, Crash())
    (answer,) = w.run(request("Update", b, a)).answers
    assert answer.status == "FAILED"
    assert "The outcome of 1 UpdateMembership call is unknown" in answer.reason, answer.reason
    back = w.run(request("Update", a, b))  # at once: reads do not show the 3 OUs yet
    assert [x.status for x in back.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


class StaleReadsIR(LostAnswerIR):
    """Reads show an OU change P s late, and calls are never refused meanwhile (the two-stack
    test's service): a repeat is refused at once if its OU is already associated."""

    stale_until = 0.0
    #: The next call fails with a 500 before it is applied.
    fail_next = False

    def update_membership(self, **params: Any) -> dict[str, Any]:
        if self.fail_next:
            self.fail_next = False
            self.clock.now += 0.1
            raise ClientError(
                {
                    "Error": {"Code": "InternalServerException", "Message": "not applied"},
                    "ResponseMetadata": {"HTTPStatusCode": 500},
                },  # type: ignore[typeddict-item]
                "UpdateMembership",
            )
        self.until = 0.0
        try:
            return super().update_membership(**params)
        finally:
            self.stale_until, self.until = max(self.stale_until, self.until), 0.0

    def get_membership(self, membershipId: str) -> dict[str, Any]:
        self.until = self.stale_until
        try:
            return super().get_membership(membershipId)
        finally:
            self.until = 0.0


def test_a_lost_call_shown_applied_by_its_other_fields_counts_its_ous_too() -> None:
    """Found by the two-stack stateful test: a lost call that disabled Triage and added an OU;
    the read after it showed Triage (features show at once) but not the OU (stale), so the
    OU was sent again, refused as already associated, and the change answered FAILED. A call
    applies whole: what a read shows of it proves all of it."""
    clock = Clock()
    w = with_service(clock, LostAnswerIR(clock, "stale", 20.0))
    a = created(w)
    b = {
        **declared(BASE + MORE[:1]),
        "OptInFeatures": [{"FeatureName": "Triage", "IsEnabled": "false"}],
    }
    w.sir.lose_next = True  # type: ignore[attr-defined]
    (answer,) = w.run(request("Update", b, a)).answers
    assert answer.status == "SUCCESS", answer.reason
    assert w.sir.ous == set(BASE + MORE[:1])
    assert [x.status for x in w.run(request("Update", a, b)).answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


def test_a_refused_repeat_proves_a_lost_call_only_if_it_names_each_of_its_ous() -> None:
    """Found by the two-stack stateful test: another stack's resource had just associated
    one of the two OUs this Update adds (reads did not show it yet); the Update's call was
    lost unapplied, its repeat refused on that OU only, and the refusal taken as proof
    that the call was applied: SUCCESS, the other OU never associated. A call applies
    whole: had it been applied, the repeat would be refused on each of its OUs."""
    clock = Clock()
    sir = StaleReadsIR(clock, "stale", 20.0)
    w = with_service(clock, sir)
    a = created(w)
    other = request("Create", declared([MORE[1]]), stack=OTHER, logical="Coverage")
    assert [x.status for x in w.run(other).answers] == ["SUCCESS"]
    b = declared(BASE + MORE[:2])  # one call: add both (the read shows neither yet)
    sir.fail_next = True
    (answer,) = w.run(request("Update", b, a)).answers
    assert "no change was applied" not in answer.reason.lower()
    assert answer.status == "FAILED", answer.reason
    assert answer.reason.endswith(
        "The outcome of 1 UpdateMembership call is unknown (it may have been applied); the "
        "stack's rollback restores them from the change journal"
    ), answer.reason
    assert sir.ous == {*BASE, MORE[1]}


def test_a_rollback_step_retried_after_its_call_proves_it_by_the_refused_repeat() -> None:
    """Found by the two-stack stateful test: a rollback's step removed the OUs, then its
    Invoke failed; Step Functions' retry read them still there (stale), removed them again,
    was refused as not associated, and answered FAILED saying no change was applied."""
    clock = Clock()
    w = with_service(clock, StaleReadsIR(clock, "stale", 20.0))
    a = created(w)
    b = declared(BASE + MORE[:3])
    assert [x.status for x in w.run(request("Update", b, a)).answers] == ["SUCCESS"]
    clock.sleep(60.0)  # reads are fresh again
    fail_after_calls(w, 1, LambdaServiceError())  # the restoring call applied, then retried
    back = w.run(request("Update", a, b))
    assert [x.status for x in back.answers] == ["SUCCESS"], back.answers
    assert w.sir.ous == set(BASE)


def test_a_rollback_failing_in_a_later_step_never_says_no_change() -> None:
    """Found by the two-stack stateful test: a rollback restored with its first step, waited
    (Retry-After), and failed in its next step: the reason counted that step's calls only
    and said no change was applied."""
    w = world("conflict", 20.0, retry_after=True)
    a = created(w)
    b = declared(BASE + MORE[:15])  # 3 calls
    assert [x.status for x in w.run(request("Update", b, a)).answers] == ["SUCCESS"]
    w.clock.sleep(60.0)
    original, calls = w.sir.update_membership, [0]

    def denied_in_the_next_step(**params: Any) -> dict[str, Any]:
        calls[0] += 1
        if calls[0] == 3:  # 1: applied; 2: refused (Retry-After 20 s: a Wait); 3: denied
            raise ClientError(
                {
                    "Error": {"Code": "AccessDeniedException", "Message": "denied"},
                    "ResponseMetadata": {"HTTPStatusCode": 403},
                },  # type: ignore[typeddict-item]
                "UpdateMembership",
            )
        return original(**params)

    w.sir.update_membership = denied_in_the_next_step  # type: ignore[method-assign]
    back = w.run(request("Update", a, b))
    assert back.execution is not None
    history = back.execution.history
    # Restored in its first step, then waited (Retry-After, or its pace) and failed later.
    assert history[0] == "Work"
    assert "Wait" in history
    assert history[-3:] == ["Work", "Answer", "Done"]
    (answer,) = back.answers
    assert answer.status == "FAILED"
    assert answer.reason.endswith(
        "Some of its restoring calls may have been applied in an earlier step; the change "
        "journal keeps what to restore: retry the rollback (continue the update rollback, or "
        "delete again)"
    ), answer.reason


def test_a_retry_after_its_change_failed_with_an_unknown_call_never_says_no_change() -> None:
    """Found by the two-stack stateful test: a step recorded its change failed with a call of
    unknown outcome, then its Invoke failed; the retry answered from that entry 'No change
    was applied'."""
    w = world("none", 0.0)
    a = created(w)
    fail_after_calls(w, 1, LambdaServiceError())
    chain = w.deliver(request("Update", declared(BASE + MORE[:10]), a))
    assert chain.execution is not None
    w.advance(chain.execution)  # applied one call, then died: retried in 2 s
    ((key, text),) = w.store.entries.items()
    entry = from_json(text)
    w.store.entries[key] = to_json(replace(entry, phase="failed", applied=0, unknown=1))
    w.finish(chain.execution)
    (answer,) = chain.answers
    assert answer.status == "FAILED"
    assert answer.reason == (
        "the change failed in an earlier invocation. The outcome of 1 UpdateMembership call is "
        "unknown (it may have been applied); the stack's rollback restores them from the change "
        "journal"
    ), answer.reason


def test_a_create_whose_undo_died_after_a_call_is_not_carried_forward_by_the_retry() -> None:
    """Found by the two-stack stateful test: a Create failed part-way and undid its first
    call; the step died right after that restoring call, before the journal said the change
    had failed; Step Functions' retry read the entry as a change under way, saw (stale) the
    OUs the undo had removed, and answered SUCCESS without them."""
    clock = Clock()
    sir = StaleReadsIR(clock, "stale", 20.0)
    w = with_service(clock, sir)
    original, calls = sir.update_membership, [0]

    def scripted(**params: Any) -> dict[str, Any]:
        calls[0] += 1
        if calls[0] == 2:  # the Create's second call is denied: the Create undoes the first
            raise ClientError(
                {
                    "Error": {"Code": "AccessDeniedException", "Message": "denied"},
                    "ResponseMetadata": {"HTTPStatusCode": 403},
                },  # type: ignore[typeddict-item]
                "UpdateMembership",
            )
        result = original(**params)
        if calls[0] == 3:  # the undo's call applied; then the Invoke fails
            raise LambdaServiceError
        return result

    sir.update_membership = scripted  # type: ignore[method-assign]
    new = declared(BASE + MORE[:6])  # two calls: 5 OUs, then 1
    answers = w.run(request("Create", new)).answers
    sir.update_membership = original  # type: ignore[method-assign]
    assert [a.status for a in answers] == ["FAILED"], answers
    assert "no change was applied" not in answers[0].reason.lower()
    w.status = "ROLLBACK_IN_PROGRESS"
    delete = request("Delete", new, physical=answers[0].physical_resource_id)
    assert [a.status for a in w.run(delete).answers] == ["SUCCESS"]
    assert sir.ous == set(BASE)


def test_a_create_found_failed_by_a_retry_is_answered_unrestored_and_restored() -> None:
    """Found by the two-stack stateful test: a Create failed part-way and recorded it; its step
    died before the undo; the retry answered FAILED with the id of a Create that left
    nothing, so the rollback Delete answered at once and the OUs stayed."""
    w = world("none", 0.0)
    original_update, calls = w.sir.update_membership, [0]

    def denied_second(**params: Any) -> dict[str, Any]:
        calls[0] += 1
        if calls[0] == 2:
            raise ClientError(
                {
                    "Error": {"Code": "AccessDeniedException", "Message": "denied"},
                    "ResponseMetadata": {"HTTPStatusCode": 403},
                },  # type: ignore[typeddict-item]
                "UpdateMembership",
            )
        return original_update(**params)

    w.sir.update_membership = denied_second  # type: ignore[method-assign]
    original_write, died = w.store.write, [False]

    def write(*args: Any) -> None:
        original_write(*args)
        entry = w.store.read(STACK, "Membership")
        if not died[0] and entry is not None and entry.phase == "failed":
            died[0] = True
            raise LambdaServiceError  # the failure is recorded; the undo never starts

    w.store.write = write  # type: ignore[method-assign]
    new = declared(BASE + MORE[:6])  # two calls: 5 OUs, then 1 (denied)
    (answer,) = w.run(request("Create", new)).answers
    w.store.write = original_write  # type: ignore[method-assign]
    w.sir.update_membership = original_update  # type: ignore[method-assign]
    assert died[0]
    assert answer.status == "FAILED"
    assert "-unrestored-" in answer.physical_resource_id, answer
    w.status = "ROLLBACK_IN_PROGRESS"
    delete = request("Delete", new, physical=answer.physical_resource_id)
    assert [a.status for a in w.run(delete).answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


def test_a_rollback_waits_for_fresh_reads_after_an_unknown_call_a_retry_counted() -> None:
    """Found by the two-stack stateful test: a step's call applied, its Invoke failed; the
    retry counted the call unknown (when it was sent is not in the entry) and died; the
    rollback, reading at once (stale), restored nothing."""
    clock = Clock()
    w = with_service(clock, StaleReadsIR(clock, "stale", 20.0))
    a = created(w)
    b = declared(BASE + MORE[:3])
    fail_after_calls(w, 1, LambdaServiceError())
    original_write, died = w.store.write, [False]

    def write(*args: Any) -> None:
        original_write(*args)
        entry = w.store.read(STACK, "Membership")
        if not died[0] and entry is not None and entry.unknown:
            died[0] = True
            raise Crash  # the retry counted the call unknown, then died

    w.store.write = write  # type: ignore[method-assign]
    (answer,) = w.run(request("Update", b, a)).answers
    w.store.write = original_write  # type: ignore[method-assign]
    assert died[0]
    assert answer.status == "FAILED"
    assert "unknown (it may have been applied)" in answer.reason, answer.reason
    assert [x.status for x in w.run(request("Update", a, b)).answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)
