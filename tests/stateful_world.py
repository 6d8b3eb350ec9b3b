"""The world of ``test_stateful_overlap``: a service and a table that crash on cue.

Kept apart from the state machine so each file keeps one job: here the fakes
(two memberships behind the emulator's rules, stale reads, lost answers, tags,
a table) and the crash points; there the stacks' stories and the invariants.

Every I/O the function does goes through one hook, ``Points``, before and
after it: each journal/table write (``MemoryStore``'s write, write_record,
first_seen, acquire, release, write_handoff), each service call (Get/Update
Membership, the tag calls), and the settling of the answer. Armed with a
number, the hook raises ``Crash`` at that point: the sandbox dies there
(no answer, no clean-up, no ``finally`` worth the name), as Lambda's would.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from memory_store import MemoryStore
from sir_membership.continuation import Handoff
from sirlocal.emulator import ServiceError, apply_update, new_membership, service_model, validate

from sir_membership.journal import Entry, Record, Touched, declaration_digest
from sir_membership.journal_codec import from_json
from sir_membership.journal_store import busy

#: What the run exercised, counted across all examples (for the report only).
STATS: Counter[str] = Counter()


class Crash(BaseException):
    """The sandbox dies at this point (out of memory, a runtime crash): nothing after runs."""


class Clock:
    """Simulated time: sleeping advances it; each service call takes 0.1 s."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


@dataclass
class Points:
    """Counts the I/O points of one invocation; raises ``Crash`` at the armed one."""

    #: The point (1-based, within the invocation) to crash at; None: no crash.
    armed: int | None = None
    #: Crash only at a point where this holds (e.g. the request's lease is live).
    only_if: Callable[[], bool] = lambda: True
    seen: int = 0
    #: Where the last crash happened (for the report).
    crashed_at: str = ""

    def arm(self, at: int | None, only_if: Callable[[], bool] = lambda: True) -> None:
        self.armed, self.only_if, self.seen, self.crashed_at = at, only_if, 0, ""

    def __call__(self, name: str) -> None:
        self.seen += 1
        armed = self.armed is not None and self.seen >= self.armed
        if armed and self.only_if():
            self.armed = None
            self.crashed_at = name
            STATS[f"crashes {name}"] += 1
            raise Crash(name)


