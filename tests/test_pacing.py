"""Pacing (``pace``): waiting is free and fast, and a doomed change is refused before it writes.

On the simulated clock of ``steps_world``, under every propagation model:
the wall time of a change against the physical bound (calls x P) and the
Lambda time billed (inside Work steps, their starts included) against the
wall time, both measured in the run. A sandbox idle for less than five
minutes is reused (Lambda keeps idle sandboxes for minutes; it does not
promise how long): a warm step starts in 0.05 s, a cold one in 0.5 s.
"""

from __future__ import annotations

from typing import Any

import pytest
from steps_world import BASE, MEMBERSHIP_ID, MORE, World, created, declared, request, world

from sir_membership.errors import NO_CHANGE, with_outcome
from sir_membership.pace import Pace, doomed, waits_in
from sir_membership.pace_store import PACE_TTL_SECONDS, Pacer, TablePaces, recorded
from sir_membership.plan import Plan, UpdateRequest

WARM_FOR = 300.0
MODELS = [
    pytest.param("none", False, id="none"),
    pytest.param("conflict", False, id="conflict"),
    pytest.param("conflict", True, id="conflict-retry-after"),
    pytest.param("stale", False, id="conflict-stale-reads"),
]


def measured(
    w: World, new: dict[str, Any], old: dict[str, Any], calls: int, p: float
) -> tuple[float, float]:
    """Run the change; its wall / (calls x P) and billed / wall."""
    w.billed = 0.0
    chain = w.run(request("Update", new, old))
    assert [a.status for a in chain.answers] == ["SUCCESS"]
    assert w.killed == 0
    wall = chain.answered_at[0] - chain.started
    return wall / (calls * p), w.billed / wall


@pytest.mark.parametrize(("model", "retry_after"), MODELS)
@pytest.mark.parametrize("added", [20, 100])
@pytest.mark.parametrize("seconds", [10.0, 60.0])
def test_wall_time_stays_within_the_bound_and_waiting_bills_nothing(
    model: str, retry_after: bool, added: int, seconds: float
) -> None:
    w = world(model, seconds, retry_after=retry_after, warm_for=WARM_FOR)
    old = created(w, timeout=3600)
    new = declared(BASE + MORE[:added], 3600)
    calls = added // 5
    # The first change learns the window (no pace recorded yet)...
    wall, billed = measured(w, new, old, calls, seconds)
    assert w.sir.ous == set(BASE + MORE[:added])
    assert wall <= 1.1, f"first change: wall {wall:.3f} x calls x P"
    if model != "none" and (added > 20 or seconds > 10 or retry_after):
        assert billed <= 0.05, f"first change: billed {billed:.3f} of wall"
    elif model != "none":
        # Learning the window costs a few refused probes, each a Work step: on
        # the shortest change at the shortest window they weigh ~8 % (reported).
        assert billed <= 0.1, f"first change: billed {billed:.3f} of wall"
    pace = w.paces.paces[MEMBERSHIP_ID]
    if model != "none":
        assert pace.window is not None
        assert seconds <= pace.window <= 1.1 * seconds + 1
    # ...the next one starts from it: each accepted call is followed by a Wait state
    # for the rest of the window, not probes and sleeps.
    refused = w.sir.refused
    wall, billed = measured(w, declared(BASE, 3600), new, calls, seconds)
    assert w.sir.ous == set(BASE)
    assert wall <= 1.1, f"with the recorded pace: wall {wall:.3f} x calls x P"
    if model != "none":
        assert billed <= 0.05, f"with the recorded pace: billed {billed:.3f} of wall"
        assert w.sir.refused - refused <= 3, "a probe or two while the window tightens"


def test_a_doomed_change_is_refused_in_its_first_step_before_any_write() -> None:
    w = world("conflict", 60.0, warm_for=WARM_FOR)
    old = created(w, timeout=3600)
    learned = declared(BASE + MORE[:20], 3600)
    assert [a.status for a in w.run(request("Update", learned, old)).answers] == ["SUCCESS"]
    window = w.paces.paces[MEMBERSHIP_ID].window
    assert window is not None
    entries, records = dict(w.store.entries), dict(w.store.records)
    sent, paces = w.sir.sent, dict(w.paces.paces)
    doomed_change = declared(BASE + MORE[:120], 600)  # 20 calls: 19 windows of ~60 s
    chain = w.run(request("Update", doomed_change, learned))
    (answer,) = chain.answers
    assert answer.status == "FAILED"
    assert len(chain.steps) == 1, "refused in the first Work step"
    assert chain.answered_at[0] - chain.started < 5.0
    assert w.sir.sent == sent, "no UpdateMembership call (nor any write)"
    assert (w.store.entries, w.store.records) == (entries, records), "the journal is untouched"
    assert dict(w.paces.paces) == paces
    assert answer.reason.startswith(
        "The change needs 20 UpdateMembership calls, 19 of them after an OU or coverage change "
        f"the service takes about {window:.0f} s to apply (the pace recorded for membership "
        f"{MEMBERSHIP_ID}): about "
    )
    assert answer.reason.endswith(
        "s left of the resource's ServiceTimeout of 600 s: raise ServiceTimeout (up to 3600), "
        "split the change into several updates of fewer OUs, or set CoverEntireOrganization. "
        "No change was applied"
    )
    # A change that fits the same ServiceTimeout is not refused.
    fits = declared(BASE + MORE[:40], 600)  # 4 calls: 3 windows
    chain = w.run(request("Update", fits, learned))
    assert [a.status for a in chain.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE + MORE[:40])


