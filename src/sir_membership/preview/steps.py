"""Running each request through the function's own decision and planner.

``resource.handle`` without the writes: the same ``request.decide``, the
same state read (from a lookup: live GetMembership, a saved state, or the
old declaration) and the same ``Decision.plan``, so the preview cannot
disagree with what the function will do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import reduce
from typing import Any

from ..errors import InvalidProperties, MembershipError, MembershipNotFound
from ..membership import MembershipState
from ..pace import Pace
from ..plan import Plan, UpdateRequest, apply_request
from ..properties import parse_properties
from ..request import Decision, Request, decide
from ..tags import TagCall, TagPlan
from .base import Status, worst
from .changeset import ChangeSet, change_set_notes
from .declared import DeclaredChange, declared_changes
from .delivery import Delivery, deliveries, unresolved_paths
from .provider import Guard
from .selection import Ignored, Selection, Target
from .tag_steps import ObservedTags, TagLookup, offline_tag_lookup, plan_step_tags

OFFLINE_ASSUMED = "assumed: the old declaration (BeforeContext) is the actual state"
OFFLINE_EMPTY = "assumed: an empty membership with no OUs (nothing older is declared)"


@dataclass(frozen=True)
class Observed:
    """A membership's state and where it came from (shown next to each plan)."""

    state: MembershipState
    source: str


#: Reads a membership; raises ``MembershipNotFound`` (or another
#: ``MembershipError``) exactly as ``MembershipService.get`` does.
Lookup = Callable[[str], Observed]


@dataclass(frozen=True)
class Step:
    """One request and what the function does with it."""

    logical_id: str
    request: Request
    status: Status
    membership_id: str | None = None
    plan: Plan | None = None
    reason: str = ""
    source: str = ""
    replacement: bool = False
    cleanup: bool = False
    #: The tag calls (``None``: the request manages no tags) and the tags' source.
    tag_plan: TagPlan | None = None
    tag_source: str = ""
    #: The membership's pace (``preview.pacing``) and where it came from; None: not known.
    pace: Pace | None = None
    pace_source: str = ""

    @property
    def requests(self) -> tuple[UpdateRequest, ...]:
        """The UpdateMembership calls, in order (none unless the status is ``change``)."""
        return self.plan.requests if self.plan is not None else ()

    @property
    def tag_calls(self) -> tuple[TagCall, ...]:
        """The TagResource / UntagResource calls, after the UpdateMembership calls."""
        return self.tag_plan.calls if self.tag_plan is not None else ()


@dataclass
class _Reads:
    """What the steps read, carried from step to step as the service holds it."""

    lookup: Lookup
    tag_lookup: TagLookup
    guard: Guard | None = None
    seen: dict[str, Observed] = field(default_factory=dict)
    seen_tags: dict[str, ObservedTags] = field(default_factory=dict)


def _run(target: Target, delivery: Delivery, reads: _Reads) -> Step:
    """``resource.handle`` without the writes: the same decision, state and plan."""
    request = delivery.request
    step = Step(target.logical_id, request, "skip", cleanup=delivery.cleanup)
    if delivery.withheld:
        return replace(step, reason=delivery.withheld)
    refused = reads.guard(request) if reads.guard is not None else None
    if refused is not None:
        return replace(step, status="fail", reason=refused)
    holes = unresolved_paths(request.properties)
    if holes:
        return replace(
            step,
            status="unresolved",
            reason=(
                f"{', '.join(holes)} only known when the change set executes (CloudFormation "
                "fills in the value then): the calls cannot be previewed; preview again once "
                "the values it depends on exist, or deploy in two steps"
            ),
        )
    try:
        decision = decide(request)
    except InvalidProperties as error:
        return replace(step, status="fail", reason=error.reason)
    if decision.membership_id is None or decision.plan is None:
        return replace(step, reason=decision.reason)
    step = replace(step, membership_id=decision.membership_id, replacement=decision.replacement)
    return _plan_step(step, decision, reads)


def _plan_step(step: Step, decision: Decision, reads: _Reads) -> Step:
    """Read (or reuse) the state, then plan: ``resource._carry_out``'s order and outcomes."""
    mid, planner = decision.membership_id, decision.plan
    assert mid is not None
    assert planner is not None
    seen = reads.seen
    try:
        observed = seen[mid] if mid in seen else reads.lookup(mid)
    except MembershipNotFound as error:
        if decision.must_exist:
            return replace(step, status="fail", reason=error.reason)
        return replace(step, reason=f"membership {mid} no longer exists: nothing to do")
    except MembershipError as error:
        return replace(step, status="fail", reason=error.reason)
    step = replace(step, source=observed.source)
    try:
        plan = planner(observed.state)
    except MembershipError as error:
        return replace(step, status="fail", reason=error.reason)
    seen[mid] = Observed(
        reduce(apply_request, plan.requests, observed.state),
        f"{observed.source}, after the calls planned above",
    )
    step = replace(step, plan=plan)
    try:
        tag_plan, tag_source = plan_step_tags(
            step.request, observed.state, reads.tag_lookup, reads.seen_tags
        )
    except MembershipError as error:
        return replace(step, status="fail", reason=error.reason)
    changed = bool(plan.requests) or (tag_plan is not None and not tag_plan.empty)
    return replace(
        step,
        status="change" if changed else "no-change",
        tag_plan=tag_plan,
        tag_source=tag_source,
    )


