"""What the rules look at: each membership resource's old and new declaration.

Built from two places, both pure: a template (and the previous one) with
the preview's intrinsic resolver (the ``check`` command; the hook's STACK
operations), and a change set's resource changes, whose values
CloudFormation has already resolved (the hook's CHANGE_SET operations).
A value that cannot be known here (an unresolved ``Ref``, a ``NoEcho``
parameter, a dynamic reference, a value CloudFormation fills in when the
change set executes) is a *hole*: kept out of the properties and named, by
top-level property, so the rules that need it say they cannot be evaluated
instead of guessing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..errors import InvalidProperties, MalformedRequest
from ..preview.base import PLACEHOLDER, RESOURCE_TYPE
from ..preview.delivery import unresolved_paths
from ..preview.template import StackContext, resolve_properties
from ..properties import CLOUDFORMATION_KEYS, MembershipProperties, parse_properties

#: Holds every property: the whole declaration is unknown (its Condition cannot be evaluated).
WHOLE = "*"
#: How CloudFormation shows a NoEcho parameter's value in a change set.
MASKED = "****"
#: DeletionPolicy values with which CloudFormation sends no Delete on removal.
RETAINED = ("Retain", "RetainExceptOnCreate")
#: A MembershipId that parses, standing in for one that is a hole.
_STAND_IN_ID = "m-unresolved00"
_TOP = re.compile(r"[.\[]")


@dataclass(frozen=True)
class Declaration:
    """One resource's declared properties, as the function would be sent them."""

    properties: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: Top-level property (or ``WHOLE``) -> why its value is not known here.
    holes: Mapping[str, str] = field(default_factory=dict)
    #: ``None``: not known (``policy_hole`` says why).
    deletion_policy: str | None = "Delete"
    policy_hole: str = ""

    def hole(self, *keys: str) -> str:
        """Why one of ``keys`` is not known ("" when all are)."""
        for key in (WHOLE, *keys):
            if key in self.holes:
                shown = "the declaration" if key == WHOLE else key
                return f"{shown}: {self.holes[key]}"
        return ""

    @cached_property
    def _parsed(self) -> MembershipProperties | InvalidProperties:
        known = dict(self.properties)
        if "MembershipId" in self.holes:
            known["MembershipId"] = _STAND_IN_ID
        try:
            return parse_properties(known)
        except InvalidProperties as error:
            return error

    @property
    def parsed(self) -> MembershipProperties | None:
        """The parsed declaration (holes left out), ``None`` if it is invalid."""
        value = self._parsed
        return value if isinstance(value, MembershipProperties) else None

    @property
    def error(self) -> str:
        """The reason the function would fail with, "" if the declaration is valid."""
        value = self._parsed
        return value.reason if isinstance(value, InvalidProperties) else ""

    @property
    def membership_id(self) -> str | None:
        """The declared MembershipId when it is known and a string."""
        value = self.properties.get("MembershipId")
        return value if isinstance(value, str) and not self.hole("MembershipId") else None


@dataclass(frozen=True)
class Subject:
    """One membership resource of one stack operation: ``None`` means absent."""

    stack: str
    logical_id: str
    old: Declaration | None
    new: Declaration | None

    @property
    def membership_id(self) -> str | None:
        """The membership the function would read: the new declaration's, else the old's."""
        current = self.new if self.new is not None else self.old
        return current.membership_id if current is not None else None


def _holes(problems: Sequence[str], properties: Mapping[str, Any]) -> dict[str, str]:
    holes: dict[str, str] = {}
    for problem in problems:
        path, _, why = problem.partition(": ")
        holes.setdefault(_TOP.split(path, maxsplit=1)[0], why)
    for path in unresolved_paths(properties):
        holes.setdefault(
            _TOP.split(path, maxsplit=1)[0], "a value CloudFormation fills in at deploy time"
        )
    for path, value in _walk(properties, ""):
        if value == MASKED:
            holes.setdefault(_TOP.split(path, maxsplit=1)[0], "masked (a NoEcho parameter)")
    return holes


