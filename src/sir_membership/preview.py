"""Change-set preview and drift, as pure functions of documents.

A reviewer approving a change set needs to know which UpdateMembership calls
the function will make. The only way to be exact is not to plan here: each
resource change becomes the CloudFormation request the function will
receive, and goes through ``request.decide`` and ``Decision.plan``, the code
the function itself runs. What is left in this module is translation (change
set -> requests, template + parameters -> declared properties) and data for
presentation, with no I/O, so it is tested with plain documents. Reading and
printing are the CLI's (``cli``).

Nothing here puts a name, email, job title or membership name into a
message: values are masked unless a caller asks for them explicitly.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import reduce
from typing import Any, Literal

from .errors import InvalidProperties, MembershipError, MembershipNotFound, MembershipNotUpdatable
from .membership import MembershipState
from .plan import MASK, Change, Plan, UpdateRequest, apply_request
from .properties import CLOUDFORMATION_KEYS, PROPERTY_KEYS, parse_properties
from .request import Decision, Request, decide
from .service_model import rules

RESOURCE_TYPE = "Custom::SecurityIRMembership"
#: Change set statuses in which its changes are not known yet.
NOT_READY = ("CREATE_PENDING", "CREATE_IN_PROGRESS")
#: A value CloudFormation fills in only when the change set executes: its own
#: placeholders and dynamic references (``{{resolve:ssm:...}}``).
PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")
SENSITIVE_PROPERTIES = frozenset({"MembershipName", "IncidentResponseTeam"})
KNOWN_KEYS = frozenset(PROPERTY_KEYS) | CLOUDFORMATION_KEYS
#: The only responder field whose value may be shown.
PUBLIC_RESPONDER_KEYS = frozenset({"CommunicationPreferences"})
OFFLINE_ASSUMED = "assumed: the old declaration (BeforeContext) is the actual state"
OFFLINE_EMPTY = "assumed: an empty membership with no OUs (nothing older is declared)"

Status = Literal["skip", "no-change", "change", "unresolved", "fail"]
#: Statuses from harmless to blocking; a whole preview takes its worst.
SEVERITY: tuple[Status, ...] = ("skip", "no-change", "change", "unresolved", "fail")


class PreviewError(Exception):
    """The preview cannot be made at all; ``str()`` is the one line to show."""


def worst(statuses: Sequence[Status], default: Status = "no-change") -> Status:
    """The most severe status, so one failing resource decides the exit code."""
    return max(statuses, key=SEVERITY.index, default=default)


def _arn_part(arn: str, index: int) -> str:
    parts = arn.split(":")
    return parts[index] if len(parts) > 5 and parts[0] == "arn" else ""


# -- the change set ----------------------------------------------------------


@dataclass(frozen=True)
class ChangeSet:
    """A DescribeChangeSet result with every page's changes joined."""

    name: str
    stack_name: str
    stack_id: str
    status: str
    execution_status: str = ""
    status_reason: str = ""
    changes: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)

    @property
    def region(self) -> str:
        """The stack's region: where the function runs and reads the membership."""
        return _arn_part(self.stack_id, 3)

    @property
    def account_id(self) -> str:
        """The stack's account, for the same not-found reason the function gives."""
        return _arn_part(self.stack_id, 4)


def load_change_set(document: Any) -> ChangeSet:
    """Accept one page or a list of pages, as saved from DescribeChangeSet.

    A list whose last page still has a NextToken is refused: changes would be
    missing, and a preview that silently misses a resource is worse than none.
    """
    pages = [document] if isinstance(document, Mapping) else document
    if not isinstance(pages, list) or not pages or not all(isinstance(p, Mapping) for p in pages):
        raise PreviewError(
            "not a DescribeChangeSet document: expected an object or a list of pages"
        )
    first = pages[0]
    if not any(key in first for key in ("Changes", "ChangeSetName", "ChangeSetId")):
        raise PreviewError(
            "not a DescribeChangeSet document (no ChangeSetName or Changes): save the output of "
            "aws cloudformation describe-change-set --include-property-values"
        )
    if pages[-1].get("NextToken"):
        raise PreviewError(
            f"the last of {len(pages)} page(s) has a NextToken: save every page (or omit "
            "--no-paginate) so no change is missed"
        )
    changes = [
        change["ResourceChange"]
        for page in pages
        for change in page.get("Changes") or ()
        if isinstance(change, Mapping) and isinstance(change.get("ResourceChange"), Mapping)
    ]
    return ChangeSet(
        name=str(first.get("ChangeSetName") or first.get("ChangeSetId") or "?"),
        stack_name=str(first.get("StackName", "")),
        stack_id=str(first.get("StackId", "")),
        status=str(first.get("Status", "")),
        execution_status=str(first.get("ExecutionStatus", "")),
        status_reason=str(first.get("StatusReason", "")),
        changes=tuple(changes),
    )


