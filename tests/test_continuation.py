"""A request carried across invocations, in process, on a simulated clock.

The service is the stateful test's fake (the emulator's own rules) behind a
propagation model: after each accepted OU change, UpdateMembership is
refused with ConflictException for P seconds (with or without
``retryAfterSeconds``), and under ``stale`` GetMembership shows the change
only after P. Each invocation has ``timeout`` seconds of the simulated clock;
the hand-off queues the continuation, which the harness runs as Lambda would
(a fresh invocation with the same event and the marker).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from memory_store import MemoryStore
from sir_membership.continuation import Continuation, HandedOff, Outcome, Stopped
from sirlocal.emulator import new_membership
from test_stateful import MEMBERSHIP_ID, STACK, TEAMS, FakeSecurityIR

from sir_membership import continuation
from sir_membership.errors import ContinuationFailed, StackStatusUnavailable
from sir_membership.request import Request
from sir_membership.resource import Answer, Shell, handle, replay
from sir_membership.service import MembershipService, RetryPolicy

BASE = [f"ou-ct01-{i:08d}" for i in range(2)]
MORE = [f"ou-ct02-{i:08d}" for i in range(1000)]
POLICY = RetryPolicy(call_timeout=13.0, answer_reserve=6.0)


class Clock:
    """Simulated time: sleeping advances it, nothing else does (calls take 0.1 s)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


class PropagatingIR(FakeSecurityIR):
    """The fake service under one propagation model (``none``, ``conflict``, ``stale``)."""

    def __init__(
        self, clock: Clock, model: str, seconds: float, *, retry_after: bool = False
    ) -> None:
        super().__init__(
            new_membership(
                {
                    "membershipId": MEMBERSHIP_ID,
                    "incidentResponseTeam": TEAMS[0],
                    "membershipAccountsConfigurations": {"organizationalUnits": BASE},
                }
            )
        )
        self.clock, self.model, self.seconds, self.retry_after = clock, model, seconds, retry_after
        self.until = 0.0
        self.previous: dict[str, Any] | None = None
        self.accepted = 0
        self.refused = 0

    def get_membership(self, membershipId: str) -> dict[str, Any]:
        self.clock.now += 0.1
        shown = super().get_membership(membershipId)
        if self.model == "stale" and self.clock.now < self.until and self.previous is not None:
            shown["membershipAccountsConfigurations"] = copy.deepcopy(self.previous)
        return shown

    def update_membership(self, **params: Any) -> dict[str, Any]:
        self.clock.now += 0.1
        if self.model != "none" and self.clock.now < self.until:
            self.refused += 1
            response: dict[str, Any] = {
                "Error": {"Code": "ConflictException", "Message": "propagating"},
                "ResponseMetadata": {"HTTPStatusCode": 409},
            }
            if self.retry_after:
                response["ResponseMetadata"]["HTTPHeaders"] = {
                    "retry-after": str(int(self.until - self.clock.now) + 1)
                }
            raise ClientError(response, "UpdateMembership")  # type: ignore[arg-type]
        before = copy.deepcopy(self.membership["membershipAccountsConfigurations"])
        result = super().update_membership(**params)
        self.accepted += 1
        if "membershipAccountsConfigurationsUpdate" in params and self.model != "none":
            self.until, self.previous = self.clock.now + self.seconds, before
        return result

    @property
    def ous(self) -> set[str]:
        return set(self.membership["membershipAccountsConfigurations"]["organizationalUnits"])


