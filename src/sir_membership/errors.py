"""Every failure this resource reports, as a small hierarchy of values.

Each error's ``str()`` is the one line CloudFormation shows in the stack
events as the resource's status reason. The messages are written to name the
property or the cause and what to do about it, and are built only from
identifiers (membership ids, OU ids, property names, error codes), never from
names, emails, job titles or the membership name, which the service model
marks sensitive.

A reason has one shape, so the fix is never read as part of the count:
``<what failed>: <fix>. <what was applied>; <what happens to it>``. For
example ``Access denied for security-ir:UpdateMembership on membership m-…:
allow … in the function's role. 1 of 2 UpdateMembership calls were applied;
the stack's rollback restores them from the change journal``. The first
sentence is the error's own; ``outcome`` adds the second (``calls_applied``
or ``NO_CHANGE``); ``noted`` adds what happens to them.
"""

from __future__ import annotations

import copy

#: The outcome when no call was applied.
NO_CHANGE = "no change was applied"


def calls_applied(applied: int, planned: int) -> str:
    """The outcome of a plan that stopped: how many of its calls were applied ("" if none planned)."""
    if not planned:
        return ""
    if not applied:
        return NO_CHANGE
    return f"{applied} of {planned} UpdateMembership calls were applied"


def calls_known(applied: int, planned: int, unknown: int) -> str:
    """The outcome of a plan that stopped, never "no change" while a call may have applied."""
    planned = max(planned, applied)
    unsure = (
        f"the outcome of {unknown} UpdateMembership call{'s' if unknown > 1 else ''} is unknown "
        "(it may have been applied)"
    )
    if not unknown:
        return calls_applied(applied, planned) or NO_CHANGE
    if not applied:
        return unsure
    return f"{calls_applied(applied, planned)}, and {unsure}"


def with_outcome(reason: str, outcome: str) -> str:
    """``reason`` (what failed: the fix) with ``outcome`` as a sentence of its own."""
    if not outcome:
        return reason
    return f"{reason}. {outcome[:1].upper()}{outcome[1:]}"


class MembershipError(Exception):
    """Base class: a failure that becomes the CloudFormation ``Reason``.

    ``applied`` and ``planned`` count the UpdateMembership calls of the plan
    that had succeeded and that were planned when the failure happened, so
    the caller can tell a failure before any write from one part-way.
    ``unknown`` counts calls whose outcome could not be read back (a 5xx or
    a read timeout followed by reads that failed): they may have been
    applied, so they are undone or rolled back like applied ones.
    """

    def __init__(
        self, message: str, *, applied: int = 0, planned: int = 0, unknown: int = 0
    ) -> None:
        super().__init__(message)
        self.applied = applied
        self.planned = planned
        self.unknown = unknown

    @property
    def may_have_written(self) -> bool:
        """Whether any call of the plan was, or may have been, applied."""
        return bool(self.applied or self.unknown)

    @property
    def reason(self) -> str:
        """The one-line reason sent to CloudFormation."""
        return str(self)

    def noted(self, note: str) -> MembershipError:
        """The same failure with ``note`` appended to its reason (e.g. what was undone)."""
        noted = copy.copy(self)
        noted.args = (f"{self.reason}; {note}",)
        return noted

    def fixed(self, fix: str) -> MembershipError:
        """The same failure with ``fix`` after what failed, before its outcome sentence."""
        return self._widened(f": {fix}")

    def also(self, cause: str) -> MembershipError:
        """The same failure with a second ``cause`` after the first, before the outcome."""
        return self._widened(f"; {cause}")

    def _widened(self, text: str) -> MembershipError:
        outcome = calls_applied(self.applied, self.planned)
        what = self.reason.removesuffix(with_outcome("", outcome)) if outcome else self.reason
        told = copy.copy(self)
        told.args = (with_outcome(f"{what}{text}", outcome),)
        return told

    def outcome(self, outcome: str) -> MembershipError:
        """The same failure with ``outcome`` (what was applied) as a sentence of its own."""
        told = copy.copy(self)
        told.args = (with_outcome(self.reason, outcome),)
        return told


class InvalidProperties(MembershipError):
    """The declared properties break the contract; nothing was written."""


class MembershipNotFound(MembershipError):
    """The membership does not exist where the function runs (account/region)."""


class PermissionDenied(MembershipError):
    """The function's role lacks a permission; the message names the action."""


class MembershipNotUpdatable(MembershipError):
    """The membership's status forbids the change (Terminated, or Cancelled)."""


class ServiceFailure(MembershipError):
    """The service rejected a call, or retries ran out of time."""


class Rejected(ServiceFailure):
    """The service rejected the call as invalid; ``fields`` are the members it named.

    Kept apart because a rejection can be evidence: repeating an OU change
    whose first answer was lost is rejected exactly when the first one was
    applied (``service.MembershipService.apply``).
    """

    def __init__(
        self,
        message: str,
        *,
        applied: int = 0,
        planned: int = 0,
        unknown: int = 0,
        fields: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, applied=applied, planned=planned, unknown=unknown)
        self.fields = fields


class OutOfTime(ServiceFailure):
    """The next call or wait does not fit in the time left (this invocation's, or the
    request's ServiceTimeout).

    Told apart from other service failures so the work can continue in a new
    invocation instead of failing, while the request's deadline allows.
    ``wait`` is how long the service asked to wait before the next attempt.
    """

    def __init__(
        self,
        message: str,
        *,
        applied: int = 0,
        planned: int = 0,
        unknown: int = 0,
        wait: float = 0.0,
        cause: str = "",
    ) -> None:
        super().__init__(message, applied=applied, planned=planned, unknown=unknown)
        self.wait = wait
        #: The service's last refusal (an error code), if it refused.
        self.cause = cause


class EngineUnavailable(MembershipError):
    """The request's execution could not be started (Step Functions refused or failed).

    Raised by the dispatcher before any write: nothing was changed.
    """


class Superseded(MembershipError):
    """A newer request of the same resource took its generation fence: this one stops.

    Raised immediately before a write that would otherwise have been sent,
    so a stale request never writes (``request_store.RequestStore.holds``).
    """


class ConfigurationError(MembershipError):
    """The function itself is misconfigured (environment, table)."""


class JournalUnavailable(MembershipError):
    """The change journal (or the lease) could not be read or written.

    Raised before the first write, so nothing is changed without a record of
    what it was.
    """


class StackStatusUnavailable(MembershipError):
    """The consumer stack's status, which tells a Create's rollback from a removal, is unreadable.

    A Delete fails with it rather than guess between restoring and ``OnDelete``.
    """


class MembershipBusy(MembershipError):
    """Another request held the membership's lease for longer than this one could wait."""


class MalformedRequest(MembershipError):
    """The event is not CloudFormation's (a key missing or mistyped); nothing was read."""


class RequestNotAllowed(MembershipError):
    """The stack may not use this provider (AllowedStackNames, account/region); nothing was read."""
