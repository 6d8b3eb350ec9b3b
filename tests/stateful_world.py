"""The world of ``test_stateful_overlap``: a service and a table that fail on cue.

Kept apart from the state machine so each file keeps one job: here the fakes
(two memberships behind the emulator's rules, stale reads, lost answers, tags,
a table) and the fault points; there the stacks' stories and the invariants.

Every I/O the function does goes through one hook, ``Points``, before and
after it: each journal/table write (``MemoryStore``'s write, write_record,
first_seen, acquire, release; the request store's writes), each service call
(Get/Update Membership, the tag calls), and the settling of the answer.
Armed with a number and a kind, the hook acts at that point as the engine
would see it: the sandbox dies there (``crash``: a function error, caught
into a FAILED answer; or, in an Answer task, retried); the Invoke fails on
Lambda's side (``service``: Step Functions retries the step, which finds
itself begun); the task times out while the function runs on (``timeout``);
the Invoke fails while the function runs on and Step Functions retries it
beside it (``invoke-error``); or CloudFormation's rollback of the request
arrives and takes the fence (``cancel``).

Both fakes also check, at the start of every write, that the request making
it still holds its resource's generation fence (``guard``): a write may land
after the fence changed hands only if it had already passed its check.
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
from sirlocal.emulator import ServiceError, apply_update, new_membership, service_model, validate
from steps_world import Clock, Crash, LambdaServiceError

from sir_membership.journal import Entry, Record, Touched, declaration_digest
from sir_membership.journal_codec import from_json
from sir_membership.journal_store import busy

__all__ = ["Clock", "Crash", "CrashingStore", "OverlapIR", "Points", "Running"]

#: What the run exercised, counted across all examples (for the report only).
STATS: Counter[str] = Counter()
#: What a fault point can do (see the module's docstring).
KINDS = ("crash", "service", "timeout", "invoke-error", "cancel")
#: The points right after a write's fence check, before the write itself.
CHECKED_WRITES = frozenset(
    f"before {what}"
    for what in (
        "UpdateMembership",
        "TagResource",
        "UntagResource",
        "the journal write",
        "the declaration record's write",
    )
)


@dataclass
class Points:
    """Counts the I/O points of one task invocation; acts at the armed one."""

    #: The point (1-based, within the invocation) to act at; None: nothing.
    armed: int | None = None
    kind: str = "crash"
    seen: int = 0
    #: Where the last fault happened (for the report).
    crashed_at: str = ""
    #: What the kinds other than ``crash`` and ``service`` do (set by the harness).
    actions: dict[str, Callable[[], None]] = field(default_factory=dict)
    #: Hears what happened at a fired point (for the failing example's story).
    told: Callable[[str], None] = lambda _what: None

    def arm(self, at: int | None, kind: str = "crash") -> None:
        self.armed, self.kind, self.seen, self.crashed_at = at, kind, 0, ""

    def __call__(self, name: str) -> None:
        self.seen += 1
        if self.armed is None or self.seen < self.armed:
            return
        if self.kind == "invoke-error" and name in CHECKED_WRITES:
            # Between a fence check and its write (docs/semantics.md: a few milliseconds,
            # one call at most) the write lands long before Step Functions' retry, 2 s
            # later, could run: the retry runs after it.
            self.armed = self.seen + 1
            return
        kind, self.armed, self.crashed_at = self.kind, None, name
        STATS[f"{kind} {name}"] += 1
        self.told(f"  {kind} {name}")
        if kind == "crash" or kind not in self.actions:
            raise Crash(name)
        if kind == "service":
            raise LambdaServiceError(name)
        self.actions[kind]()


@dataclass
class CrashingStore(MemoryStore):
    """``MemoryStore`` with a crash point before and after each of its writes."""

    point: Callable[[str], None] = lambda _name: None
    #: Raises if the request making a write no longer holds its fence.
    guard: Callable[[str], None] = lambda _what: None
    #: Hears each journal write (for the failing example's story).
    told: Callable[[str], None] = lambda _what: None

    def write(self, stack_id: str, logical_id: str, entry: Entry) -> None:
        self.guard("a journal write")
        self.point("before the journal write")
        super().write(stack_id, logical_id, entry)
        self.told(
            f"    journal {logical_id}: {entry.request_id[-4:]} {entry.phase} "
            f"{entry.applied}/{entry.planned} unknown {entry.unknown} "
            f"+{sorted(o[3:5] + o[-1] for o in entry.touched.ous_added)} "
            f"-{sorted(o[3:5] + o[-1] for o in entry.touched.ous_removed)}"
        )
        self.point("after the journal write")

    def write_record(self, stack_id: str, logical_id: str, record: Record | None) -> None:
        self.guard("a declaration record's write")
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

    GetMembership shows an accepted OU change ``stale`` seconds after it was
    made (the service's propagation), each change on its own clock. A fault ``5xx-applied``
    applies the call and loses its answer. Adding an OU already associated
    (or removing one that is not) is refused as a ValidationException naming
    the field, as the service does; any other rule the call breaks is a bug
    of the planner and fails the test.
    """

    clock: Clock
    store: CrashingStore
    point: Callable[[str], None]
    #: The request whose Work step is making the calls (None: none is).
    running_of: Callable[[], Running | None] = lambda: None
    #: Raises if the request making a write no longer holds its fence.
    guard: Callable[[str], None] = lambda _what: None
    stale: float = 0.0
    memberships: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Per membership, each accepted account change not yet shown: when, and the OU
    #: configuration before it. A read shows each change ``stale`` seconds after it was
    #: made (a later change does not hold an earlier one back: P stays under the 120 s
    #: the code waits for fresh reads).
    unseen: dict[str, list[tuple[float, dict[str, Any]]]] = field(default_factory=dict)
    #: What the harness did so far (for messages).
    history: list[str] = field(default_factory=list)
    #: Per RequestId: its n-th UpdateMembership (1-based, across invocations) -> fault.
    faults: dict[str, dict[int, str]] = field(default_factory=dict)
    sent: Counter[str] = field(default_factory=Counter)
    #: Per RequestId: UpdateMembership calls that took effect (whatever the answer said).
    applied: Counter[str] = field(default_factory=Counter)

    @property
    def told(self) -> str:
        """The history, one line each (a failing assertion's message, unabridged)."""
        return "\n".join(self.history)

    def add(self, spec: dict[str, Any], tags: dict[str, str]) -> None:
        m = new_membership(spec)
        self.memberships[m["membershipId"]] = m
        self.tags[m["membershipArn"]] = dict(tags)

    def get_membership(self, membershipId: str) -> dict[str, Any]:
        self.point("before GetMembership")
        self.clock.now += 0.1
        shown = copy.deepcopy(self.memberships[membershipId])
        unseen = [
            before
            for at, before in self.unseen.get(membershipId, [])
            if self.clock.now < at + self.stale
        ]
        if unseen:  # the configuration before the oldest change not shown yet
            shown["membershipAccountsConfigurations"] = copy.deepcopy(unseen[0])
            STATS["stale reads"] += 1
        running = self.running
        ous = shown["membershipAccountsConfigurations"].get("organizationalUnits") or []
        self.history.append(
            f"    GetMembership {membershipId[-2:]} by {running.request_id[-4:] if running else '?'}"
            f" at {self.clock.now:.1f}: {sorted(o[3:5] + o[-1] for o in ous)}"
            f"{' (stale)' if unseen else ''}"
        )
        self.point("after GetMembership")
        return shown

    @property
    def running(self) -> Running | None:
        return self.running_of()

    def update_membership(self, **params: Any) -> dict[str, Any]:
        self.guard("an UpdateMembership")
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
        self.history.append(
            f"    UpdateMembership {mid[-2:]} by {running.request_id[-4:]}: {brief(params)}"
            f" -> {fault or ''} {error.response['Error']['Code'] if error else 'ok'}"
        )
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
            now, accounts = self.clock.now, before["membershipAccountsConfigurations"]
            kept = [(at, old) for at, old in self.unseen.get(mid, []) if now < at + self.stale]
            self.unseen[mid] = [*kept, (now, copy.deepcopy(accounts))]
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
            f"old={declaration_digest(running.request.old_properties)}\n{self.told}"
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
        self.guard("a TagResource")
        self.point("before TagResource")
        self.clock.now += 0.1
        self._check_tags_journaled(resourceArn, set(tags))
        self.tags[resourceArn].update(tags)
        self.history.append(f"    TagResource {resourceArn[-2:]} {sorted(tags.items())}")
        self.point("after TagResource")
        return {}

    def untag_resource(self, resourceArn: str, tagKeys: list[str]) -> dict[str, Any]:
        self.guard("an UntagResource")
        self.point("before UntagResource")
        self.clock.now += 0.1
        self._check_tags_journaled(resourceArn, set(tagKeys))
        for key in tagKeys:
            self.tags[resourceArn].pop(key, None)
        self.history.append(f"    UntagResource {resourceArn[-2:]} {sorted(tagKeys)}")
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


def brief(params: dict[str, Any]) -> str:
    """An UpdateMembership call in a line of history: the fields it sets, the OUs it moves."""
    change = params.get("membershipAccountsConfigurationsUpdate") or {}
    parts = [
        k for k in params if k not in ("membershipId", "membershipAccountsConfigurationsUpdate")
    ]
    parts += [f"+{o[3:5]}{o[-1]}" for o in change.get("organizationalUnitsToAdd") or []]
    parts += [f"-{o[3:5]}{o[-1]}" for o in change.get("organizationalUnitsToRemove") or []]
    if "coverEntireOrganization" in change:
        parts.append(f"cover={change['coverEntireOrganization']}")
    return " ".join(parts)