@dataclass
class CrashingStore(MemoryStore):
    """``MemoryStore`` with a crash point before and after each of its writes."""

    point: Callable[[str], None] = lambda _name: None

    def write(self, stack_id: str, logical_id: str, entry: Entry) -> None:
        self.point("before the journal write")
        super().write(stack_id, logical_id, entry)
        self.point("after the journal write")

    def write_record(self, stack_id: str, logical_id: str, record: Record | None) -> None:
        self.point("before the declaration record's write")
        super().write_record(stack_id, logical_id, record)
        self.point("after the declaration record's write")

    def first_seen(self, stack_id: str, request_id: str, now: float) -> float:
        self.point("before first_seen")
        seen = super().first_seen(stack_id, request_id, now)
        self.point("after first_seen")
        return seen

    def acquire(
        self,
        membership_id: str,
        holder: str,
        until: float,
        *,
        wait_until: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``MemoryStore.acquire``, but a wait sleeps until the lease lapses in one step
        (the simulated clock would take thousands of polls)."""
        self.point("before the lease is taken")
        while True:
            self._check()
            held = self.leases.get(membership_id)
            if held is None or held[0] == holder or held[1] < self.clock():
                self.leases[membership_id] = (holder, until)
                break
            if self.clock() + 0.05 > wait_until:
                raise busy(membership_id, held[0])
            sleep(min(held[1] + 0.01, wait_until) - self.clock())
        self.point("after the lease is taken")

    def release(self, membership_id: str, holder: str) -> None:
        self.point("before the lease is released")
        super().release(membership_id, holder)
        self.point("after the lease is released")

    def write_handoff(self, stack_id: str, handoff: Handoff, *, replacing: str | None) -> bool:
        self.point("before the hand-off record's write")
        kept = super().write_handoff(stack_id, handoff, replacing=replacing)
        self.point("after the hand-off record's write")
        return kept


@dataclass(frozen=True)
class Running:
    """The request an invocation is carrying out, as the harness knows it."""

    stack_id: str
    logical_id: str
    request_id: str
    #: The RequestId of the change this request rolls back (its entry may be restored).
    rolls_back: str | None
    #: Every OU this resource has ever declared (old or new properties).
    ever_declared: frozenset[str]
    #: The request, for messages.
    request: Any = None


def _error(code: str, status: int, operation: str, **extra: Any) -> ClientError:
    body: dict[str, Any] = {
        "Error": {"Code": code, "Message": "injected"},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **extra,
    }
    return ClientError(body, operation)  # type: ignore[arg-type]


@dataclass
class OverlapIR:
    """Two memberships by the emulator's rules, with stale reads and faults per request.

    After an accepted OU change, GetMembership shows the OUs as they were for
    ``stale`` seconds (the service's propagation). A fault ``5xx-applied``
    applies the call and loses its answer. Adding an OU already associated
    (or removing one that is not) is refused as a ValidationException naming
    the field, as the service does; any other rule the call breaks is a bug
    of the planner and fails the test.
    """

    clock: Clock
    store: CrashingStore
    point: Callable[[str], None]
    stale: float = 0.0
    memberships: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Per membership: (shown until, the OU configuration shown meanwhile).
    shown: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    running: Running | None = None
    #: What the harness did so far (for messages).
    history: list[str] = field(default_factory=list)
    #: Per RequestId: its n-th UpdateMembership (1-based, across invocations) -> fault.
    faults: dict[str, dict[int, str]] = field(default_factory=dict)
    sent: Counter[str] = field(default_factory=Counter)
    #: Per RequestId: UpdateMembership calls that took effect (whatever the answer said).
    applied: Counter[str] = field(default_factory=Counter)

    def add(self, spec: dict[str, Any], tags: dict[str, str]) -> None:
        m = new_membership(spec)
        self.memberships[m["membershipId"]] = m
        self.tags[m["membershipArn"]] = dict(tags)

    def get_membership(self, membershipId: str) -> dict[str, Any]:
        self.point("before GetMembership")
        self.clock.now += 0.1
        shown = copy.deepcopy(self.memberships[membershipId])
        until, accounts = self.shown.get(membershipId, (0.0, {}))
        if self.clock.now < until:
            shown["membershipAccountsConfigurations"] = copy.deepcopy(accounts)
            STATS["stale reads"] += 1
        self.point("after GetMembership")
        return shown

    def update_membership(self, **params: Any) -> dict[str, Any]:
        self.point("before UpdateMembership")
        self.clock.now += 0.1
        shape = service_model().operation_model("UpdateMembership").input_shape
        assert shape is not None
        assert validate(shape, params) == [], "a request the model rejects"
        running = self.running
        assert running is not None
        self.sent[running.request_id] += 1
        fault = self.faults.get(running.request_id, {}).get(self.sent[running.request_id])
        mid = params["membershipId"]
        error: ClientError | None = None
        if fault == "throttle":
            error = _error("ThrottlingException", 400, "UpdateMembership")
        elif fault == "5xx-lost":
            error = _error("InternalServerException", 500, "UpdateMembership")
        else:
            error = self._apply(mid, params, running)
            if error is None and fault == "5xx-applied":
                STATS["answers lost after applying"] += 1
                error = _error("InternalServerException", 500, "UpdateMembership")
        self.point("after UpdateMembership")
        if error is not None:
            raise error
        return {}

    def _apply(self, mid: str, params: dict[str, Any], running: Running) -> ClientError | None:
        before = self.memberships[mid]
        refused: ServiceError | None
        try:
            updated, accounts_changed = apply_update(before, params)
        except ServiceError as error:
            refused = error
        else:
            refused = None
        if refused is not None:
            names = [f["name"] for f in refused.fields.get("fieldList", [])]
            ou_fields = ("organizationalUnitsToAdd", "organizationalUnitsToRemove")
            only_ous = all(n.split("[")[0].endswith(ou_fields) for n in names)
            assert names, f"the service would reject this call: {refused.code}"
            assert only_ous, f"the service would reject this call: {refused.code} {names}"
            STATS["calls refused as OU already (dis)associated"] += 1
            return _error(
                "ValidationException",
                400,
                "UpdateMembership",
                fieldList=refused.fields["fieldList"],
            )
        self.check_journaled(mid, params, running)
        self.check_removals(mid, params, running)
        if accounts_changed and self.stale:
            shown = self.shown.get(mid)
            accounts = before["membershipAccountsConfigurations"]
            if shown is not None and self.clock.now < shown[0]:
                accounts = shown[1]  # still showing an older state
            self.shown[mid] = (self.clock.now + self.stale, copy.deepcopy(accounts))
        self.memberships[mid] = updated
        self.applied[running.request_id] += 1
        return None

    # -- the rules the function must keep, checked at each write -------------------

    def entries_of(self, running: Running) -> list[Entry]:
        """The journal entries of the running request's resource (its own and its Deletes')."""
        return [
            from_json(text)
            for (stack, logical), text in self.store.entries.items()
            if stack == running.stack_id and logical.split("#")[0] == running.logical_id
        ]

    def check_journaled(self, mid: str, params: dict[str, Any], running: Running) -> None:
        """No UpdateMembership before an entry of this request records what it changes."""
        mine = {running.request_id, running.rolls_back}
        assert any(
            e.request_id in mine and e.membership_id == mid and covers(e.touched, params)
            for e in self.entries_of(running)
        ), (
            f"an UpdateMembership the journal does not cover: {params} {running} "
            f"{self.entries_of(running)} new={declaration_digest(running.request.properties)} "
            f"old={declaration_digest(running.request.old_properties)} {self.history}"
        )

    def check_removals(self, mid: str, params: dict[str, Any], running: Running) -> None:
        """An OU this resource never declared is never removed (the third party's, the other
        stack's own)."""
        change = params.get("membershipAccountsConfigurationsUpdate") or {}
        removed = set(change.get("organizationalUnitsToRemove") or [])
        assert removed <= running.ever_declared, (
            f"removed OUs {sorted(removed - running.ever_declared)} it never declared"
        )

    # -- tags --------------------------------------------------------------------

    def list_tags_for_resource(self, resourceArn: str) -> dict[str, Any]:
        self.point("before ListTagsForResource")
        self.clock.now += 0.1
        tags = dict(self.tags[resourceArn])
        self.point("after ListTagsForResource")
        return {"tags": tags}

    def tag_resource(self, resourceArn: str, tags: dict[str, str]) -> dict[str, Any]:
        self.point("before TagResource")
        self.clock.now += 0.1
        self._check_tags_journaled(resourceArn, set(tags))
        self.tags[resourceArn].update(tags)
        self.point("after TagResource")
        return {}

    def untag_resource(self, resourceArn: str, tagKeys: list[str]) -> dict[str, Any]:
        self.point("before UntagResource")
        self.clock.now += 0.1
        self._check_tags_journaled(resourceArn, set(tagKeys))
        for key in tagKeys:
            self.tags[resourceArn].pop(key, None)
        self.point("after UntagResource")
        return {}

    def _check_tags_journaled(self, arn: str, keys: set[str]) -> None:
        running = self.running
        assert running is not None
        mine = {running.request_id, running.rolls_back}
        assert any(
            e.request_id in mine and keys <= set(e.touched.tags_before)
            for e in self.entries_of(running)
        ), (
            f"a tag call the journal does not cover: {sorted(keys)} {running} {self.entries_of(running)}"
        )


def covers(touched: Touched, params: dict[str, Any]) -> bool:
    """Whether an entry's before-values cover everything an UpdateMembership call changes."""
    if "membershipName" in params and touched.name_before is None:
        return False
    if "incidentResponseTeam" in params and touched.team_before is None:
        return False
    features = {f["featureName"] for f in params.get("optInFeatures") or []}
    if not features <= set(touched.features_before):
        return False
    if params.get("undoMembershipCancellation") and not touched.reactivated:
        return False
    change = params.get("membershipAccountsConfigurationsUpdate") or {}
    if "coverEntireOrganization" in change and touched.cover_before is None:
        return False
    ous = set(change.get("organizationalUnitsToAdd") or []) | set(
        change.get("organizationalUnitsToRemove") or []
    )
    return ous <= touched.ous_added | touched.ous_removed
