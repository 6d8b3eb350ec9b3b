"""A request carried by its execution's Work steps, in process, on a simulated clock.

Events go in through the dispatcher, the state machine is played as its
definition says (``steps_world``), and the tests look only at what a user
sees: the answers PUT to each ResponseURL, the membership afterwards, and
the calls the service received. The propagation models are the emulator's:
after each accepted OU change, UpdateMembership is refused for P seconds
(with or without Retry-After), and under ``stale`` reads lag by P.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from steps_world import (
    BASE,
    MORE,
    Crash,
    LambdaServiceError,
    created,
    declared,
    fail_after_calls,
    request,
    response_url,
    world,
)

from sir_membership.steps import service_timeout
from sir_membership.work_task import StepResult

MODELS = [
    pytest.param("none", False, id="none"),
    pytest.param("conflict", False, id="conflict"),
    pytest.param("conflict", True, id="conflict-retry-after"),
    pytest.param("stale", False, id="conflict-stale-reads"),
]


@pytest.mark.parametrize(("model", "retry_after"), MODELS)
@pytest.mark.parametrize("added", [20, 100, 1000])
def test_a_change_of_any_size_answers_success_once_with_the_bound_of_calls(
    model: str, retry_after: bool, added: int
) -> None:
    calls = -(-added // 5)
    seconds = min(20.0, 2000.0 / calls)  # calls x P within the default ServiceTimeout
    w = world(model, seconds, retry_after=retry_after)
    old = created(w)
    new = declared(BASE + MORE[:added])
    chain = w.run(request("Update", new, old))
    assert [a.status for a in chain.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE + MORE[:added])
    assert w.sir.accepted == calls, "every call applied once, none twice"
    assert w.killed == 0, "no Work step outlived its function's timeout"
    waits = [s for s in chain.steps if s.next == "wait"]
    assert len(chain.steps) == len(waits) + 1
    if model == "none":
        assert waits == [], "no refusal: one Work step is enough"
    else:
        # A refusal longer than a few seconds is waited out by a Wait state, not a sleep.
        assert len(waits) >= calls - 1
        elapsed = chain.answered_at[0] - chain.started
        assert elapsed <= 1.1 * (calls - 1) * seconds + 10 * len(chain.steps)


def test_a_change_that_cannot_finish_fails_before_service_timeout_and_its_rollback_converges() -> (
    None
):
    w = world("conflict", 20.0)
    # The rollback Update declares the old properties, with their own ServiceTimeout.
    old = created(w, timeout=900)
    new = declared(BASE + MORE[:100], timeout=300)  # 20 calls x 20 s: 400 s > 300 s
    chain = w.run(request("Update", new, old))
    assert [a.status for a in chain.answers] == ["FAILED"]
    assert chain.answered_at[0] < chain.started + 300
    reason = chain.answers[0].reason
    applied = w.sir.accepted
    assert 0 < applied < 20
    assert reason.startswith(
        "The change could not finish within the resource's ServiceTimeout of 300 s over "
        f"{len(chain.steps)} Work step(s)"
    )
    # Paced, the last step waited out the window rather than a refusal: no error to name.
    assert reason.endswith(
        ": raise ServiceTimeout (up to 3600) "
        f"and retry. {applied} of 20 UpdateMembership calls were applied; the stack's rollback "
        "restores them from the change journal"
    )
    # CloudFormation's rollback: the same resource, old and new swapped.
    back = w.run(request("Update", old, new))
    assert [a.status for a in back.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)
    assert len(back.steps) > 1, "the rollback too needed more than one Work step"


def test_one_execution_per_request_a_duplicate_joins_it_and_later_gets_the_answer() -> None:
    w = world("conflict", 20.0)
    old = created(w)
    new = declared(BASE + MORE[:40])
    forward = request("Update", new, old)
    chain = w.deliver(forward)
    execution = chain.execution
    assert execution is not None
    w.advance(execution)
    assert [(r.step, r.next) for r in execution.results] == [(1, "wait")]
    executions, sent = len(w.executions), w.sir.sent
    # A duplicate delivery while the execution runs: it joins, no answer, no write.
    again = w.deliver(forward)
    assert again.execution is execution
    assert (len(w.executions), w.sir.sent, chain.answers) == (executions, sent, [])
    w.finish(execution)
    (answer,) = chain.answers
    assert answer.status == "SUCCESS"
    assert w.sir.ous == set(BASE + MORE[:40])
    # Once answered: a duplicate gets the same answer again, without a call.
    sent = w.sir.sent
    w.deliver(forward)
    assert chain.answers == [answer, answer]
    assert w.sir.sent == sent
    assert len(w.executions) == executions


def test_a_deployment_retry_reusing_the_request_id_is_a_new_attempt_of_its_own() -> None:
    """CloudFormation may reuse a RequestId with a new ResponseURL (aws-cdk#35957)."""
    w = world("none", 0.0)
    old = created(w)
    new = declared(BASE + MORE[:5])
    update = request("Update", new, old)
    first = w.run(update)
    assert [a.status for a in first.answers] == ["SUCCESS"]
    sent = w.sir.sent
    retry = w.run(update, url=response_url(update.request_id, attempt=2))
    assert retry.keys.attempt == 2
    assert retry.keys.execution_name == f"{first.keys.execution_name}-2"
    assert [a.status for a in retry.answers] == ["SUCCESS"]
    assert w.sir.sent == sent, "the membership already holds the declaration: no call"
    assert [a.status for a in first.answers] == ["SUCCESS"], "the first attempt's answer stays"


def test_a_step_that_died_of_a_lambda_service_error_is_retried_and_applies_nothing_twice() -> None:
    w = world("conflict", 20.0)
    old = created(w)
    new = declared(BASE + MORE[:40])
    chain = w.deliver(request("Update", new, old))
    execution = chain.execution
    assert execution is not None
    w.advance(execution)  # the first step: one call, then a wait
    # The next step applies a call, then the Invoke fails on Lambda's side.
    fail_after_calls(w, 1, LambdaServiceError())
    w.finish(execution)
    history = execution.history
    retried = [i for i in range(1, len(history)) if history[i - 1 : i + 1] == ["Work", "Work"]]
    assert len(retried) == 1, "retried once, no Wait between"
    assert [a.status for a in chain.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE + MORE[:40])
    assert w.sir.accepted == 8


def test_a_step_that_crashes_answers_failed_once_and_the_rollback_restores() -> None:
    w = world("conflict", 20.0)
    old = created(w)
    new = declared(BASE + MORE[:40])  # 8 calls
    chain = w.deliver(request("Update", new, old))
    assert chain.execution is not None
    w.advance(chain.execution)
    w.advance(chain.execution)  # the Wait, then the second step...
    fail_after_calls(w, 1, Crash())  # ...applies a call, and its sandbox dies
    w.finish(chain.execution)
    (answer,) = chain.answers
    assert answer.status == "FAILED"
    assert answer.reason.startswith("The change's Work step failed (Runtime.ExitError)")
    assert answer.reason.endswith("the stack's rollback restores them from the change journal"), (
        answer.reason
    )
    assert "no change was applied" not in answer.reason.lower()
    back = w.run(request("Update", old, new))
    assert [a.status for a in back.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


def test_an_execution_stopped_while_it_waits_is_answered_with_the_calls_applied_none_unknown() -> (
    None
):
    """An operator stops the execution during a Wait: the step before it ended with its calls
    counted, so the safety net's FAILED says what was applied and no call is unknown (it said
    a call was in flight: the entry looked like that of a step that died mid-call)."""
    w = world("conflict", 20.0)
    old = created(w)
    new = declared(BASE + MORE[:40])  # 8 calls
    before = w.sir.accepted
    chain = w.deliver(request("Update", new, old))
    execution = chain.execution
    assert execution is not None
    w.advance(execution)  # the first step: a call, then a wait for the propagation
    assert execution.results[-1].next == "wait"
    applied = w.sir.accepted - before
    assert applied >= 1
    w._end(execution, "ABORTED")  # StopExecution by hand, then its status-change event
    (answer,) = chain.answers
    assert answer.status == "FAILED"
    assert f"{applied} of 8 UpdateMembership calls were applied" in answer.reason, answer.reason
    assert "unknown" not in answer.reason
    assert answer.reason.endswith("the stack's rollback restores them from the change journal")
    back = w.run(request("Update", old, new))
    assert [a.status for a in back.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)


def test_the_rollback_of_a_cancelled_update_stops_its_execution_and_fences_it_out() -> None:
    w = world("conflict", 20.0)
    old = created(w)
    new = declared(BASE + MORE[:40])
    forward = w.deliver(request("Update", new, old))
    execution = forward.execution
    assert execution is not None
    while w.sir.accepted < 2:  # paced: the second call comes a window after the first
        w.advance(execution)
    back = w.run(request("Update", old, new))  # CloudFormation cancelled the update
    assert [a.status for a in back.answers] == ["SUCCESS"]
    assert execution.status == "ABORTED"
    assert forward.answers == [], "superseded: CloudFormation no longer waits for it"
    assert w.sir.ous == set(BASE)
    # A Work step of the forward that runs anyway (the stop raced it) writes nothing.
    sent = w.sir.sent
    execution.status = "RUNNING"
    w.finish(execution)
    assert execution.results[-1].next == "stop"
    assert w.sir.sent == sent
    assert forward.answers == []
    assert w.sir.ous == set(BASE)


def test_an_answer_that_cannot_be_delivered_is_retried_and_never_changes() -> None:
    w = world("none", 0.0)
    old = created(w)
    w.failing_puts = 3
    chain = w.run(request("Update", declared(BASE + MORE[:5]), old))
    assert [a.status for a in chain.answers] == ["SUCCESS"]
    assert chain.execution is not None
    assert chain.execution.history.count("Answer") == 4
    # When every retry fails, the execution fails and the safety net sends the claimed answer.
    w.failing_puts = 7
    chain = w.run(request("Update", old, declared(BASE + MORE[:5])))
    assert chain.execution is not None
    assert chain.execution.status == "FAILED"
    assert [a.status for a in chain.answers] == ["SUCCESS"]


def test_the_journal_is_written_as_before_when_the_work_fits_one_step() -> None:
    w = world("none", 0.0)
    old = created(w)
    writes = w.store.writes
    chain = w.run(request("Update", declared(BASE + MORE[:20]), old))
    assert [a.status for a in chain.answers] == ["SUCCESS"]
    assert [s.next for s in chain.steps] == ["answer"]
    assert w.store.writes - writes == 7, (
        "first sight, the entry, progress after calls 1..3, the final phase, the record"
    )


@settings(max_examples=40, deadline=None)
@given(
    added=st.integers(min_value=0, max_value=60),
    model=st.sampled_from(["none", "conflict", "stale"]),
    seconds=st.sampled_from([1.0, 7.0, 25.0]),
    timeout=st.sampled_from([45.0, 90.0, 300.0]),
    retry_after=st.booleans(),
)
def test_any_change_converges_under_any_model(
    added: int, model: str, seconds: float, timeout: float, retry_after: bool
) -> None:
    w = world(model, seconds, retry_after=retry_after, timeout=timeout)
    old = created(w)
    chain = w.run(request("Update", declared(BASE + MORE[:added]), old))
    assert [a.status for a in chain.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE + MORE[:added])
    assert w.sir.accepted == -(-added // 5)
    assert w.killed == 0


def test_the_service_timeout_and_the_step_result_as_the_state_machine_reads_them() -> None:
    assert service_timeout({"ServiceTimeout": "600"}) == 600
    assert service_timeout({"ServiceTimeout": "7200"}) == 3600
    assert service_timeout({"ServiceTimeout": "soon"}) == 3600
    assert service_timeout({}) == 3600
    assert StepResult(3, "wait", 20).to_payload() == {"step": 3, "next": "wait", "seconds": 20}
    assert StepResult(4, "answer").to_payload() == {"step": 4, "next": "answer", "seconds": 0}


def test_a_rollback_out_of_time_in_a_later_step_says_its_count_is_that_steps() -> None:
    """Found by the bench: a rollback that restored over several steps and then ran out
    of its ServiceTimeout said '1 of 2 calls were applied' (its last step's count)."""
    w = world("conflict", 20.0)
    old = created(w, timeout=200)  # the rollback Update's own deadline: too short as well
    new = declared(BASE + MORE[:100], timeout=300)
    assert [a.status for a in w.run(request("Update", new, old)).answers] == ["FAILED"]
    applied = w.sir.accepted
    back = w.run(request("Update", old, new))
    assert len(back.steps) > 1
    (answer,) = back.answers
    assert answer.status == "FAILED"
    restored = w.sir.accepted - applied
    assert 0 < restored < applied
    assert "UpdateMembership calls were applied in this Work step; earlier steps restored" in (
        answer.reason
    ), answer.reason
    assert answer.reason.endswith(
        "; the change journal keeps what to restore: retry the rollback (continue the update "
        "rollback, or delete again)"
    )