def declared(ous: list[str], timeout: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ServiceToken": "t", "MembershipId": MEMBERSHIP_ID}
    out["OrganizationalUnits"] = ous
    if timeout is not None:
        out["ServiceTimeout"] = str(timeout)
    return out


@dataclass
class Chain:
    """One request and every invocation it took."""

    outcomes: list[Outcome] = field(default_factory=list)
    started: float = 0.0
    answered_at: list[float] = field(default_factory=list)

    @property
    def answers(self) -> list[Answer]:
        return [o for o in self.outcomes if isinstance(o, Answer)]


@dataclass
class World:
    clock: Clock
    sir: PropagatingIR
    store: MemoryStore
    timeout: float = 60.0
    pending: list[tuple[Request, Continuation]] = field(default_factory=list)
    fail_hand_off: bool = False
    #: The consumer stack's status as DescribeStacks shows it ("": unreadable).
    status: str = "UPDATE_COMPLETE"
    #: The event of the last invocation (a continuation's carries its marker).
    last_invoked: Request | None = None

    def invoke(self, request: Request) -> Outcome:
        self.last_invoked = request
        deadline = self.clock.now + self.timeout
        remaining: Callable[[], float] = lambda: deadline - self.clock.now  # noqa: E731
        service = MembershipService(
            self.sir,  # type: ignore[arg-type]
            remaining,
            policy=POLICY,
            sleep=self.clock.sleep,
            jitter=lambda low, high: high,
        )

        def hand_off(marker: Continuation) -> None:
            if self.fail_hand_off:
                raise ContinuationFailed("lambda:InvokeFunction denied (injected)")
            self.pending.append((replace(request, continuation=marker), marker))

        shell = Shell(
            self.store,
            remaining,
            sleep=self.clock.sleep,
            clock=self.clock,
            hand_off=hand_off,
            stack_status=self.stack_status,
        )
        self.clock.now += 0.5  # a cold start
        return handle(request, service, shell)

    def stack_status(self, _stack_id: str) -> str:
        if not self.status:
            raise StackStatusUnavailable("DescribeStacks denied (injected)")
        return self.status

    def run(self, request: Request, *, until: int = 500) -> Chain:
        """The request, then each continuation it hands off, until none is left."""
        chain = Chain(started=self.clock.now)
        chain.outcomes.append(self.invoke(request))
        self._note(chain)
        for _ in range(until):
            if not self.pending:
                return chain
            following, _marker = self.pending.pop(0)
            chain.outcomes.append(self.invoke(following))
            self._note(chain)
        raise AssertionError("the chain did not end")

    def _note(self, chain: Chain) -> None:
        if isinstance(chain.outcomes[-1], Answer):
            chain.answered_at.append(self.clock.now)


def world(model: str = "conflict", seconds: float = 20.0, **options: Any) -> World:
    clock = Clock()
    sir = PropagatingIR(clock, model, seconds, retry_after=options.pop("retry_after", False))
    return World(clock, sir, MemoryStore(clock=clock), **options)


def request(kind: str, new: dict[str, Any], old: dict[str, Any] | None = None) -> Request:
    physical = MEMBERSHIP_ID if kind != "Create" else ""
    return Request(kind, STACK, str(uuid.uuid4()), "Membership", physical, new, old)  # type: ignore[arg-type]


def created(w: World, timeout: int | None = None) -> dict[str, Any]:
    old = declared(BASE, timeout)
    chain = w.run(request("Create", old))
    assert [a.status for a in chain.answers] == ["SUCCESS"]
    return old


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
    handed = [o for o in chain.outcomes if isinstance(o, HandedOff)]
    assert len(chain.outcomes) == len(handed) + 1
    if model == "none":
        assert handed == [], "no refusal: one invocation is enough"
    else:
        # Each 60 s invocation fits only a few windows of P: the work needed more.
        assert len(handed) >= (calls - 1) * seconds // 60 - 1
        elapsed = chain.answered_at[0] - chain.started
        assert elapsed <= 1.1 * (calls - 1) * seconds + 10 * len(chain.outcomes)


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
    )
    assert (
        "(last error from the service: ConflictException): raise ServiceTimeout (up to 3600) "
        f"and retry. {applied} of 20 UpdateMembership calls were applied; the stack's rollback "
        "restores them from the change journal"
    ) in reason
    # CloudFormation's rollback: the same resource, old and new swapped.
    back = w.run(request("Update", old, new))
    assert [a.status for a in back.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)
    assert len(back.outcomes) > 1, "the rollback too needed more than one invocation"


def test_a_continuation_is_the_only_one_that_answers_and_a_forged_or_stale_one_stops() -> None:
    w = world("conflict", 20.0)
    old = created(w)
    new = declared(BASE + MORE[:40])
    first = request("Update", new, old)
    outcome = w.invoke(first)
    assert isinstance(outcome, HandedOff)
    ((following, _marker),) = w.pending
    w.pending.clear()
    forged = replace(first, continuation=Continuation("0" * 32, 2))
    sent = w.sir.sent
    assert w.invoke(forged) == Stopped("not the request's current continuation")
    assert w.sir.sent == sent, "a forged continuation makes no call"
    # A duplicate delivery of the original event while the chain runs: no answer, no write.
    shell = Shell(w.store, lambda: 100.0, clock=w.clock)
    assert replay(first, shell) == Stopped("continuing elsewhere")
    second = w.invoke(following)
    assert isinstance(second, HandedOff)
    # A late retry of the link that already handed off stops: its token is stale.
    assert w.invoke(following) == Stopped("not the request's current continuation")
    chain = w.run(w.pending.pop(0)[0])
    assert [a.status for a in chain.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE + MORE[:40])
    # Once answered: a duplicate gets the answer, a continuation stops.
    assert replay(first, shell) == chain.answers[0]
    assert w.invoke(following) == Stopped("not the request's current continuation")