@dataclass(frozen=True)
class ResourcePreview:
    """Everything about one resource change, for display."""

    target: Target
    declared: tuple[DeclaredChange, ...]
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = ()

    @property
    def status(self) -> Status:
        """The worst step's; a change CloudFormation cannot pin down is unresolved."""
        if self.target.action == "Dynamic":
            return "unresolved"
        return worst([s.status for s in self.steps], default="skip")


@dataclass(frozen=True)
class Preview:
    """A change set, as the function will carry it out."""

    change_set: ChangeSet
    resources: tuple[ResourcePreview, ...]
    #: Every step in the order the function runs them: updates, then cleanup.
    steps: tuple[Step, ...]
    ignored: tuple[Ignored, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def status(self) -> Status:
        """The worst resource's status."""
        return worst([r.status for r in self.resources])

    @property
    def requests(self) -> tuple[UpdateRequest, ...]:
        """Every UpdateMembership call, in the order the function makes them."""
        return tuple(r for s in self.steps for r in s.requests)

    @property
    def tag_calls(self) -> tuple[TagCall, ...]:
        """Every tag call, in order (each step's come after its UpdateMembership calls)."""
        return tuple(c for s in self.steps for c in s.tag_calls)


def _action_notes(target: Target) -> tuple[str, ...]:
    notes = []
    if target.action == "Dynamic":
        notes.append("CloudFormation determines the action only when the change set executes")
    elif target.action not in ("Add", "Modify", "Remove"):
        notes.append(f"Action {target.action}: CloudFormation does not invoke the function")
    if target.dynamic:
        notes.append(
            f"CloudFormation evaluates {', '.join(target.dynamic)} again at execution: "
            "the preview uses the value in the change set"
        )
    return tuple(notes)


def preview(
    change_set: ChangeSet,
    selection: Selection,
    lookup: Lookup,
    tag_lookup: TagLookup | None = None,
    guard: Guard | None = None,
) -> Preview:
    """Run every request through the function's decision and planner, in CloudFormation's order.

    Updates come first; cleanup Deletes only if no update fails, because a
    failed update rolls the stack back and the cleanup phase never runs.
    States carry over from step to step, as the service would. ``guard``
    (the provider's refusal, ``provider.provider_guard``) runs first, as the
    function's does.
    """
    reads = _Reads(lookup, tag_lookup or offline_tag_lookup(selection), guard)
    pending = [(t, d) for t in selection.targets for d in deliveries(t, change_set.stack_id)]
    done: list[tuple[Target, Step]] = []
    for target, delivery in pending:
        if not delivery.cleanup:
            done.append((target, _run(target, delivery, reads)))
    failed = any(step.status == "fail" for _, step in done)
    for target, delivery in pending:
        if not delivery.cleanup:
            continue
        if failed:
            reason = (
                "CloudFormation never sends it: an update above fails, so the stack rolls "
                "back before the cleanup phase"
            )
            step = Step(target.logical_id, delivery.request, "skip", reason=reason, cleanup=True)
        else:
            step = _run(target, delivery, reads)
        done.append((target, step))
    resources = tuple(
        ResourcePreview(
            target=t,
            declared=declared_changes(t.before, t.after) if t.action in ("Add", "Modify") else (),
            steps=tuple(step for owner, step in done if owner is t),
            notes=_action_notes(t),
        )
        for t in selection.targets
    )
    notes = list(change_set_notes(change_set))
    notes += [
        f"nested stack {n} has its own change set: preview it separately" for n in selection.nested
    ]
    return Preview(
        change_set, resources, tuple(s for _, s in done), selection.ignored, tuple(notes)
    )


# -- states without AWS ------------------------------------------------------------


def state_from_declaration(properties: Mapping[str, Any]) -> MembershipState:
    """The membership exactly as declared (raises ``InvalidProperties``)."""
    declared = parse_properties(properties)
    return MembershipState(
        membership_id=declared.membership_id,
        name=declared.membership_name,
        team=declared.team or (),
        features=declared.features or (),
        cover_entire_organization=bool(declared.cover_entire_organization),
        organizational_units=declared.organizational_units,
    )


def offline_lookup(
    selection: Selection, saved: Mapping[str, MembershipState], *, source: str = "state file"
) -> Lookup:
    """States from saved GetMembership output, else from the old declarations.

    Without a saved state, a membership the stack declared before is assumed
    to be as declared (BeforeContext); one it never declared (an Add, the new
    membership of a replacement) is assumed empty, with no OUs.
    """
    declared: dict[str, MembershipState] = {}
    for target in selection.targets:
        try:
            state = state_from_declaration(target.before) if target.before is not None else None
        except InvalidProperties:
            continue
        if state is not None:
            declared.setdefault(state.membership_id, state)

    def lookup(membership_id: str) -> Observed:
        if membership_id in saved:
            return Observed(saved[membership_id], source)
        if membership_id in declared:
            return Observed(declared[membership_id], OFFLINE_ASSUMED)
        return Observed(MembershipState(membership_id), OFFLINE_EMPTY)

    return lookup
