"""One CloudFormation request in, one ``Answer`` out.

``handle`` is the side-effecting work that runs at most once per request
(the shell wraps it in Powertools idempotency). ``answer_without_writes``
answers the requests that cannot lead to a write (invalid properties, a
Delete with nothing to do) before that, so they never depend on the
idempotency table: a rollback Delete after a failed Create succeeds even if
the table is unreachable. Domain failures become FAILED answers here, so a
duplicate delivery gets the same answer back; only bugs escape as exceptions.
"""

from __future__ import annotations

import logging

from . import tags
from .adoption import AdoptionNotes
from .errors import MembershipError
from .membership import MembershipState
from .plan import Plan, plan_restore
from .request import Decision, Request, decide
from .response import Answer
from .service import MembershipService

__all__ = ["Answer", "Request", "answer_without_writes", "handle"]

logger = logging.getLogger(__name__)


def _log_plan(message: str, plan: Plan) -> None:
    logger.info(
        message,
        extra={
            "membershipId": plan.membership_id,
            "calls": len(plan.requests),
            "ousToAdd": len(plan.ous_to_add),
            "ousToRemove": len(plan.ous_to_remove),
            "changedProperties": [c.property for c in plan.changes],
        },
    )


def _failed(request: Request, error: MembershipError) -> Answer:
    logger.warning("failed", extra={"errorType": type(error).__name__, "applied": error.applied})
    return Answer.failed(request.failed_physical_id(), error.reason)


def _decide(request: Request) -> Decision | Answer:
    """The decision, or the answer when the request cannot lead to a write."""
    try:
        decision = decide(request)
    except MembershipError as error:
        return _failed(request, error)
    if decision.membership_id is None:
        logger.info("nothing to do", extra={"why": decision.reason})
        return Answer.success(request.physical_id, {})
    return decision


def answer_without_writes(request: Request) -> Answer | None:
    """The answer to a request that cannot write anything, or None if it may write.

    These answers depend only on the event, so a duplicate delivery gets the
    same one without an idempotency record.
    """
    decided = _decide(request)
    return decided if isinstance(decided, Answer) else None


def _undo(
    service: MembershipService, before: MembershipState, attempted: Plan, error: MembershipError
) -> MembershipError:
    """Put back what a failed Create or replacing Update applied (see ``plan_restore``)."""
    membership_id = before.membership_id
    try:
        now = service.get(membership_id)
        undo = plan_restore(before, now, attempted)
        _log_plan("undoing", undo)
        service.apply(now, undo, lambda state: plan_restore(before, state, attempted))
    except MembershipError as undo_error:
        logger.warning("undo failed", extra={"errorType": type(undo_error).__name__})
        return error.noted(
            f"undoing them failed too ({type(undo_error).__name__}): membership "
            f"{membership_id} keeps those changes; set its OUs and fields back by hand"
        )
    if now.status == "Active" and before.status == "Cancelled":
        return error.noted(
            f"they were undone except the reactivation: membership {membership_id} stays Active"
        )
    return error.noted(f"they were undone, membership {membership_id} is as it was")


def _keep_adopted(request: Request, decision: Decision, notes: AdoptionNotes | None) -> Decision:
    """An Update that drops OUs keeps those the Update it undoes had adopted."""
    if notes is None or not decision.rolled_back_by_update or not decision.dropped:
        return decision
    assert decision.membership_id is not None
    keep = notes.recall(
        request.stack_id, request.logical_id, decision.membership_id, decision.previous
    )
    if keep & decision.dropped:
        logger.info("keeping adopted OUs", extra={"ousKept": len(keep & decision.dropped)})
    return decision.keeping(keep)


def _tag_plan(request: Request, service: MembershipService, state: MembershipState) -> tags.TagPlan:
    """The tag calls (``tags.plan_tags``); no call at all when Tags is not declared."""
    declared, previous = tags.declarations(request)
    if not tags.managed(declared, previous):
        return tags.TagPlan()
    arn = state.arn or tags.membership_arn(
        "aws", state.region, state.account_id, state.membership_id
    )
    plan = tags.plan_tags(declared, previous, service.list_tags(state.membership_id, arn), arn)
    logger.info("tags planned", extra={"tagCalls": [c.summary() for c in plan.calls]})
    return plan


def _carry_out(
    request: Request, decision: Decision, service: MembershipService, notes: AdoptionNotes | None
) -> Answer:
    membership_id = decision.membership_id
    assert membership_id is not None
    decision = _keep_adopted(request, decision, notes)
    plan_for = decision.plan
    assert plan_for is not None
    if decision.must_exist:
        state = service.get(membership_id)
    else:
        found = service.find(membership_id)
        if found is None:
            logger.info("membership no longer exists: nothing to do")
            return Answer.success(request.physical_id, {})
        state = found
    plan = plan_for(state)
    _log_plan("planned", plan)
    tag_plan = _tag_plan(request, service, state)  # read before any write
    # Written before the first call: a failure at any point must find it.
    # A rollback (it recalled a note) is never rolled back itself, so it keeps
    # the note it read: a retried rollback must find it again.
    note = decision.rolled_back_by_update and not decision.keep
    if notes is not None and note and plan.requests and plan.ous_adopted:
        adopted = frozenset(plan.ous_adopted)
        notes.remember(
            request.stack_id, request.logical_id, membership_id, decision.declared, adopted
        )
    try:
        applied = service.apply(state, plan, plan_for)
    except MembershipError as error:
        if error.applied and decision.undo_on_failure:
            raise _undo(service, state, plan, error) from None
        raise
    logger.info("applied", extra={"membershipId": membership_id, "calls": applied.calls})
    service.apply_tags(membership_id, tag_plan)
    # Once an Update of this membership succeeded, no rollback can need an
    # older note, and a stale one would make later Updates differ from `plan`.
    if notes is not None and decision.rolled_back_by_update:
        notes.forget(request.stack_id, request.logical_id)
    if request.request_type == "Delete":
        return Answer.success(request.physical_id, {})
    return Answer.success(membership_id, applied.state.attributes())


def handle(
    request: Request, service: MembershipService, notes: AdoptionNotes | None = None
) -> Answer:
    """Carry out ``request`` and say how it went. Never raises ``MembershipError``.

    ``notes`` keeps what an Update adopted for its rollback (see ``adoption``).
    """
    decided = _decide(request)
    if isinstance(decided, Answer):
        return decided
    try:
        return _carry_out(request, decided, service, notes)
    except MembershipError as error:
        return _failed(request, error)
