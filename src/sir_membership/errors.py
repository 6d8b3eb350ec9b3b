"""Every failure this resource reports, as a small hierarchy of values.

Each error's ``str()`` is the one line CloudFormation shows in the stack
events as the resource's status reason. The messages are written to name the
property or the cause and what to do about it, and are built only from
identifiers (membership ids, OU ids, property names, error codes), never from
names, emails, job titles or the membership name, which the service model
marks sensitive.
"""

from __future__ import annotations


class MembershipError(Exception):
    """Base class: a failure that becomes the CloudFormation ``Reason``."""

    @property
    def reason(self) -> str:
        """The one-line reason sent to CloudFormation."""
        return str(self)


class InvalidProperties(MembershipError):
    """The declared properties break the contract; nothing was written."""


class MembershipNotFound(MembershipError):
    """The membership does not exist where the function runs (account/region)."""


class PermissionDenied(MembershipError):
    """The function's role lacks a permission; the message names the action."""


class MembershipNotUpdatable(MembershipError):
    """The membership's status forbids the change (Terminated, or Cancelled)."""


class ServiceFailure(MembershipError):
    """The service rejected a call, or retries ran out of time.

    ``applied`` counts the UpdateMembership calls of the plan that had already
    succeeded, so the stack event says how far the change got.
    """

    def __init__(self, message: str, *, applied: int = 0, planned: int = 0) -> None:
        super().__init__(message)
        self.applied = applied
        self.planned = planned


class StillInProgress(MembershipError):
    """A duplicate delivery waited for the first one's answer until out of time."""


class ConfigurationError(MembershipError):
    """The function itself is misconfigured (environment, table)."""
