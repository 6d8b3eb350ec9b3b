"""The review's findings that belonged to the self-invoke chain, as scenarios on the engine.

``shared/review/2026-12-04`` (commit d06dc78) reproduced each finding with
the chain's own harness. The chain is gone; each finding is replayed here as
the same story told to the engine: CloudFormation's events in, through the
dispatcher and the state machine as its definition plays it
(``steps_world``, simulated clock, the emulator's rules), and only what a
user sees out: the answers PUT to each request's ResponseURL and the
membership afterwards. Where the chain's failure had a hand-off in it, the
engine's counterpart is named: a Work step whose Invoke fails although the
function ran (Step Functions retries it), a task timeout while the function
still runs (the Catch answers; nothing kills the function), a Stop that
races the superseded execution's next step.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from steps_world import (
    BASE,
    MORE,
    Chain,
    Clock,
    World,
    created,
    declared,
    request,
    with_service,
    world,
)
from test_nothing_lost import LostAnswerIR
from test_stateful import MEMBERSHIP_ID

from sir_membership.errors import JournalUnavailable


def statuses(chain: Chain) -> list[str]:
    return [a.status for a in chain.answers]


def run_late(w: World, chain: Chain) -> None:
    """The superseded execution's next step runs anyway (its Stop raced it)."""
    execution = chain.execution
    assert execution is not None
    assert execution.status == "ABORTED", "the dispatcher stopped it"
    execution.status = "RUNNING"
    w.finish(execution)


# -- R2: a Retry-After past the deadline ---------------------------------------------------


def test_r2_a_wait_past_the_deadline_fails_in_time_with_the_counts() -> None:
    """Each OU change propagates for 250 s, and the service says so with Retry-After."""
    w = world("conflict", 250.0, retry_after=True)
    old = created(w)
    new = declared(BASE + MORE[:10], timeout=150)  # 2 calls; ServiceTimeout 150 s
    chain = w.run(request("Update", new, old))
    (answer,) = chain.answers
    assert chain.answered_at[0] - chain.started <= 150 - 10
    assert answer.status == "FAILED"
    assert "ServiceTimeout of 150 s" in answer.reason
    assert "1 of 2 UpdateMembership calls were applied" in answer.reason
    assert w.sir.accepted == 1
    # The rollback (its own ServiceTimeout: the default) converges.
    w.sir.until = 0.0  # the propagation the rollback waits for is not the point here
    assert statuses(w.run(request("Update", old, new))) == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


# -- R3: a step whose Invoke failed although the function ran ----------------------------


def test_r3_an_update_whose_step_result_was_lost_gets_one_answer() -> None:
    w = world("conflict", 20.0)
    old = created(w)
    new = declared(BASE + MORE[:15])  # 3 calls, 20 s apart
    w.lost_results = 1  # step 1 applied call 1 and returned; Step Functions saw an error
    chain = w.run(request("Update", new, old))
    assert chain.execution is not None
    assert chain.execution.history[:2] == ["Work", "Work"], "Step Functions retried the step"
    assert statuses(chain) == ["SUCCESS"]
    assert w.sir.ous == set(BASE + MORE[:15])
    assert w.sir.accepted == 3, "nothing applied twice"


def test_r3_a_create_whose_step_result_was_lost_gets_one_answer_matching_the_membership() -> None:
    w = world("conflict", 20.0)
    new = declared(BASE + MORE[:15])
    w.lost_results = 2  # the first step's result, then its retry's, were lost
    chain = w.run(request("Create", new))
    (answer,) = chain.answers
    assert answer.status == "SUCCESS"
    assert answer.physical_resource_id == MEMBERSHIP_ID
    assert w.sir.ous == set(BASE + MORE[:15])


def test_r3_a_step_retried_while_it_still_runs_never_writes_after_the_answer() -> None:
    """The Invoke fails (SdkClientException) while the function runs; Step Functions retries.

    The retry carries the request to its answer; the first invocation then
    wakes up with its old plan. It must not write: its repeat is refused
    (the OUs are associated already), and for a Create it must not undo the
    membership the answer reported.
    """
    clock = Clock()
    w = with_service(clock, LostAnswerIR(clock, "none", 0.0))
    new = declared(BASE + MORE[:15])  # 3 calls, in one step
    original = w.sir.update_membership
    woke: list[int] = []

    def invoke_fails_while_running(**params: Any) -> dict[str, Any]:
        if not woke:  # the first invocation, about to send its first call
            woke.append(-1)
            assert w.running is not None
            w.retry_while_running(w.running)
            woke[0] = w.sir.accepted
        return original(**params)

    w.sir.update_membership = invoke_fails_while_running  # type: ignore[method-assign]
    chain = w.run(request("Create", new))
    w.sir.update_membership = original  # type: ignore[method-assign]
    (answer,) = chain.answers
    assert answer.status == "SUCCESS"
    assert answer.physical_resource_id == MEMBERSHIP_ID
    assert woke == [3], "the retry applied the change, then the first invocation went on"
    assert w.sir.ous == set(BASE + MORE[:15]), "the membership is what the answer says"
    assert w.sir.accepted == 3, "the first invocation wrote nothing after the answer"
    # Its refused repeat did not rewrite the journal: the stack's rollback still restores.
    w.status = "ROLLBACK_IN_PROGRESS"
    delete = w.run(request("Delete", new, physical=MEMBERSHIP_ID))
    assert statuses(delete) == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


