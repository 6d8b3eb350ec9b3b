"""A request's time across the Work steps of its execution (pure but for the clock).

Why apart from ``resource``: the work (plan, journal, call, restore) is the
same in every step; what differs is only at the edges, and that is here:
when the request's time is up (its ServiceTimeout, counted from the first
delivery, less a margin for the answer), whether a failure only means "not
now" so the engine should wait and run the next step (``may_continue``), and
the reason when no step can follow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import MembershipBusy, MembershipError, OutOfTime, calls_known, with_outcome
from .outcome import Continue
from .shell import Shell
from .timing import TIMING

#: CloudFormation's default and largest ServiceTimeout for a custom resource.
DEFAULT_SERVICE_TIMEOUT = 3600
#: Seconds before ServiceTimeout by which the answer is sent.
ANSWER_MARGIN = TIMING.answer_margin
#: Seconds a next step needs, at least, to be worth waiting for: a cold
#: start, a read, one call that may take its whole timeout, and the answer.
CONTINUE_MIN = TIMING.continue_min
#: Seconds between looks at a membership another request is changing.
BUSY_POLL = TIMING.busy_poll


def service_timeout(properties: Mapping[str, Any]) -> int:
    """The resource's ServiceTimeout in seconds (CloudFormation sends it as a string).

    CloudFormation itself rejects a value outside 1..3600 before any event is
    sent, so anything unreadable here counts as the default (3600 s).
    """
    raw = properties.get("ServiceTimeout")
    try:
        seconds = int(str(raw).strip()) if raw is not None else DEFAULT_SERVICE_TIMEOUT
    except ValueError:
        return DEFAULT_SERVICE_TIMEOUT
    return seconds if 1 <= seconds <= DEFAULT_SERVICE_TIMEOUT else DEFAULT_SERVICE_TIMEOUT


@dataclass
class Steps:
    """The request's deadline as this Work step sees it."""

    shell: Shell
    service_timeout: int
    started: float

    @classmethod
    def of(cls, properties: Mapping[str, Any], shell: Shell) -> Steps:
        """Counted from now until ``started_at`` says when the request was first seen."""
        return cls(shell, service_timeout(properties), shell.clock())

    def started_at(self, first_seen: float) -> None:
        """Count the request's time from its first delivery."""
        self.started = min(self.started, first_seen)

    @property
    def deadline(self) -> float:
        """When the answer must be sent (epoch seconds)."""
        return self.started + self.service_timeout - ANSWER_MARGIN

    def time_left(self) -> float:
        """Seconds until the request's answer is due."""
        return self.deadline - self.shell.clock()

    def _wait(self, error: MembershipError) -> float:
        return error.wait if isinstance(error, OutOfTime) else BUSY_POLL

    def may_continue(self, error: MembershipError) -> bool:
        """Whether ``error`` only means "not now", with time left after the wait for another step.

        A wait that would end too close to the deadline is not started: the
        request answers FAILED now, in time, instead of after CloudFormation
        gave up.
        """
        return (
            self.shell.engine
            and isinstance(error, OutOfTime | MembershipBusy)
            and self.time_left() - self._wait(error) >= CONTINUE_MIN
        )

    def continue_after(self, error: MembershipError) -> Continue:
        """The next step, after the wait the failure asks for."""
        return Continue(self._wait(error), type(error).__name__)

    def out_of_time(self, error: OutOfTime) -> MembershipError:
        """``error`` when no more steps can follow: say what ran out, and the fix."""
        if not self.shell.engine:
            return error.fixed("raise the function's Timeout or retry the stack operation")
        refused = f" (last error from the service: {error.cause})" if error.cause else ""
        return OutOfTime(
            with_outcome(
                f"The change could not finish within the resource's ServiceTimeout of "
                f"{self.service_timeout} s over {self.shell.step + 1} Work step(s){refused}: "
                "raise ServiceTimeout (up to 3600) and retry",
                calls_known(error.applied, error.planned, error.unknown),
            ),
            applied=error.applied,
            planned=max(error.planned, error.applied),
            unknown=error.unknown,
            cause=error.cause,
        )
