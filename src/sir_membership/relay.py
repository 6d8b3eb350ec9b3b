"""This invocation's link in a request carried across invocations (``continuation``).

Why apart from ``resource``: the work (plan, journal, call, restore) is the
same whichever link does it; what differs is only at the edges, and that is
here: whether a continuation may go on at all (``join``), when the request's
time is up (``time_left``), how the work is handed to the next link
(``hand_off``), and how the last link records the answer before it is sent
(``finish``), so a late duplicate can send it again (``replay``).

A request that fits in one invocation never touches the hand-off record:
no table call is added to the common path.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from .continuation import Continuation, HandedOff, Handoff, Outcome, Stopped, first
from .errors import (
    ContinuationFailed,
    MembershipBusy,
    MembershipError,
    OutOfTime,
    calls_known,
    with_outcome,
)
from .request import Request
from .response import Answer
from .shell import Shell
from .timing import TIMING

logger = logging.getLogger(__name__)

#: Seconds a continuation keeps, after waiting for the service's Retry-After, to work.
WAIT_RESERVE = TIMING.wait_reserve


class Relay:
    """The request's hand-off record as this invocation holds it."""

    def __init__(self, request: Request, shell: Shell) -> None:
        self.request = request
        self.shell = shell
        self.record: Handoff = first(request.request_id, "", shell.clock(), request.properties)
        #: Whether the record is in the table (only once the request was handed off).
        self.stored = False

    def started_at(self, first_seen: float) -> None:
        """Count the request's time from its first delivery (a Lambda retry comes later)."""
        self.record = replace(self.record, started=min(self.record.started, first_seen))

    @property
    def continuing(self) -> bool:
        """Whether this invocation continues a request an earlier one began."""
        return self.stored

    def join(self) -> Answer | Stopped | None:
        """Check a continuation against the table; ``Stopped`` if it must not go on.

        The event's marker is a claim: only the token the record holds may
        continue the request, and only while it is unanswered. A link whose
        request was answered gets that answer again, with no call: the link
        that recorded it may have died before sending it (Lambda then retries
        that very link), and CloudFormation ignores a repeated answer.
        """
        marker = self.request.continuation
        if marker is None:
            return None
        stored = self.shell.store.read_handoff(self.request.stack_id, self.request.request_id)
        if stored is None or stored.token != marker.token:
            logger.warning("not the request's current continuation: nothing to do")
            return Stopped("not the request's current continuation")
        if stored.answer is not None:
            logger.info("the request was already answered: sending that answer again")
            return stored.answer
        self.record, self.stored = stored, True
        logger.info(
            "continuing the request",
            extra={"invocation": stored.invocations, "secondsLeft": round(self.time_left())},
        )
        self._wait_until(stored.not_before)
        return None

    def _wait_until(self, moment: float) -> None:
        """Sleep until the service said the next call may go, as far as this invocation allows."""
        wait = min(moment - self.shell.clock(), self.shell.remaining() - WAIT_RESERVE)
        if wait > 0:
            logger.info("waiting as the service asked", extra={"seconds": round(wait, 1)})
            self.shell.sleep(wait)

    def time_left(self) -> float:
        """Seconds until the request's last answer is due (its ServiceTimeout, less a margin)."""
        return self.record.deadline - self.shell.clock()

    def may_hand_off(self, error: MembershipError) -> bool:
        """Whether ``error`` only means "not in this invocation", with time left for another."""
        return (
            self.shell.hand_off is not None
            and isinstance(error, OutOfTime | MembershipBusy)
            and self.record.can_continue(self.shell.clock())
        )

    def hand_off(self, error: MembershipError, previous_applied: bool | None) -> Outcome:
        """Record a new token and start the invocation that holds it.

        The record is written before the invocation starts, so the new link
        always finds its token; if starting it fails, the token is never
        used and the request is answered FAILED here.
        """
        assert self.shell.hand_off is not None
        now = self.shell.clock()
        wait = error.wait if isinstance(error, OutOfTime) else 0.0
        token = self.shell.token()
        following = self.record.next(token, now=now, wait=wait, previous_applied=previous_applied)
        replacing = self.record.token if self.stored else None
        if not self.shell.store.write_handoff(
            self.request.stack_id, following, replacing=replacing
        ):
            logger.warning("another invocation took the request over: stopping")
            return Stopped("taken over")
        self.record, self.stored = following, True
        try:
            self.shell.hand_off(Continuation(token, following.invocations))
        except ContinuationFailed as failed:
            raise ContinuationFailed(
                error.also(failed.reason).reason,
                applied=error.applied,
                planned=error.planned,
                unknown=error.unknown,
            ) from None
        logger.info(
            "handed off to a new invocation",
            extra={
                "invocation": following.invocations,
                "applied": error.applied,
                "waitSeconds": round(wait, 1),
                "secondsLeft": round(self.time_left()),
            },
        )
        return HandedOff(token, following.invocations)

    def out_of_time(self, error: OutOfTime) -> MembershipError:
        """``error`` when no more invocations can follow: say what ran out, and the fix."""
        if self.shell.hand_off is None:
            return error.fixed("raise the function's Timeout or retry the stack operation")
        refused = f" (last error from the service: {error.cause})" if error.cause else ""
        record = self.record
        return OutOfTime(
            with_outcome(
                f"The change could not finish within the resource's ServiceTimeout of "
                f"{record.service_timeout} s over {record.invocations} invocation(s){refused}: "
                "raise ServiceTimeout (up to 3600) and retry",
                calls_known(error.applied, error.planned, error.unknown),
            ),
            applied=error.applied,
            planned=max(error.planned, error.applied),
            unknown=error.unknown,
            cause=error.cause,
        )

    def finish(self, answer: Answer) -> Outcome:
        """Record the last link's answer before it is sent (nothing to do for a single link)."""
        if not self.stored:
            return answer
        try:
            kept = self.shell.store.write_handoff(
                self.request.stack_id,
                replace(self.record, answer=answer),
                replacing=self.record.token,
            )
        except MembershipError as error:  # the answer still goes out; a duplicate cannot resend it
            logger.warning("could not record the answer", extra={"reason": error.reason})
            return answer
        if not kept:
            logger.warning("another invocation took the request over: not answering")
            return Stopped("taken over")
        return answer


def replay(request: Request, shell: Shell) -> Outcome:
    """For a duplicate of an event that was handed off: the answer, once there is one."""
    stored = shell.store.read_handoff(request.stack_id, request.request_id)
    if stored is not None and stored.answer is not None:
        logger.info("duplicate delivery: sending the answer the last invocation recorded")
        return stored.answer
    logger.info("duplicate delivery: the request continues in another invocation")
    return Stopped("continuing elsewhere")
