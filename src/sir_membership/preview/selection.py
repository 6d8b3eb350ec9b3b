"""Selecting the resource changes of a change set that the function will be sent.

Only custom resources reach the function; which of them are memberships is
decided by type name or by a shared ServiceToken, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..properties import CLOUDFORMATION_KEYS, PROPERTY_KEYS
from .base import RESOURCE_TYPE, PreviewError
from .changeset import ChangeSet


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
