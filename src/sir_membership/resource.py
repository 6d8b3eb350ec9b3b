"""One CloudFormation request in, one ``Answer`` out.

This is the side-effecting work that runs at most once per request (the
shell wraps it in Powertools idempotency). Domain failures become FAILED
answers here, so a duplicate delivery gets the same answer back; only bugs
escape as exceptions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidProperties, MembershipError
from .plan import Plan, plan_changes, plan_delete
from .properties import MembershipProperties, parse_properties
from .response import Answer
from .service import MembershipService
from .service_model import rules

logger = logging.getLogger(__name__)

RequestType = Literal["Create", "Update", "Delete"]


@dataclass(frozen=True)
class Request:
    """The parts of a CloudFormation event the resource uses (no ResponseURL)."""

    request_type: RequestType
    stack_id: str
    request_id: str
    logical_id: str
    physical_id: str = ""
    properties: Mapping[str, Any] = field(default_factory=dict, repr=False)
    old_properties: Mapping[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Request:
        """Pick the fields out of a raw event."""
        request_type = event.get("RequestType")
        if request_type not in ("Create", "Update", "Delete"):
            raise InvalidProperties(f"Unsupported RequestType {request_type!r}")
        return cls(
            request_type=request_type,
            stack_id=str(event.get("StackId", "")),
            request_id=str(event.get("RequestId", "")),
            logical_id=str(event.get("LogicalResourceId", "")),
            physical_id=str(event.get("PhysicalResourceId", "")),
            properties=event.get("ResourceProperties") or {},
            old_properties=event.get("OldResourceProperties"),
        )

    def failed_physical_id(self) -> str:
        """The id to answer with on failure.

        A failed Create has no membership of its own: a stable id that is not
        a membership id lets the Delete CloudFormation sends next succeed
        without a call, and a duplicate gets the same id. Failed Updates and
        Deletes keep the current id so nothing gets replaced.
        """
        if self.request_type == "Create" or not self.physical_id:
            return f"{self.logical_id or 'resource'}-failed-{self.request_id[:36]}"
        return self.physical_id


def _old_ous(raw: Mapping[str, Any] | None, membership_id: str) -> frozenset[str]:
    """The previous declaration's OUs, if it was valid and for the same membership.

    Invalid old properties were never applied (their Create or Update failed
    before any write), so there is nothing of theirs to remove.
    """
    try:
        old = parse_properties(raw)
    except InvalidProperties:
        return frozenset()
    return old.organizational_units if old.membership_id == membership_id else frozenset()


def _log_plan(plan: Plan) -> None:
    logger.info(
        "planned",
        extra={
            "membershipId": plan.membership_id,
            "calls": len(plan.requests),
            "ousToAdd": len(plan.ous_to_add),
            "ousToRemove": len(plan.ous_to_remove),
            "changedProperties": [c.property for c in plan.changes],
        },
    )


def _converge(
    service: MembershipService, desired: MembershipProperties, previous: frozenset[str]
) -> Answer:
    state = service.get(desired.membership_id)
    plan = plan_changes(desired, state, previous)
    _log_plan(plan)
    applied = service.apply(state, plan, lambda now: plan_changes(desired, now, previous))
    logger.info("applied", extra={"membershipId": desired.membership_id, "calls": applied.calls})
    return Answer.success(desired.membership_id, applied.state.attributes())


def _delete(service: MembershipService, request: Request) -> Answer:
    physical = request.physical_id
    if not rules().membership_id.accepts(physical):
        logger.info("delete of a resource that never became a membership: nothing to do")
        return Answer.success(physical, {})
    try:
        declared = parse_properties(request.properties)
    except InvalidProperties:
        logger.warning("delete with invalid properties: retaining the membership unchanged")
        return Answer.success(physical, {})
    if declared.on_delete == "Retain" or declared.membership_id != physical:
        return Answer.success(physical, {})
    state = service.find(physical)
    if state is None:
        logger.info("membership no longer exists: nothing to remove")
        return Answer.success(physical, {})
    plan = plan_delete(declared, state)
    _log_plan(plan)
    applied = service.apply(state, plan, lambda now: plan_delete(declared, now))
    logger.info("applied", extra={"membershipId": physical, "calls": applied.calls})
    return Answer.success(physical, {})


def handle(request: Request, service: MembershipService) -> Answer:
    """Carry out ``request`` and say how it went. Never raises ``MembershipError``."""
    try:
        if request.request_type == "Delete":
            return _delete(service, request)
        desired = parse_properties(request.properties)
        replaced = request.request_type == "Update" and desired.membership_id != request.physical_id
        previous = frozenset[str]()
        if request.request_type == "Update" and not replaced:
            previous = _old_ous(request.old_properties, desired.membership_id)
        return _converge(service, desired, previous)
    except MembershipError as error:
        logger.warning("failed", extra={"errorType": type(error).__name__})
        return Answer.failed(request.failed_physical_id(), error.reason)