def test_with_no_recorded_pace_nothing_is_refused() -> None:
    w = world("conflict", 60.0, warm_for=WARM_FOR)
    old = created(w, timeout=3600)
    chain = w.deliver(request("Update", declared(BASE + MORE[:120], 600), old))
    assert chain.execution is not None
    w.advance(chain.execution)
    assert chain.execution.results[0].next == "wait"
    assert w.sir.accepted == 1, "the first call was sent: a first change is never refused"


def test_the_pace_learns_from_refusals_and_accepted_calls() -> None:
    pace = Pace().accepted(100.0, propagating=True)
    assert (pace.last, pace.target(), pace.wait(100.1)) == (100.0, 0.0, 0.0)
    pace = pace.refusal(100.1, None)  # at once: P > 0.1; search from PROBE_FLOOR
    assert pace.floor == pytest.approx(0.1)
    assert pace.target() == 4.0
    pace = pace.refusal(104.0, None)
    assert pace.target() == pytest.approx(6.0), "the search grows by half, not doubling"
    pace = pace.accepted(106.0, propagating=True)
    assert (pace.window, pace.last, pace.refused) == (6.0, 106.0, 0)
    assert pace.target() == pytest.approx(5.0), "halfway between floor and window"
    # A refusal past the window: a small step (10 % of the window), not a backoff.
    grown = Pace(floor=5.9, window=6.0, last=200.0).refusal(206.0, None)
    assert grown.target() == pytest.approx(6.6)
    # Retry-After is the service's own bound.
    told = Pace(last=300.0).refusal(300.1, 9.9)
    assert told.window == pytest.approx(10.0)
    assert told.wait(300.1) == pytest.approx(9.9)
    # A refusal long after the last change is not about it: nothing learned.
    assert Pace(last=1.0).refusal(5000.0, None).floor == 0.0
    # A call sent long after it was due does not bound the window.
    assert Pace(floor=0.1, last=1.0).accepted(5000.0, propagating=True).window is None
    # Calls accepted with no refusal between them (a retry's backoff, or just their own
    # latency): no evidence of propagation, so no window, and never a wait.
    quick = Pace().accepted(10.0, propagating=True).accepted(11.5, propagating=True)
    assert quick.window is None
    assert quick.wait(11.5) == 0.0
    # A tiny window that was learned (refused, then accepted at once) is not waited for either.
    tiny = Pace(floor=0.05, last=10.0).accepted(10.1, propagating=True)
    assert tiny.window == pytest.approx(0.1)
    assert tiny.wait(10.1) == 0.0
    assert Pace.from_item(Pace(1.0, 2.0, 3.0, 4).to_item()) == Pace(1.0, 2.0, 3.0, 4)
    assert Pace.from_item({"floor": "x"}) == Pace()


def test_only_calls_after_an_ou_or_coverage_change_wait() -> None:
    team_only = UpdateRequest("m-1", membership_name="n")
    ous = UpdateRequest("m-1", ous_to_add=("ou-a",))
    assert waits_in(Plan("m-1", (team_only,))) == 0
    assert waits_in(Plan("m-1", (team_only, ous))) == 0
    assert waits_in(Plan("m-1", (ous, ous, ous))) == 2
    plan = Plan("m-1", (ous, ous, ous))
    assert doomed(None, plan, 0.0, time_left=1.0, service_timeout=60) is None
    assert doomed(Pace(floor=1.0), plan, 0.0, time_left=1.0, service_timeout=60) is None
    assert doomed(Pace(window=10.0), plan, 0.0, time_left=20.0, service_timeout=60) is None
    reason = doomed(Pace(window=10.0), plan, 0.0, time_left=19.0, service_timeout=60)
    assert reason is not None
    assert reason.endswith(with_outcome("", NO_CHANGE))


def test_the_pace_item_holds_numbers_only_expires_and_never_fails_a_change() -> None:
    import boto3  # noqa: PLC0415
    from moto import mock_aws  # noqa: PLC0415

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        now = [1_000_000.0]
        book = TablePaces(client, "t", clock=lambda: now[0])
        assert book.read_pace("m-1") is None
        pace = Pace(floor=57.25, window=61.25, last=999_990.0, refused=1)
        book.write_pace("m-1", pace)
        item = client.get_item(TableName="t", Key={"id": {"S": "pace#m-1"}})["Item"]
        assert item == {
            "id": {"S": "pace#m-1"},
            "floor": {"N": "57.250"},
            "window": {"N": "61.250"},
            "last": {"N": "999990.000"},
            "refused": {"N": "1"},
            "expiration": {"N": str(int(now[0]) + PACE_TTL_SECONDS)},
        }
        assert book.read_pace("m-1") == pace
        now[0] += PACE_TTL_SECONDS + 1  # DynamoDB deletes expired items late: not known
        assert book.read_pace("m-1") is None
        # A table that cannot be reached: pacing is advice, the change goes on.
        broken = TablePaces(client, "no-such-table")
        assert recorded(broken, "m-1") is None
        pacer = Pacer(broken, "m-1", lambda: 5.0)
        pacer.accepted(propagating=True)
        assert pacer.pace.last == 5.0