def check_ready(change_set: ChangeSet) -> None:
    """Refuse change sets whose changes are unknown, with what to do about it."""
    name = change_set.name
    if change_set.status in NOT_READY:
        raise PreviewError(
            f"change set {name} is not created yet (Status {change_set.status}): wait for "
            "CREATE_COMPLETE (aws cloudformation wait change-set-create-complete) and run again"
        )
    if change_set.status == "FAILED":
        raise PreviewError(
            f"change set {name} FAILED: {change_set.status_reason or 'no StatusReason given'}"
        )
    if change_set.status.startswith("DELETE"):
        raise PreviewError(f"change set {name} is being deleted (Status {change_set.status})")


def change_set_notes(change_set: ChangeSet) -> tuple[str, ...]:
    """Warnings that do not stop the preview but change how to read it."""
    status = change_set.execution_status
    if status in ("EXECUTE_IN_PROGRESS", "EXECUTE_COMPLETE", "EXECUTE_FAILED", "OBSOLETE"):
        return (
            f"change set ExecutionStatus is {status}: it cannot run (again); the preview "
            "shows what it would do against the membership as it is now",
        )
    return ()


# -- which changes concern the function ---------------------------------------


@dataclass(frozen=True)
class Target:
    """One resource change that CloudFormation hands to the function."""

    logical_id: str
    resource_type: str
    action: str
    physical_id: str = ""
    #: CloudFormation's own verdict (True, False, Conditional): for a custom
    #: resource it cannot know; the function decides by MembershipId.
    replacement: str = ""
    policy_action: str = ""
    before: Mapping[str, Any] | None = field(default=None, repr=False)
    after: Mapping[str, Any] | None = field(default=None, repr=False)
    before_context: Mapping[str, Any] = field(default_factory=dict, repr=False)
    after_context: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: Properties CloudFormation evaluates again when the change set executes.
    dynamic: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ignored:
    """A resource change that is not a membership, listed so nothing seems lost."""

    logical_id: str
    resource_type: str
    action: str
    custom: bool = False


@dataclass(frozen=True)
class Selection:
    """The membership changes of a change set, and everything else in it."""

    targets: tuple[Target, ...]
    ignored: tuple[Ignored, ...] = ()
    nested: tuple[str, ...] = ()


def _decode_context(logical_id: str, key: str, raw: Any) -> Mapping[str, Any] | None:
    if raw is None:
        return None
    try:
        decoded = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise PreviewError(f"{logical_id}: {key} is not valid JSON") from None
    if not isinstance(decoded, Mapping):
        raise PreviewError(f"{logical_id}: {key} is not a JSON object")
    return decoded


