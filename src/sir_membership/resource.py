"""One CloudFormation request in, one ``Answer`` out.

This is the side-effecting work that runs at most once per request (the
shell wraps it in Powertools idempotency). Domain failures become FAILED
answers here, so a duplicate delivery gets the same answer back; only bugs
escape as exceptions.
"""

from __future__ import annotations

import logging

from .errors import MembershipError
from .plan import Plan
from .request import Request, decide
from .response import Answer
from .service import MembershipService

__all__ = ["Answer", "Request", "handle"]

logger = logging.getLogger(__name__)


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


def _carry_out(request: Request, service: MembershipService) -> Answer:
    decision = decide(request)
    if decision.membership_id is None or decision.plan is None:
        logger.info("nothing to do", extra={"why": decision.reason})
        return Answer.success(request.physical_id, {})
    if decision.must_exist:
        state = service.get(decision.membership_id)
    else:
        found = service.find(decision.membership_id)
        if found is None:
            logger.info("membership no longer exists: nothing to do")
            return Answer.success(request.physical_id, {})
        state = found
    plan = decision.plan(state)
    _log_plan(plan)
    applied = service.apply(state, plan, decision.plan)
    logger.info("applied", extra={"membershipId": state.membership_id, "calls": applied.calls})
    if request.request_type == "Delete":
        return Answer.success(request.physical_id, {})
    return Answer.success(state.membership_id, applied.state.attributes())


def handle(request: Request, service: MembershipService) -> Answer:
    """Carry out ``request`` and say how it went. Never raises ``MembershipError``."""
    try:
        return _carry_out(request, service)
    except MembershipError as error:
        logger.warning("failed", extra={"errorType": type(error).__name__})
        return Answer.failed(request.failed_physical_id(), error.reason)