def _walk(value: Any, path: str) -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return [
            pair for k, v in value.items() for pair in _walk(v, f"{path}.{k}" if path else str(k))
        ]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in _walk(v, f"{path}[{i}]")]
    return [(path, value)]


def _declaration(
    properties: Mapping[str, Any], problems: Sequence[str], policy: str | None, policy_hole: str
) -> Declaration:
    holes = _holes(problems, properties)
    known = {k: v for k, v in properties.items() if k not in holes and k not in CLOUDFORMATION_KEYS}
    return Declaration(known, holes, policy, policy_hole)


# -- templates -----------------------------------------------------------------------


def _custom(resource_type: str) -> bool:
    return resource_type.startswith("Custom::") or (
        resource_type == "AWS::CloudFormation::CustomResource"
    )


def _token_key(node: Any) -> str:
    return json.dumps(node, sort_keys=True, default=str)


def members(template: Mapping[str, Any], service_tokens: Sequence[str]) -> dict[str, Any]:
    """The membership resources of a template, by logical id.

    Every ``Custom::SecurityIRMembership``, and any other custom resource
    whose ServiceToken is written as one of theirs or is one of
    ``service_tokens`` (the provider's function ARNs).
    """
    resources = template.get("Resources")
    if not isinstance(resources, Mapping):
        return {}

    def token(resource: Any) -> Any:
        props = resource.get("Properties") if isinstance(resource, Mapping) else None
        return props.get("ServiceToken") if isinstance(props, Mapping) else None

    tokens = {_token_key(t) for t in service_tokens}
    tokens |= {
        _token_key(token(r))
        for r in resources.values()
        if isinstance(r, Mapping) and r.get("Type") == RESOURCE_TYPE and token(r) is not None
    }
    chosen = {}
    for lid, resource in resources.items():
        if not isinstance(resource, Mapping):
            continue
        kind = str(resource.get("Type", ""))
        if kind == RESOURCE_TYPE or (_custom(kind) and _token_key(token(resource)) in tokens):
            chosen[str(lid)] = resource
    return chosen


def _resolve_node(
    template: Mapping[str, Any], node: Any, context: StackContext
) -> tuple[Any, tuple[str, ...]]:
    """One template value through the preview's resolver (a one-property stand-in resource)."""
    stand_in = dict(template)
    stand_in["Resources"] = {"Node": {"Properties": {"Value": node}}}
    resolved = resolve_properties(stand_in, "Node", context)
    return resolved.properties.get("Value"), resolved.unresolved


def _present(
    template: Mapping[str, Any], resource: Mapping[str, Any], context: StackContext
) -> bool | str:
    """Whether the resource exists: its Condition's value, or why it cannot be known."""
    condition = resource.get("Condition")
    if condition is None:
        return True
    value, problems = _resolve_node(template, {"Fn::If": [condition, "yes", "no"]}, context)
    if problems:
        return f"its Condition {condition} cannot be evaluated ({problems[0].partition(': ')[2]})"
    return bool(value == "yes")


def template_declaration(
    template: Mapping[str, Any], logical_id: str, context: StackContext
) -> Declaration | None:
    """A resource's declaration in a template (``None`` when its Condition is false)."""
    resource = template["Resources"][logical_id]
    present = _present(template, resource, context)
    if present is False:
        return None
    if isinstance(present, str):
        return Declaration({}, {WHOLE: present}, None, present)
    resolved = resolve_properties(template, logical_id, context)
    raw_policy = resource.get("DeletionPolicy", "Delete")
    policy, problems = _resolve_node(template, raw_policy, context)
    policy_hole = ""
    if problems or not isinstance(policy, str):
        policy_hole = "DeletionPolicy cannot be resolved here"
        policy = None
    return _declaration(resolved.properties, resolved.unresolved, policy, policy_hole)


