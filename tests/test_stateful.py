"""Sequences of stack operations, faults and third-party changes (hypothesis stateful).

A ``RuleBasedStateMachine`` plays one custom resource through ``resource.handle``
the way CloudFormation would (a failed Create is rolled back with a Delete of
the answered id; a failed Update, or a succeeded one whose stack failed later,
with an Update whose old and new declarations are swapped; a rollback that
fails is continued), in process, against the emulator's own state rules
(``sirlocal.emulator.apply_update``, validated against botocore's model) with
faults injected per call, and a journal kept in memory. Between operations a
third party changes the name, the team, Triage or associates its own OUs.

Invariants after every step:

* a completed rollback leaves every field the rolled-back change changed as
  it was before that change, unless the third party changed it since; the
  stack's OUs are exactly as before;
* an OU the third party associated is never removed;
* each request gets exactly one answer, and a request that fails before its
  first write (invalid, journal down, reads failing) sends no UpdateMembership;
* every UpdateMembership sent is valid for the model and the service's rules.

``SIR_STATEFUL_EXAMPLES`` raises the example budget (``make stateful``).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from memory_store import MemoryStore
from sir_membership.continuation import Continuation, HandedOff
from sirlocal.emulator import ServiceError, apply_update, new_membership, service_model, validate

from sir_membership.journal import team_digest
from sir_membership.membership import state_from_api
from sir_membership.request import Request
from sir_membership.resource import Answer, Shell, handle
from sir_membership.service import MembershipService, RetryPolicy

MEMBERSHIP_ID = "m-stateful0001"
STACK = "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1"
POOL = [f"ou-st01-{i:08d}" for i in range(12)]  # what the stack may declare
THEIRS = [f"ou-f0re-{i:08d}" for i in range(4)]  # only ever associated by the third party
NAMES = ("Zero Membership", "One Membership", "Two Membership", "Their Membership")
PEOPLE = [
    {"name": f"Person {c}", "jobTitle": f"Title {c}", "email": f"{c.lower()}@example.com"}
    for c in "ABCDE"
]
TEAMS = (PEOPLE[0:2], PEOPLE[1:3], PEOPLE[2:5])
FAST = RetryPolicy(
    base_delay=0.0, max_delay=0.0, max_attempts=3, call_timeout=1.0, answer_reserve=1.0
)
EXAMPLES = int(os.environ.get("SIR_STATEFUL_EXAMPLES", "60"))
#: Where ``make stateful`` writes what this run exercised (docs/reliability.md quotes it).
REPORT = os.environ.get("SIR_STATEFUL_REPORT", "")
#: What the run exercised, counted across all examples (for the report only).
STATS: Counter[str] = Counter()


def _client_error(code: str, status: int, operation: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


@dataclass
class Faults:
    """What goes wrong during one request."""

    #: UpdateMembership number (1-based, within the request) -> what happens to it.
    updates: dict[int, str] = field(default_factory=dict)
    #: From this read on (1-based, within the request), GetMembership is denied.
    reads_fail_from: int | None = None
    journal_down: bool = False
    #: Seconds each invocation has, counted down 15 s per UpdateMembership sent; a
    #: request that needs more continues in a new invocation (the same budget).
    budget: float = 10_000.0


class FakeSecurityIR:
    """GetMembership / UpdateMembership on one membership, by the emulator's rules."""

    def __init__(self, membership: dict[str, Any]) -> None:
        self.membership = membership
        self.faults = Faults()
        self.reads = 0
        self.sent = 0
        self.update_shape = service_model().operation_model("UpdateMembership").input_shape

    def start(self, faults: Faults) -> None:
        self.faults, self.reads, self.sent = faults, 0, 0

    def get_membership(self, membershipId: str) -> dict[str, Any]:
        assert membershipId == MEMBERSHIP_ID
        self.reads += 1
        start = self.faults.reads_fail_from
        if start is not None and self.reads >= start:
            raise _client_error("AccessDeniedException", 403, "GetMembership")
        return copy.deepcopy(self.membership)

    def update_membership(self, **params: Any) -> dict[str, Any]:
        assert validate(self.update_shape, params) == [], "a request the model rejects"
        self.sent += 1
        fault = self.faults.updates.get(self.sent)
        if fault == "deny":
            raise _client_error("AccessDeniedException", 403, "UpdateMembership")
        if fault == "throttle":
            raise _client_error("ThrottlingException", 400, "UpdateMembership")
        if fault == "5xx-lost":
            raise _client_error("InternalServerException", 500, "UpdateMembership")
        try:
            updated, _ = apply_update(self.membership, params)
        except ServiceError as error:  # the planner broke a service rule: a bug
            raise AssertionError(f"the service would reject this call: {error.code}") from None
        self.membership = updated
        if fault == "5xx-applied":
            raise _client_error("InternalServerException", 500, "UpdateMembership")
        if fault == "timeout-applied":
            # Applied, but the answer never came, and no read works afterwards.
            self.faults.reads_fail_from = self.reads + 1
            raise ReadTimeoutError(endpoint_url="https://security-ir.emulated")
        return {}


