"""The requests CloudFormation will send the function for one resource change.

Translation only: a change (Add / Modify / Remove) becomes the Create,
Update and cleanup Delete requests, in CloudFormation's order, with the
retention policies that withhold a Delete.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..request import Request
from .base import PLACEHOLDER
from .selection import Target


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