def template_subjects(
    stack: str,
    template: Mapping[str, Any] | None,
    previous: Mapping[str, Any] | None,
    context: StackContext,
    *,
    service_tokens: Sequence[str] = (),
    previous_context: StackContext | None = None,
) -> tuple[Subject, ...]:
    """Each membership resource of either template, old and new declaration."""
    new_members = members(template or {}, service_tokens)
    old_members = members(previous or {}, service_tokens)
    subjects = []
    for lid in sorted(set(new_members) | set(old_members)):
        new = (
            template_declaration(template, lid, context)
            if template and lid in new_members
            else None
        )
        old = None
        if previous and lid in old_members:
            old = template_declaration(previous, lid, previous_context or context)
        if old is not None or new is not None:
            subjects.append(Subject(stack, lid, old, new))
    return tuple(subjects)


# -- change sets ---------------------------------------------------------------------


class MalformedChange(MalformedRequest):
    """A change set payload's resource change is not the documented shape."""


def _context(change: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    raw = change.get(key)
    if raw is None or raw == "":
        return None
    try:
        decoded = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise MalformedChange(f"a change's {key} is not JSON") from None
    if not isinstance(decoded, Mapping):
        raise MalformedChange(f"a change's {key} is not an object")
    return decoded


def _properties(context: Mapping[str, Any]) -> Mapping[str, Any]:
    props = context.get("Properties", {})
    if not isinstance(props, Mapping):
        raise MalformedChange("a change's Properties is not an object")
    return props


def change_subjects(
    stack: str,
    changes: Sequence[Any],
    service_tokens: Sequence[str] = (),
    deployed: Mapping[str, Any] | None = None,
) -> tuple[Subject, ...]:
    """Each membership resource a change set creates, updates or deletes.

    ``changes`` are the payload's ``changedResources`` (``action`` CREATE,
    UPDATE or DELETE; ``beforeContext``/``afterContext`` JSON strings whose
    scalars are strings). A removed resource's DeletionPolicy is its
    ``beforeContext``'s, else the deployed template's (``deployed``).
    """
    parsed = []
    for change in changes:
        if not isinstance(change, Mapping) or not isinstance(change.get("logicalResourceId"), str):
            raise MalformedChange("a changed resource is not an object with a logicalResourceId")
        before, after = _context(change, "beforeContext"), _context(change, "afterContext")
        parsed.append((change, before, after))
    tokens = set(service_tokens) | {
        str(_properties(ctx).get("ServiceToken"))
        for change, before, after in parsed
        for ctx in (before, after)
        if ctx is not None and change.get("resourceType") == RESOURCE_TYPE
    }
    subjects = []
    for change, before, after in parsed:
        kind = str(change.get("resourceType", ""))
        props = [_properties(ctx) for ctx in (before, after) if ctx is not None]
        token = next((str(p["ServiceToken"]) for p in props if "ServiceToken" in p), None)
        if kind != RESOURCE_TYPE and not (_custom(kind) and token in tokens):
            continue
        lid = str(change["logicalResourceId"])
        old = new = None
        if before is not None:
            policy, hole = _removal_policy(before, lid, deployed)
            old = _declaration(_properties(before), (), policy, hole)
        if after is not None:
            new = _declaration(_properties(after), (), None, "")
        subjects.append(Subject(stack, lid, old, new))
    return tuple(subjects)


def needs_deployed_template(changes: Sequence[Any]) -> bool:
    """Whether a deleted membership's DeletionPolicy must be read from the deployed template."""
    for change in changes:
        if isinstance(change, Mapping) and str(change.get("action", "")).upper() == "DELETE":
            before = _context(change, "beforeContext")
            if before is not None and "DeletionPolicy" not in before:
                return True
    return False


def _removal_policy(
    before: Mapping[str, Any], logical_id: str, deployed: Mapping[str, Any] | None
) -> tuple[str | None, str]:
    if isinstance(before.get("DeletionPolicy"), str):
        return str(before["DeletionPolicy"]), ""
    resources = (deployed or {}).get("Resources")
    resource = resources.get(logical_id) if isinstance(resources, Mapping) else None
    if not isinstance(resource, Mapping):
        return None, "DeletionPolicy is not in the change and the deployed template is not known"
    policy = resource.get("DeletionPolicy", "Delete")
    if not isinstance(policy, str) or PLACEHOLDER.search(policy):
        return None, "the deployed DeletionPolicy is an intrinsic function"
    return policy, ""
