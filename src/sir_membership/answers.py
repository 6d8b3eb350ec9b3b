"""The FAILED answer, the plan's log line and the journal's last save, shared by all work.

Why apart: the forward change (``resource``) and the restoring work
(``restore``) end the same ways, and each of these must stay one rule: a
failure is logged with its counts and answered with its reason only; the
journal's final phase is saved only while there is time, since the answer
does not wait on it.
"""

from __future__ import annotations

import copy
import logging

from .errors import NO_CHANGE, MembershipError, calls_applied, with_outcome
from .journal import Entry
from .journal_writer import JournalWriter
from .plan import Plan
from .request import Request
from .response import Answer
from .shell import Shell
from .timing import TIMING
from .unknown_outcome import with_unknown

logger = logging.getLogger(__name__)

#: Below this many seconds left, bookkeeping after the last write is skipped.
BOOKKEEPING_RESERVE = TIMING.bookkeeping_reserve


def log_plan(message: str, plan: Plan) -> None:
    """One line about a plan: its size and the properties it changes (never their values)."""
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


def failed(request: Request, error: MembershipError, *, unrestored: bool = False) -> Answer:
    """The FAILED answer for ``error``, logged with its counts."""
    logger.warning(
        "failed",
        extra={
            "errorType": type(error).__name__,
            "applied": error.applied,
            "unknown": error.unknown,
            "reason": error.reason,
        },
    )
    return Answer.failed(request.failed_physical_id(unrestored=unrestored), error.reason)


def bookkeeping(shell: Shell, journal: JournalWriter) -> None:
    """The entry's final state, if there is time; the answer does not wait on it."""
    if not journal.unsaved:
        return
    if shell.remaining() < BOOKKEEPING_RESERVE:
        logger.warning("little time left: the journal's final phase is not recorded")
        return
    try:
        journal.save()
    except MembershipError as error:
        logger.warning("could not record the journal's final phase", extra={"reason": error.reason})


def at_least(error: MembershipError, entry: Entry) -> MembershipError:
    """``error`` counting at least the calls the journal already shows, and saying so.

    Its reason must not say "no change was applied" when the journal shows
    a call that was, or may have been.
    """
    if error.applied >= entry.applied and error.unknown >= entry.unknown:
        return error
    nothing = with_outcome("", NO_CHANGE)
    counted = copy.copy(error)
    if entry.applied > error.applied:
        planned = max(error.planned, entry.planned, entry.applied)
        counted.args = (
            with_outcome(error.reason.removesuffix(nothing), calls_applied(entry.applied, planned)),
        )
        counted.applied, counted.planned = entry.applied, planned
    if entry.unknown > error.unknown:
        counted = with_unknown(counted) if not error.unknown else counted
        counted.unknown = max(entry.unknown, counted.unknown)
    return counted