def test_a_continuation_killed_mid_call_is_retried_and_applies_nothing_twice() -> None:
    w = world("conflict", 20.0)
    old = created(w)
    new = declared(BASE + MORE[:40])
    assert isinstance(w.invoke(request("Update", new, old)), HandedOff)
    following, _ = w.pending.pop(0)
    original = w.sir.update_membership
    calls = {"n": 0}

    def killed_after_one(**params: Any) -> dict[str, Any]:
        result = original(**params)
        calls["n"] += 1
        if calls["n"] == 1:  # applied, then the sandbox dies before anything is saved
            raise KeyboardInterrupt
        return result

    w.sir.update_membership = killed_after_one  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        w.invoke(following)
    w.sir.update_membership = original  # type: ignore[method-assign]
    w.clock.sleep(70)  # Lambda retries the same event after its timeout (and the lease lapses)
    chain = w.run(following)
    assert [a.status for a in chain.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE + MORE[:40])
    assert w.sir.accepted == 8


def test_the_rollback_of_a_cancelled_update_stops_its_continuation() -> None:
    w = world("conflict", 20.0)
    old = created(w)
    new = declared(BASE + MORE[:40])
    assert isinstance(w.invoke(request("Update", new, old)), HandedOff)
    forward, _ = w.pending.pop(0)
    applied = w.sir.accepted
    assert applied > 1
    back = w.run(request("Update", old, new))  # CloudFormation cancelled the update
    assert [a.status for a in back.answers] == ["SUCCESS"]
    assert w.sir.ous == set(BASE)
    sent = w.sir.sent
    assert w.invoke(forward) == Stopped("superseded by the rollback")
    assert w.sir.sent == sent
    assert w.sir.ous == set(BASE)


def test_a_hand_off_that_cannot_start_fails_with_the_applied_count() -> None:
    w = world("conflict", 20.0, fail_hand_off=True)
    old = created(w)
    chain = w.run(request("Update", declared(BASE + MORE[:40]), old))
    (answer,) = chain.answers
    assert answer.status == "FAILED"
    assert "could not" not in answer.reason or "lambda:InvokeFunction denied" in answer.reason
    assert (
        "; lambda:InvokeFunction denied (injected). "
        f"{w.sir.accepted} of 8 UpdateMembership calls were applied; "
        "the stack's rollback restores them from the change journal"
    ) in answer.reason


def test_no_hand_off_record_is_written_when_the_work_fits() -> None:
    w = world("none", 0.0)
    old = created(w)
    writes = w.store.writes
    chain = w.run(request("Update", declared(BASE + MORE[:20]), old))
    assert [a.status for a in chain.answers] == ["SUCCESS"]
    assert w.store.handoffs == {}
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


def test_the_hand_off_record_round_trips_and_the_marker_is_checked() -> None:
    record = continuation.Handoff("r", "a" * 32, 1.5, 600, 3, True, 9.0, Answer.success("m", {}))
    assert continuation.from_json(continuation.to_json(record)) == record
    assert continuation.marker_problem({"Token": "a" * 32, "Invocation": 2}) is None
    assert continuation.marker_problem({"Token": "A" * 32, "Invocation": 2}) is not None
    assert continuation.marker_problem({"Token": "a" * 32, "Invocation": True}) is not None
    assert continuation.marker_problem({"Token": "a" * 32, "Invocation": 1}) is not None
    assert continuation.marker_problem({"Token": "a" * 32}) is not None
    assert continuation.service_timeout({"ServiceTimeout": "600"}) == 600
    assert continuation.service_timeout({"ServiceTimeout": "7200"}) == 3600
    assert continuation.service_timeout({}) == 3600
    for outcome in (Answer.failed("p", "why"), HandedOff("b" * 32, 4), Stopped("x")):
        assert continuation.outcome_from_dict(continuation.outcome_to_dict(outcome)) == outcome