def declaration(draw: Callable[[Any], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ServiceToken": "arn:token", "MembershipId": MEMBERSHIP_ID}
    name = draw(st.sampled_from([None, *NAMES[:3]]))
    if name is not None:
        out["MembershipName"] = name
    team = draw(st.sampled_from([None, 0, 1, 2]))
    if team is not None:
        out["IncidentResponseTeam"] = [
            {"Name": p["name"], "JobTitle": p["jobTitle"], "Email": p["email"]} for p in TEAMS[team]
        ]
    triage = draw(st.sampled_from([None, "true", "false"]))
    if triage is not None:
        out["OptInFeatures"] = [{"FeatureName": "Triage", "IsEnabled": triage}]
    out["OrganizationalUnits"] = sorted(draw(st.frozensets(st.sampled_from(POOL), max_size=12)))
    out["OnDelete"] = draw(st.sampled_from(["Retain", "RemoveOrganizationalUnits"]))
    return out


declarations = st.composite(declaration)()
faults = st.builds(
    Faults,
    updates=st.dictionaries(
        st.integers(1, 3),
        st.sampled_from(["deny", "throttle", "5xx-lost", "5xx-applied", "timeout-applied"]),
        max_size=2,
    ),
    reads_fail_from=st.none() | st.integers(1, 3),
    journal_down=st.sampled_from([False, False, False, True]),
    budget=st.sampled_from([10_000.0, 10_000.0, 40.0, 15.0]),
)
no_faults = st.just(Faults())


def snapshot(membership: dict[str, Any]) -> dict[str, Any]:
    state = state_from_api(membership)
    return {
        "name": state.name,
        "team": team_digest(state.team),
        "triage": state.feature_map().get("Triage", False),
        "cover": state.cover_entire_organization,
        "ous": state.organizational_units,
    }


FIELDS = ("name", "team", "triage", "cover")


class StackOfOneResource(RuleBasedStateMachine):
    """One Custom::SecurityIRMembership resource, its stack operations and everything else."""

    def __init__(self) -> None:
        super().__init__()
        #: Simulated time: each request starts an hour after the last one, and
        #: each UpdateMembership it sends takes 15 s (as ``remaining`` counts),
        #: and each sleep (a backoff, a wait for the lease or for reads) its length.
        self.started = 0.0
        self.slept = 0.0
        self.store = MemoryStore(clock=self.clock)
        self.fake = FakeSecurityIR(
            new_membership(
                {
                    "membershipId": MEMBERSHIP_ID,
                    "membershipName": NAMES[0],
                    "incidentResponseTeam": TEAMS[0],
                    "membershipAccountsConfigurations": {"organizationalUnits": POOL[:3]},
                }
            )
        )
        self.deployed: dict[str, Any] | None = None
        #: (new, old) of the last Update that succeeded: its exact reversal is its rollback.
        self.last_update: tuple[dict[str, Any], dict[str, Any]] | None = None
        self.physical = ""
        self.theirs: set[str] = set()
        self.answers = 0
        self.requests = 0
        #: The consumer stack's status, as DescribeStacks would show it.
        self.stack_status = "CREATE_IN_PROGRESS"

    # -- one request -----------------------------------------------------------------

    def send(
        self,
        kind: str,
        new: dict[str, Any],
        old: dict[str, Any] | None = None,
        physical: str = "",
        faults: Faults | None = None,
    ) -> Any:
        faults = faults or Faults()
        self.fake.start(faults)
        self.store.down = faults.journal_down
        self.started += 3600.0
        request = Request(
            kind,  # type: ignore[arg-type]
            STACK,
            str(uuid.uuid4()),
            "Membership",
            physical,
            new,
            old,
        )
        outcome = self.invoke(request, faults.budget)
        links = 1
        while isinstance(outcome, HandedOff):  # out of this invocation's time: a new one goes on
            STATS["invocations that handed the request off"] += 1
            links += 1
            assert links <= 200, "a chain of invocations that never ends"
            outcome = self.invoke(
                replace(request, continuation=Continuation(outcome.token, outcome.invocation)),
                faults.budget,
            )
        assert isinstance(outcome, Answer), outcome
        answer = outcome
        if links > 1:
            STATS["requests carried over several invocations"] += 1
        STATS[f"{kind} answered {answer.status}"] += 1
        if "unknown" in answer.reason:
            STATS["answers with an unknown outcome"] += 1
        if "-unrestored-" in answer.physical_resource_id:
            STATS["failed Creates answered -unrestored- (restored by their Delete)"] += 1
        if faults.journal_down:
            STATS["requests with the journal's table down"] += 1
        self.store.down = False
        self.requests += 1
        self.answers += 1
        if answer.status == "FAILED" and self.fake.sent == 0:
            assert self.before_request == snapshot(self.fake.membership), (
                "failed without a write, yet changed"
            )
        return answer

    def clock(self) -> float:
        return self.started + 15.0 * self.fake.sent + self.slept

    def sleep(self, seconds: float) -> None:
        self.slept += max(seconds, 0.0)

    def invoke(self, request: Request, budget: float) -> Any:
        """One invocation with ``budget`` simulated seconds; its hand-off is returned, not run."""
        start = self.clock()
        remaining = lambda: budget - (self.clock() - start)  # noqa: E731
        service = MembershipService(self.fake, remaining, policy=FAST, sleep=self.sleep)  # type: ignore[arg-type]
        shell = Shell(
            self.store,
            remaining,
            sleep=self.sleep,
            clock=self.clock,
            hand_off=lambda _m: None,
            stack_status=lambda _stack: self.stack_status,
        )
        return handle(request, service, shell)

    @property
    def state(self) -> dict[str, Any]:
        return snapshot(self.fake.membership)

    def _mark(self) -> None:
        self.before_request = self.state

    # -- rules -----------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        self.before_request = self.state

    @precondition(lambda self: self.deployed is None)
    @rule(new=declarations, fault=st.none() | faults, later_failure=st.booleans())
    def create(self, new: dict[str, Any], fault: Faults | None, later_failure: bool) -> None:
        before = self.state
        self._mark()
        self.stack_status = "CREATE_IN_PROGRESS"
        answer = self.send("Create", new, faults=fault)
        if answer.status == "FAILED" or later_failure:
            # The stack's creation rolls back: its Delete restores what the Create changed.
            self.stack_status = "ROLLBACK_IN_PROGRESS"
            if answer.status == "SUCCESS":
                STATS["rollbacks of a succeeded Create (a later resource failed)"] += 1
            self._mark()
            rollback = self.send("Delete", new, physical=answer.physical_resource_id)
            assert rollback.status == "SUCCESS", rollback.reason
            self.assert_restored(before, before, self.state)
            return
        self.deployed, self.physical = new, answer.physical_resource_id
        self.last_update = None
        self.assert_converged(new)

    @precondition(lambda self: self.deployed is not None)
    @rule(
        new=declarations,
        fault=st.none() | faults,
        later_failure=st.booleans(),
        meddle=st.none() | st.sampled_from((*FIELDS, "ou")),
        rollback_fault=st.none() | faults,
    )
    def update(
        self,
        new: dict[str, Any],
        fault: Faults | None,
        later_failure: bool,
        meddle: str | None,
        rollback_fault: Faults | None,
    ) -> None:
        assert self.deployed is not None
        old = self.deployed
        # CloudFormation sends no Update when the properties did not change.
        assume(new != old)
        # An Update that exactly reverses the previous one is that one's rollback to
        # the function (docs/semantics.md, "The change journal"): it restores, it does not
        # converge on fields a third party changed since. Rollbacks are played below.
        assume((old, new) != self.last_update)
        before = self.state
        self._mark()
        answer = self.send("Update", new, old, self.physical, fault)
        if answer.status == "SUCCESS" and not later_failure:
            self.deployed = new
            self.last_update = (new, old)
            self.assert_converged(new)
            return
        self.last_update = None
        assert answer.physical_resource_id == self.physical
        if answer.status == "FAILED" and not self.fake.sent:
            told = answer.reason.lower()
            assert "applied" not in told or "no change was applied" in told
        self.meddle(meddle)
        meddled = self.state
        self._mark()
        STATS[
            "rollbacks of a succeeded Update (a later resource failed)"
            if answer.status == "SUCCESS"
            else "rollbacks of a failed Update"
        ] += 1
        if meddle:
            STATS["rollbacks after a third-party change"] += 1
        rollback = self.send("Update", old, new, self.physical, rollback_fault)
        if rollback.status == "FAILED":  # UPDATE_ROLLBACK_FAILED: the operator continues it
            STATS["rollbacks continued after failing"] += 1
            self._mark()
            rollback = self.send("Update", old, new, self.physical)
        assert rollback.status == "SUCCESS", rollback.reason
        self.assert_restored(
            before, meddled, self.state, meddle, unknown="unknown" in answer.reason
        )

    @precondition(lambda self: self.deployed is not None)
    @rule()
    def delete(self) -> None:
        assert self.deployed is not None
        before = self.state
        self._mark()
        self.stack_status = "DELETE_IN_PROGRESS"
        answer = self.send("Delete", self.deployed, physical=self.physical)
        assert answer.status == "SUCCESS", answer.reason
        if self.deployed["OnDelete"] == "Retain":
            assert self.state == before
        else:
            assert not set(self.deployed["OrganizationalUnits"]) & self.state["ous"]
        self.deployed = None

    @rule(what=st.sampled_from((*FIELDS, "ou")))
    def third_party(self, what: str) -> None:
        STATS["third-party changes between operations"] += 1
        self.meddle(what)

    def meddle(self, what: str | None) -> None:
        m = self.fake.membership
        if what == "name":
            m["membershipName"] = NAMES[3]
        elif what == "team":
            m["incidentResponseTeam"] = copy.deepcopy(PEOPLE[3:5])
        elif what == "triage":
            m["optInFeatures"] = [{"featureName": "Triage", "isEnabled": not self.state["triage"]}]
        elif what == "cover":
            m["membershipAccountsConfigurations"]["coverEntireOrganization"] = not self.state[
                "cover"
            ]
        elif what == "ou":
            free = [o for o in THEIRS if o not in self.theirs]
            if free:
                m["membershipAccountsConfigurations"]["organizationalUnits"].append(free[0])
                self.theirs.add(free[0])

    # -- checks ----------------------------------------------------------------------

    def assert_restored(
        self,
        before: dict[str, Any],
        meddled: dict[str, Any],
        final: dict[str, Any],
        meddle: str | None = None,
        *,
        unknown: bool = False,
    ) -> None:
        """Every field back as before the change, except one the third party changed since.

        One case is undecidable by design: when the change's outcome is unknown
        and the third party set the very value the change would have set,
        compare-and-restore cannot tell the two apart and restores (unknown
        counts as possibly applied); either end is accepted there.
        """
        for name in FIELDS:
            expected = meddled[name] if meddle == name else before[name]
            if unknown and meddle == name and final[name] == before[name]:
                continue
            assert final[name] == expected, f"{name} not restored"
        assert final["ous"] - self.theirs == before["ous"] - self.theirs, "OUs not restored"

    def assert_converged(self, declared: dict[str, Any]) -> None:
        state = self.state
        if "MembershipName" in declared:
            assert state["name"] == declared["MembershipName"]
        if "OptInFeatures" in declared:
            assert state["triage"] == (declared["OptInFeatures"][0]["IsEnabled"] == "true")
        assert set(declared["OrganizationalUnits"]) <= state["ous"]

    @invariant()
    def theirs_are_never_removed(self) -> None:
        assert self.theirs <= self.state["ous"]

    @invariant()
    def one_answer_per_request(self) -> None:
        assert self.answers == self.requests

    @invariant()
    def no_live_lease_left_behind(self) -> None:
        """A lease is released, or (when time ran short) already lapsed."""
        now = self.clock()
        assert all(until <= now for _holder, until in self.store.leases.values())


def test_stack_operations_faults_and_third_parties() -> None:
    began = time.monotonic()
    run_state_machine_as_test(
        StackOfOneResource,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    if REPORT:
        write_report(REPORT, time.monotonic() - began, STATS, examples=EXAMPLES, steps=12)


def write_report(
    path: str,
    seconds: float,
    stats: Counter[str],
    *,
    examples: int,
    steps: int,
    part: str = "",
) -> None:
    """Write what a run exercised to ``path``; a ``part`` (another file's machine) is merged
    into the report the main run wrote, its counts prefixed with the part's name."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if part:
        with open(path, encoding="utf-8") as previous:
            report = json.load(previous)
        report["seconds"] = round(report["seconds"] + seconds, 1)
        report["parts"] = {
            **report.get("parts", {}),
            part: {"examples": examples, "steps_per_example": steps, "seconds": round(seconds, 1)},
        }
        counts = {k: v for k, v in report["counts"].items() if not k.startswith(f"{part}: ")}
        counts.update({f"{part}: {k}": v for k, v in stats.items()})
        report["counts"] = dict(sorted(counts.items()))
    else:
        report = {
            "examples": examples,
            "steps_per_example": steps,
            "seconds": round(seconds, 1),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": commit + (" (with uncommitted changes)" if dirty else ""),
            "counts": dict(sorted(stats.items())),
        }
    with open(path, "w", encoding="utf-8") as out:
        json.dump(report, out, indent=2)
        out.write("\n")
