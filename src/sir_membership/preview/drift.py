"""Drift: the deployed declaration against the live membership.

Drift is defined as what the function would change on the resource's next
Update, so it is computed by the function's own decision and planner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..errors import InvalidProperties, MembershipNotUpdatable
from ..membership import MembershipState
from ..plan import Change, UpdateRequest
from ..properties import parse_properties
from ..request import Request, decide
from ..service_model import rules
from ..tags import TagCall, plan_tags


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
    #: TagResource calls that restore the declared tags (none if Tags is not declared).
    tag_calls: tuple[TagCall, ...] = ()


def declared_tags(declared: Mapping[str, Any]) -> dict[str, str] | None:
    """The declaration's tags (``None``: Tags not declared, so no drift in tags is possible).

    Raises ``InvalidProperties`` as ``assess_drift`` reports it.
    """
    return parse_properties(declared).tag_map


def assess_drift(
    logical_id: str,
    physical_id: str,
    declared: Mapping[str, Any],
    actual: MembershipState,
    actual_tags: Mapping[str, str] | None = None,
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
    tag_calls: tuple[TagCall, ...] = ()
    wanted = parse_properties(declared).tag_map
    if wanted is not None and actual_tags is not None:
        # An Update whose old and new declarations are the same: it sets
        # declared values, and removes nothing.
        tag_plan = plan_tags(wanted, wanted, actual_tags, actual.arn)
        differences += [Change(f"Tags.{c.key}", c.detail) for c in tag_plan.changes]
        tag_calls = tag_plan.calls
    return Drift(
        logical_id,
        physical_id,
        "drifted" if differences else "in-sync",
        differences=tuple(differences),
        ous_missing=plan.ous_to_add,
        ous_outside=tuple(sorted(actual.organizational_units - declared_ous)),
        requests=plan.requests,
        notes=tuple(notes),
        tag_calls=tag_calls,
    )


def never_a_membership(physical_id: str) -> bool:
    """A physical id the function answers with on a failed Create is not a membership."""
    return not rules().membership_id.accepts(physical_id)


def drift_status(reports: Sequence[Drift]) -> Literal["in-sync", "drifted", "fail"]:
    """The stack's verdict: any resource that cannot be checked fails the whole check."""
    if any(d.status in ("fail", "unresolved") for d in reports):
        return "fail"
    return "drifted" if any(d.status == "drifted" for d in reports) else "in-sync"