def _properties(context: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The resource's properties in a Before/AfterContext.

    The context is ``{"Properties": {...}, ...}`` (with the resource's other
    attributes); a bare properties object is accepted too.
    """
    if context is None:
        return None
    props = context.get("Properties")
    if isinstance(props, Mapping):
        return props
    if any(key in context for key in (*PROPERTY_KEYS, *CLOUDFORMATION_KEYS)):
        return context
    return {}


def _is_custom(resource_type: str, props: Mapping[str, Any] | None) -> bool:
    return (
        resource_type == RESOURCE_TYPE
        or resource_type.startswith("Custom::")
        or resource_type == "AWS::CloudFormation::CustomResource"
        or (props is not None and "ServiceToken" in props)
    )


def _dynamic_properties(change: Mapping[str, Any]) -> tuple[str, ...]:
    names = []
    for detail in change.get("Details") or ():
        target = detail.get("Target") or {}
        if detail.get("Evaluation") == "Dynamic" and target.get("Attribute") == "Properties":
            names.append(str(target.get("Name") or target.get("Path") or "?"))
    return tuple(dict.fromkeys(names))


#: The property values each action's requests are built from.
NEEDED_CONTEXTS = {
    "Add": ("AfterContext",),
    "Modify": ("BeforeContext", "AfterContext"),
    "Remove": ("BeforeContext",),
}


def _target(change: Mapping[str, Any], logical_id: str, resource_type: str) -> Target:
    action = str(change.get("Action", ""))
    contexts = {
        key: _decode_context(logical_id, key, change.get(key))
        for key in ("BeforeContext", "AfterContext")
    }
    needed = NEEDED_CONTEXTS.get(action, ())
    missing = [key for key in needed if contexts[key] is None]
    if missing:
        raise PreviewError(
            f"{logical_id}: the change set has no property values ({', '.join(missing)} "
            "missing): describe it with --include-property-values (IncludePropertyValues=true)"
        )
    return Target(
        logical_id=logical_id,
        resource_type=resource_type,
        action=action,
        physical_id=str(change.get("PhysicalResourceId") or ""),
        replacement=str(change.get("Replacement") or ""),
        policy_action=str(change.get("PolicyAction") or ""),
        before=_properties(contexts["BeforeContext"]),
        after=_properties(contexts["AfterContext"]),
        before_context=contexts["BeforeContext"] or {},
        after_context=contexts["AfterContext"] or {},
        dynamic=_dynamic_properties(change),
    )


def _context_properties(change: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The properties of a change, if its context can be read (for choosing, not planning)."""
    raw = change.get("AfterContext") or change.get("BeforeContext")
    try:
        return _properties(_decode_context("", "context", raw))
    except PreviewError:
        return None


def select(
    change_set: ChangeSet, *, logical_id: str | None = None, service_token: str | None = None
) -> Selection:
    """Find the changes the function will be asked to carry out.

    By default: every ``Custom::SecurityIRMembership``, and any other custom
    resource whose ServiceToken is one of theirs or ``service_token`` (the
    same function). ``logical_id`` picks one resource by name, whatever its
    type name, as long as it is a custom resource. Other custom resources are
    listed as ignored, not guessed at.
    """
    changes = [(change, _context_properties(change)) for change in change_set.changes]
    tokens = {service_token} if service_token else set()
    tokens |= {
        str(props["ServiceToken"])
        for change, props in changes
        if change.get("ResourceType") == RESOURCE_TYPE and props and props.get("ServiceToken")
    }
    targets: list[Target] = []
    ignored: list[Ignored] = []
    nested: list[str] = []
    for change, props in changes:
        lid = str(change.get("LogicalResourceId", ""))
        rtype = str(change.get("ResourceType", ""))
        if rtype == "AWS::CloudFormation::Stack" and change.get("ChangeSetId"):
            nested.append(lid)
        if logical_id is not None:
            wanted = lid == logical_id
            if wanted and not _is_custom(rtype, props):
                raise PreviewError(
                    f"{lid} is a {rtype or 'resource'}, not a custom resource: "
                    "the function never sees it"
                )
        else:
            token = props.get("ServiceToken") if props is not None else None
            wanted = rtype == RESOURCE_TYPE or (token is not None and str(token) in tokens)
        if wanted:
            targets.append(_target(change, lid, rtype))
        else:
            action = str(change.get("Action", ""))
            ignored.append(Ignored(lid, rtype, action, custom=_is_custom(rtype, props)))
    if not targets:
        changed = ", ".join(f"{i.logical_id} ({i.resource_type} {i.action})" for i in ignored)
        what = f"logical id {logical_id}" if logical_id else f"{RESOURCE_TYPE} resource"
        raise PreviewError(
            f"change set {change_set.name} has no change for {what}"
            + (f"; it changes: {changed}" if changed else "; it changes nothing")
        )
    return Selection(tuple(targets), tuple(ignored), tuple(nested))


# -- change -> the requests CloudFormation sends ------------------------------


@dataclass(frozen=True)
class Delivery:
    """A request CloudFormation will send the function, and when.

    Cleanup deliveries (removed resources, the old membership of a
    replacement) are sent only after every update of the stack succeeded.
    ``withheld`` says why CloudFormation will not send one at all.
    """

    request: Request
    cleanup: bool = False
    withheld: str = ""


def _retained(target: Target, *, replaced: bool) -> str:
    policy = target.policy_action
    if replaced:
        retain = policy == "ReplaceAndRetain" or (
            not policy and target.after_context.get("UpdateReplacePolicy") == "Retain"
        )
        what = "UpdateReplacePolicy is Retain: CloudFormation sends no Delete for"
    else:
        retain = policy == "Retain" or (
            not policy and target.before_context.get("DeletionPolicy") == "Retain"
        )
        what = "DeletionPolicy is Retain: CloudFormation sends no Delete for"
    if not retain:
        return ""
    return f"{what} {target.physical_id or 'the old resource'}; the membership is left as it is"


def deliveries(target: Target, stack_id: str) -> tuple[Delivery, ...]:
    """The requests a change turns into, in CloudFormation's order.

    A Modify whose MembershipId differs from the physical id is a
    replacement (the function answers with the new id), so CloudFormation
    follows it, in the cleanup phase, with a Delete of the old physical id
    carrying the old properties.
    """
    rid = f"preview-{target.logical_id}"
    lid = target.logical_id
    after = target.after or {}
    before = target.before or {}
    if target.action == "Add":
        return (Delivery(Request("Create", stack_id, rid, lid, "", after)),)
    if target.action == "Modify":
        update = Request("Update", stack_id, rid, lid, target.physical_id, after, before)
        out = [Delivery(update)]
        new_id = after.get("MembershipId")
        if (
            target.physical_id
            and isinstance(new_id, str)
            and new_id != target.physical_id
            and not PLACEHOLDER.search(new_id)
        ):
            delete = Request("Delete", stack_id, f"{rid}-cleanup", lid, target.physical_id, before)
            out.append(Delivery(delete, cleanup=True, withheld=_retained(target, replaced=True)))
        return tuple(out)
    if target.action == "Remove":
        delete = Request("Delete", stack_id, rid, lid, target.physical_id, before)
        return (Delivery(delete, cleanup=True, withheld=_retained(target, replaced=False)),)
    return ()


# -- values only known at execution ---------------------------------------------


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")
    else:
        yield path, value


def unresolved_paths(properties: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Where a property holds a value CloudFormation fills in only at execution."""
    return tuple(
        path
        for path, value in _walk(properties or {}, "")
        if isinstance(value, str) and PLACEHOLDER.search(value)
    )


# -- declared before/after ---------------------------------------------------------


def _normal(value: Any) -> Any:
    """CloudFormation hands every scalar to a custom resource as a string."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def mask_property(key: str, value: Any) -> Any:
    """A property's value fit for a log or a terminal.

    Keys the function does not know are masked as a whole: a misspelled
    ``IncidentResponseTeam`` holds the same emails.
    """
    if value is None or key in ("MembershipId", "OrganizationalUnits", "OptInFeatures"):
        return value
    if key == "IncidentResponseTeam" and isinstance(value, list):
        return [
            {k: v if k in PUBLIC_RESPONDER_KEYS else MASK for k, v in r.items()}
            if isinstance(r, Mapping)
            else MASK
            for r in value
        ]
    if key in SENSITIVE_PROPERTIES or key not in KNOWN_KEYS:
        return MASK
    return value


def _team_keys(team: Any) -> dict[str, Any]:
    if not isinstance(team, list):
        return {}
    return {
        str(r.get("Email", "")).lower(): _normal(r)
        for r in team
        if isinstance(r, Mapping) and r.get("Email")
    }


@dataclass(frozen=True)
class DeclaredChange:
    """One property that differs between the old and the new declaration."""

    key: str
    kind: Literal["added", "removed", "modified"]
    before: Any = field(default=None, repr=False)
    after: Any = field(default=None, repr=False)

    @property
    def ous_added(self) -> tuple[str, ...]:
        """OUs newly declared (the declaration, not what the service has)."""
        return tuple(sorted(_ou_set(self.after) - _ou_set(self.before)))

    @property
    def ous_removed(self) -> tuple[str, ...]:
        """OUs no longer declared."""
        return tuple(sorted(_ou_set(self.before) - _ou_set(self.after)))

    def summary(self) -> str:
        """A description without sensitive values."""
        if self.key == "OrganizationalUnits":
            parts = [f"+{ou}" for ou in self.ous_added] + [f"-{ou}" for ou in self.ous_removed]
            return " ".join(parts) or self.kind
        if self.key == "IncidentResponseTeam":
            return self._team_summary()
        if self.key in SENSITIVE_PROPERTIES or self.key not in KNOWN_KEYS:
            return f"{self.kind} (value hidden)"
        return f"{_compact(self.before)} -> {_compact(self.after)}"

    def _team_summary(self) -> str:
        old, new = _team_keys(self.before), _team_keys(self.after)
        count = [len(v) if isinstance(v, list) else 0 for v in (self.before, self.after)]
        changed = sum(1 for k in old.keys() & new.keys() if old[k] != new[k])
        return (
            f"{count[0]} -> {count[1]} responders: {len(new.keys() - old.keys())} added, "
            f"{len(old.keys() - new.keys())} removed, {changed} changed (values hidden)"
        )

    def to_json(self, show_sensitive: bool) -> dict[str, Any]:
        """The change as data; values masked unless ``show_sensitive``."""
        shown = (
            (self.before, self.after)
            if show_sensitive
            else (
                mask_property(self.key, self.before),
                mask_property(self.key, self.after),
            )
        )
        out: dict[str, Any] = {
            "property": self.key,
            "change": self.kind,
            "summary": self.summary(),
            "before": shown[0],
            "after": shown[1],
        }
        if self.key == "OrganizationalUnits":
            out["added"] = list(self.ous_added)
            out["removed"] = list(self.ous_removed)
        return out


def _ou_set(value: Any) -> frozenset[str]:
    return frozenset(str(v) for v in value) if isinstance(value, list) else frozenset()


def _compact(value: Any) -> str:
    return "(absent)" if value is None else json.dumps(_normal(value), separators=(",", ":"))


def declared_changes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> tuple[DeclaredChange, ...]:
    """What the template changes, key by key, in the order the function documents them.

    OUs compare as sets: their order means nothing to the function.
    """
    old, new = before or {}, after or {}
    known = (*PROPERTY_KEYS, *sorted(CLOUDFORMATION_KEYS))
    keys = [*known, *sorted(k for k in {*old, *new} if k not in known)]
    out = []
    for key in keys:
        if key not in old and key not in new:
            continue
        b, a = old.get(key), new.get(key)
        if key not in old:
            out.append(DeclaredChange(key, "added", None, a))
        elif key not in new:
            out.append(DeclaredChange(key, "removed", b, None))
        elif key == "OrganizationalUnits" and isinstance(a, list) and isinstance(b, list):
            if _ou_set(a) != _ou_set(b):
                out.append(DeclaredChange(key, "modified", b, a))
        elif _normal(a) != _normal(b):
            out.append(DeclaredChange(key, "modified", b, a))
    return tuple(out)


# -- running the function's own decision ---------------------------------------------


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

    @property
    def requests(self) -> tuple[UpdateRequest, ...]:
        """The UpdateMembership calls, in order (none unless the status is ``change``)."""
        return self.plan.requests if self.plan is not None else ()


def _run(target: Target, delivery: Delivery, lookup: Lookup, seen: dict[str, Observed]) -> Step:
    """``resource.handle`` without the writes: the same decision, state and plan."""
    request = delivery.request
    step = Step(target.logical_id, request, "skip", cleanup=delivery.cleanup)
    if delivery.withheld:
        return replace(step, reason=delivery.withheld)
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
    return _plan_step(step, decision, lookup, seen)


def _plan_step(step: Step, decision: Decision, lookup: Lookup, seen: dict[str, Observed]) -> Step:
    """Read (or reuse) the state, then plan: ``resource._carry_out``'s order and outcomes."""
    mid, planner = decision.membership_id, decision.plan
    assert mid is not None
    assert planner is not None
    try:
        observed = seen[mid] if mid in seen else lookup(mid)
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
    return replace(step, status="change" if plan.requests else "no-change", plan=plan)


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


def preview(change_set: ChangeSet, selection: Selection, lookup: Lookup) -> Preview:
    """Run every request through the function's decision and planner, in CloudFormation's order.

    Updates come first; cleanup Deletes only if no update fails, because a
    failed update rolls the stack back and the cleanup phase never runs.
    States carry over from step to step, as the service would.
    """
    seen: dict[str, Observed] = {}
    pending = [(t, d) for t in selection.targets for d in deliveries(t, change_set.stack_id)]
    done: list[tuple[Target, Step]] = []
    for target, delivery in pending:
        if not delivery.cleanup:
            done.append((target, _run(target, delivery, lookup, seen)))
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
            step = _run(target, delivery, lookup, seen)
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


# -- drift: the deployed declaration against the live membership ------------------


@dataclass(frozen=True)
class Drift:
    """How one deployed resource's membership differs from its declaration."""

    logical_id: str
    physical_id: str
    status: Literal["in-sync", "drifted", "unresolved", "fail"]
    differences: tuple[Change, ...] = ()
    ous_missing: tuple[str, ...] = ()
    ous_outside: tuple[str, ...] = ()
    requests: tuple[UpdateRequest, ...] = ()
    reason: str = ""
    notes: tuple[str, ...] = ()


def assess_drift(
    logical_id: str, physical_id: str, declared: Mapping[str, Any], actual: MembershipState
) -> Drift:
    """Drift is what the function would change on this resource's next Update.

    The plan is the function's own: ``request.decide`` on an Update whose old
    and new properties are both the declaration. OUs associated outside the
    stack are listed apart: the resource never removes them, so they are not
    drift.
    """
    request = Request("Update", "", "drift", logical_id, physical_id, declared, declared)
    try:
        decision = decide(request)
        declared_ous = parse_properties(declared).organizational_units
    except InvalidProperties as error:
        return Drift(logical_id, physical_id, "fail", reason=error.reason)
    planner = decision.plan
    assert planner is not None  # an Update always plans
    differences: list[Change] = []
    notes: list[str] = []
    if decision.replacement:
        differences.append(
            Change(
                "MembershipId",
                f"the stack tracks {physical_id}, the template declares {decision.membership_id}",
            )
        )
    try:
        plan = planner(actual)
    except MembershipNotUpdatable as error:
        notes.append(error.reason)
        plan = planner(replace(actual, status="Active"))
    if actual.status != "Active":
        notes.append(f"membership {actual.membership_id} is {actual.status}")
    differences += plan.changes
    return Drift(
        logical_id,
        physical_id,
        "drifted" if differences else "in-sync",
        differences=tuple(differences),
        ous_missing=plan.ous_to_add,
        ous_outside=tuple(sorted(actual.organizational_units - declared_ous)),
        requests=plan.requests,
        notes=tuple(notes),
    )


def never_a_membership(physical_id: str) -> bool:
    """A physical id the function answers with on a failed Create is not a membership."""
    return not rules().membership_id.accepts(physical_id)


# -- templates: declared properties from GetTemplate + DescribeStacks ------------------


def parse_template(body: Any) -> dict[str, Any]:
    """A template body as GetTemplate returns it: already decoded JSON, JSON text or YAML.

    YAML needs PyYAML (imported only here: the function never parses
    templates); CloudFormation's short tags become their long forms.
    """
    if isinstance(body, Mapping):
        return dict(body)
    if not isinstance(body, str):
        raise PreviewError("the stack's template is empty")
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = _load_yaml(body)
    if not isinstance(decoded, Mapping):
        raise PreviewError("the stack's template is not an object")
    return dict(decoded)


def _load_yaml(text: str) -> Any:
    try:
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        raise PreviewError(
            "the stack's template is YAML and PyYAML is not installed: pip install pyyaml "
            "(the CLI needs it for YAML templates), or pass --properties-file"
        ) from None

    def tag(loader: Any, suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix in ("Ref", "Condition"):
            return {suffix: value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{suffix}": value}

    loader: Any = type("CloudFormationLoader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("!", tag)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as error:
        # Only the problem and its line: the error's own text quotes the line,
        # which may hold a literal email.
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise PreviewError(
            f"the stack's template is neither JSON nor YAML ({problem}{where})"
        ) from None


@dataclass(frozen=True)
class StackContext:
    """What intrinsic functions can be resolved from without CloudFormation."""

    stack_id: str
    stack_name: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    physical_ids: Mapping[str, str] = field(default_factory=dict)
    notification_arns: tuple[str, ...] = ()

    def pseudo(self, name: str) -> Any:
        """A pseudo parameter's value (``None`` if it is not one this knows)."""
        partition = _arn_part(self.stack_id, 1) or "aws"
        return {
            "AWS::AccountId": _arn_part(self.stack_id, 4),
            "AWS::Region": _arn_part(self.stack_id, 3),
            "AWS::StackId": self.stack_id,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": partition,
            "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
            "AWS::NotificationARNs": list(self.notification_arns),
        }.get(name)


@dataclass(frozen=True)
class Resolved:
    """Declared properties, and what could not be resolved (``path: why``)."""

    properties: Mapping[str, Any] = field(repr=False)
    unresolved: tuple[str, ...] = ()


class _Unresolvable(Exception):
    pass


class _NoValue:
    """``AWS::NoValue``: the property or list item is dropped."""


NO_VALUE = _NoValue()
SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class _Resolver:
    """A small evaluator of the intrinsic functions templates use for plain values.

    Whatever depends on another stack or a resource attribute
    (``Fn::ImportValue``, ``Fn::GetAtt``) is reported instead of guessed.
    """

    def __init__(self, template: Mapping[str, Any], context: StackContext) -> None:
        self.template = template
        self.context = context
        self.problems: list[str] = []

    def value(self, node: Any, path: str) -> Any:
        try:
            return self._value(node, path)
        except _Unresolvable as error:
            self.problems.append(f"{path}: {error}")
            return None

    def _value(self, node: Any, path: str) -> Any:
        if isinstance(node, Mapping):
            if len(node) == 1:
                ((key, arg),) = node.items()
                if key == "Ref":
                    return self._ref(arg)
                if isinstance(key, str) and key.startswith("Fn::"):
                    return self._function(key, arg, path)
            out = {}
            for key, item in node.items():
                resolved = self.value(item, f"{path}.{key}" if path else str(key))
                if resolved is not NO_VALUE:
                    out[str(key)] = resolved
            return out
        if isinstance(node, list):
            items = [self.value(item, f"{path}[{i}]") for i, item in enumerate(node)]
            return [item for item in items if item is not NO_VALUE]
        return node

    def _ref(self, name: Any) -> Any:
        name = str(name)
        if name == "AWS::NoValue":
            return NO_VALUE
        pseudo = self.context.pseudo(name)
        if pseudo is not None:
            return pseudo
        declared = (self.template.get("Parameters") or {}).get(name)
        if isinstance(declared, Mapping):
            return self._parameter(name, declared)
        if name in self.context.physical_ids:
            return self.context.physical_ids[name]
        raise _Unresolvable(f"Ref {name} names no parameter or resource")

    def _parameter(self, name: str, declared: Mapping[str, Any]) -> Any:
        if str(declared.get("NoEcho", "false")).lower() == "true":
            raise _Unresolvable(f"parameter {name} is NoEcho (its value is not returned)")
        if name in self.context.parameters:
            value = self.context.parameters[name]
        elif "Default" in declared:
            value = _normal(declared["Default"])
        else:
            raise _Unresolvable(f"parameter {name} has no value")
        kind = str(declared.get("Type", "String"))
        if kind == "CommaDelimitedList" or kind.startswith("List<"):
            return [item.strip() for item in str(value).split(",")]
        return value

    def _function(self, key: str, arg: Any, path: str) -> Any:
        if key == "Fn::If":
            if not isinstance(arg, list) or len(arg) != 3:
                raise _Unresolvable("Fn::If needs [condition, value if true, value if false]")
            return self._value(arg[1] if self._condition(arg[0]) else arg[2], path)
        if key == "Fn::Join":
            delimiter, items = self._pair(key, arg)
            values = self._value(items, path)
            if not isinstance(values, list):
                raise _Unresolvable("Fn::Join needs a list")
            return str(delimiter).join(str(v) for v in values)
        if key == "Fn::Split":
            delimiter, text = self._pair(key, arg)
            return str(self._value(text, path)).split(str(delimiter))
        if key == "Fn::Select":
            index, items = self._pair(key, arg)
            values = self._value(items, path)
            position = int(self._value(index, path))
            if not isinstance(values, list) or not 0 <= position < len(values):
                raise _Unresolvable(f"Fn::Select index {position} is out of range")
            return values[position]
        if key == "Fn::Sub":
            return self._sub(arg, path)
        if key == "Fn::FindInMap" and isinstance(arg, list) and len(arg) == 3:
            names = [str(self._value(a, path)) for a in arg]
            try:
                return self.template["Mappings"][names[0]][names[1]][names[2]]
            except (KeyError, TypeError):
                raise _Unresolvable(f"Fn::FindInMap {'.'.join(names)} is not in Mappings") from None
        raise _Unresolvable(f"{key} is only known to CloudFormation")

    @staticmethod
    def _pair(key: str, arg: Any) -> tuple[Any, Any]:
        if not isinstance(arg, list) or len(arg) != 2:
            raise _Unresolvable(f"{key} needs two arguments")
        return arg[0], arg[1]

    def _sub(self, arg: Any, path: str) -> str:
        if isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], Mapping):
            text, variables = str(arg[0]), {k: self._value(v, path) for k, v in arg[1].items()}
        else:
            text, variables = str(arg), {}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name:
                raise _Unresolvable(f"Fn::Sub ${{{name}}} is a resource attribute")
            return str(self._ref(name))

        return SUB_VARIABLE.sub(one, text)

    def _condition(self, node: Any) -> bool:
        if isinstance(node, str):
            conditions = self.template.get("Conditions") or {}
            if node not in conditions:
                raise _Unresolvable(f"condition {node} is not defined")
            return self._condition(conditions[node])
        if isinstance(node, Mapping) and len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Condition":
                return self._condition(str(arg))
            if key == "Fn::Equals":
                left, right = self._pair(key, arg)
                return bool(_normal(self._value(left, "")) == _normal(self._value(right, "")))
            if key == "Fn::Not" and isinstance(arg, list) and len(arg) == 1:
                return not self._condition(arg[0])
            if key == "Fn::And" and isinstance(arg, list):
                return all(self._condition(a) for a in arg)
            if key == "Fn::Or" and isinstance(arg, list):
                return any(self._condition(a) for a in arg)
        raise _Unresolvable("a condition uses a function this cannot evaluate")


def resolve_properties(
    template: Mapping[str, Any], logical_id: str, context: StackContext
) -> Resolved:
    """The properties CloudFormation sent the function, rebuilt from the template.

    ServiceToken and ServiceTimeout are left out: the function ignores them,
    and a ServiceToken is usually an ``Fn::ImportValue`` that only
    CloudFormation can resolve.
    """
    resources = template.get("Resources") or {}
    resource = resources.get(logical_id)
    if not isinstance(resource, Mapping):
        raise PreviewError(f"{logical_id} is not in the stack's template")
    properties = resource.get("Properties") or {}
    resolver = _Resolver(template, context)
    wanted = {k: v for k, v in properties.items() if k not in CLOUDFORMATION_KEYS}
    resolved = resolver.value(wanted, "")
    return Resolved(_normal(resolved), tuple(resolver.problems))