# -- R4: a request that lost the fence ------------------------------------------------------


def test_r4_a_forward_that_waited_for_a_busy_membership_writes_nothing_after_its_rollback() -> None:
    """(i) The forward found the membership busy before it journaled anything."""
    w = world("none", 0.0)
    old = created(w)
    new = declared(BASE + MORE[:5])
    # Another stack's request holds the membership's lease for 120 s.
    w.store.leases[MEMBERSHIP_ID] = ("arn:other-stack#Coverage#other-request", w.clock.now + 120)
    forward = w.deliver(request("Update", new, old))
    assert forward.execution is not None
    w.advance(forward.execution)
    assert forward.execution.results[-1].next == "wait", "busy: a Wait state, nothing written"
    # CloudFormation cancels the update; its rollback waits for the lease, then converges.
    back = w.run(request("Update", old, new))
    assert statuses(back) == ["SUCCESS"]
    assert w.sir.ous == set(BASE)
    sent = w.sir.sent
    run_late(w, forward)
    assert w.sir.sent == sent, "the forward wrote after its rollback"
    assert forward.answers == []
    assert w.sir.ous == set(BASE)


def test_r4_a_forward_whose_entry_a_later_update_overwrote_writes_nothing() -> None:
    """(ii) Rolled back, then the operator deploys C at once; B's next step comes last."""
    w = world("conflict", 20.0, retry_after=True)
    a = created(w)
    b = declared(BASE + MORE[:40])  # 8 calls, 20 s apart
    forward = w.deliver(request("Update", b, a))
    assert forward.execution is not None
    w.advance(forward.execution)
    assert forward.execution.results[-1].next == "wait"
    back = w.run(request("Update", a, b))  # cancelled: the rollback restores A
    assert statuses(back) == ["SUCCESS"]
    assert w.sir.ous == set(BASE)
    c = declared([*BASE, "ou-cccc-00000001"])
    w.clock.sleep(25.0)
    assert statuses(w.run(request("Update", c, a))) == ["SUCCESS"]
    assert w.sir.ous == {*BASE, "ou-cccc-00000001"}
    sent = w.sir.sent
    run_late(w, forward)
    assert w.sir.sent == sent, "B wrote over C after B was rolled back"
    assert w.sir.ous == {*BASE, "ou-cccc-00000001"}


# -- R6: a Create failing in a later step before its first call ----------------------------


def test_r6_a_create_whose_later_step_cannot_journal_is_restored_by_its_rollback() -> None:
    w = world("conflict", 20.0)
    before = set(w.sir.ous)
    new = declared(BASE + MORE[:40])  # 8 calls, 20 s apart: several steps
    create = w.deliver(request("Create", new))
    assert create.execution is not None
    w.advance(create.execution)
    assert w.sir.accepted >= 1
    real_write = w.store.write
    blips = [1]

    def flaky_write(*args: Any) -> None:  # a DynamoDB blip on the next step's first write
        if blips[0]:
            blips[0] -= 1
            raise JournalUnavailable(
                "could not write to the change journal in table t "
                "(ProvisionedThroughputExceededException)"
            )
        real_write(*args)

    w.store.write = flaky_write  # type: ignore[method-assign]
    w.finish(create.execution)
    w.store.write = real_write  # type: ignore[method-assign]
    (answer,) = create.answers
    assert answer.status == "FAILED"
    assert "calls were applied" in answer.reason
    # Undone before the answer (``-failed-``: nothing left), or left to the rollback Delete
    # (``-unrestored-``): either way, once CloudFormation rolled back, nothing stays.
    w.status = "ROLLBACK_IN_PROGRESS"
    delete = w.run(request("Delete", new, physical=answer.physical_resource_id))
    assert statuses(delete) == ["SUCCESS"]
    assert w.sir.ous == before, "the failed Create's applied calls were never restored"


def _throttled_tags(w: World) -> dict[str, bool]:
    tags: dict[str, str] = {}
    throttled = {"on": False}

    def list_tags_for_resource(resourceArn: str) -> dict[str, Any]:
        w.clock.now += 0.1
        if throttled["on"]:
            raise ClientError(
                {
                    "Error": {"Code": "ThrottlingException", "Message": "slow down"},
                    "ResponseMetadata": {"HTTPStatusCode": 429},
                },  # type: ignore[typeddict-item]
                "ListTagsForResource",
            )
        return {"tags": dict(tags)}

    def tag_resource(resourceArn: str, tags: dict[str, str]) -> dict[str, Any]:
        w.clock.now += 0.1
        tagged.update(tags)
        return {}

    tagged = tags
    w.sir.list_tags_for_resource = list_tags_for_resource
    w.sir.tag_resource = tag_resource
    return throttled


def test_r6_a_throttled_list_tags_in_a_later_step_waits_instead_of_failing() -> None:
    w = world("conflict", 20.0)
    throttled = _throttled_tags(w)
    new = {**declared(BASE + MORE[:40]), "Tags": [{"Key": "team", "Value": "security"}]}
    create = w.deliver(request("Create", new))
    assert create.execution is not None
    w.advance(create.execution)
    throttled["on"] = True
    w.advance(create.execution)  # throttled through the second step
    throttled["on"] = False
    w.finish(create.execution)
    assert statuses(create) == ["SUCCESS"]
    assert w.sir.ous == set(BASE + MORE[:40])


def test_r6_a_create_throttled_until_its_deadline_is_restored_by_its_rollback() -> None:
    w = world("conflict", 20.0)
    before = set(w.sir.ous)
    throttled = _throttled_tags(w)
    new = {
        **declared(BASE + MORE[:40], timeout=300),
        "Tags": [{"Key": "team", "Value": "security"}],
    }
    create = w.deliver(request("Create", new))
    assert create.execution is not None
    w.advance(create.execution)
    throttled["on"] = True
    w.finish(create.execution)
    (answer,) = create.answers
    assert answer.status == "FAILED"
    assert "-unrestored-" in answer.physical_resource_id, answer
    assert create.answered_at[0] - create.started <= 300 - 10
    throttled["on"] = False
    w.status = "ROLLBACK_IN_PROGRESS"
    delete = w.run(request("Delete", new, physical=answer.physical_resource_id))
    assert statuses(delete) == ["SUCCESS"]
    assert w.sir.ous == before


# -- R7: a later step of a Create times out ------------------------------------------------


def test_r7_a_create_step_that_timed_out_is_answered_unrestored_once_and_restored() -> None:
    """A later step hangs (a slow dependency) and its task times out while it still runs."""
    w = world("conflict", 20.0, retry_after=True)
    before = set(w.sir.ous)
    new = declared(BASE + MORE[:10])  # 2 calls
    create = w.deliver(request("Create", new))
    assert create.execution is not None
    w.advance(create.execution)  # call 1 applied, call 2 refused: a Wait
    assert w.sir.accepted == 1
    original = w.sir.get_membership
    hung: list[bool] = []

    def slow_read(**params: Any) -> dict[str, Any]:
        if not hung:  # step 2's first read hangs past the task's timeout
            hung.append(True)
            assert w.running is not None
            w.time_out_task(w.running)  # the Catch answers while this Lambda still runs
        return original(**params)

    w.sir.get_membership = slow_read  # type: ignore[method-assign]
    w.finish(create.execution)
    w.sir.get_membership = original  # type: ignore[method-assign]
    (answer,) = create.answers
    assert answer.status == "FAILED"
    assert "-unrestored-" in answer.physical_resource_id, answer
    assert "States.Timeout" in answer.reason
    assert w.sir.accepted == 1, "the hung step's late call was fenced out"
    w.status = "ROLLBACK_IN_PROGRESS"
    delete = w.run(request("Delete", new, physical=answer.physical_resource_id))
    assert statuses(delete) == ["SUCCESS"]
    assert w.sir.ous == before
    assert len(create.answers) == 1


def test_r7_a_create_step_killed_at_the_functions_timeout_is_answered_unrestored() -> None:
    w = world("conflict", 20.0, retry_after=True)
    before = set(w.sir.ous)
    new = declared(BASE + MORE[:10])
    create = w.deliver(request("Create", new))
    assert create.execution is not None
    w.advance(create.execution)
    original = w.sir.get_membership

    def hangs(**params: Any) -> dict[str, Any]:
        w.clock.now += 400.0  # past the Work function's 300 s: Lambda ends it
        return original(**params)

    w.sir.get_membership = hangs  # type: ignore[method-assign]
    w.advance(create.execution)
    w.sir.get_membership = original  # type: ignore[method-assign]
    w.finish(create.execution)
    (answer,) = create.answers
    assert answer.status == "FAILED"
    assert "-unrestored-" in answer.physical_resource_id
    assert "Sandbox.Timedout" in answer.reason
    w.status = "ROLLBACK_IN_PROGRESS"
    assert statuses(w.run(request("Delete", new, physical=answer.physical_resource_id))) == [
        "SUCCESS"
    ]
    assert w.sir.ous == before


# -- known finding (a): a forward request whose work starts after its own rollback ----------


def test_a_a_forward_whose_first_step_runs_after_its_rollback_writes_nothing() -> None:
    w = world("none", 0.0)
    a = created(w)
    b = declared(BASE + MORE[:5])
    forward = w.deliver(request("Update", b, a))  # recorded, its execution started...
    back = w.run(request("Update", a, b))  # ...but CloudFormation's rollback runs first
    assert statuses(back) == ["SUCCESS"]
    sent = w.sir.sent
    run_late(w, forward)  # the forward's first Work step, late
    assert w.sir.sent == sent, "the forward request wrote after its rollback completed"
    assert w.sir.ous == set(BASE)
    assert forward.answers == []
