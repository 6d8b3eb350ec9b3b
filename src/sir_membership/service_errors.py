"""What a failed Security IR call means: refused, unknown, or a named error.

Kept apart from the retry loop (``service``) because it is a pure reading of
botocore's error: the code, the HTTP status, the ``Retry-After`` the service
sent. ``Retry`` is what the loop may try again; everything else is a
``MembershipError`` whose message is the one line CloudFormation shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from . import denial
from .errors import (
    MembershipNotFound,
    PermissionDenied,
    Rejected,
    ServiceFailure,
    calls_applied,
    with_outcome,
)

REFUSED = frozenset({"ThrottlingException", "ConflictException", "TooManyRequestsException"})
REFUSED_NETWORK = (EndpointConnectionError, ConnectTimeoutError)
AMBIGUOUS_NETWORK = (ConnectionClosedError, ReadTimeoutError)


class Retry(Exception):
    """The call was refused (try again later) or its outcome is unknown (read first)."""

    def __init__(
        self,
        cause: str,
        *,
        ambiguous: bool,
        retry_after: float | None = None,
        refused: bool = False,
    ) -> None:
        super().__init__(cause)
        self.cause = cause
        self.ambiguous = ambiguous
        self.retry_after = retry_after
        #: The service itself said "not now" (Throttling, Conflict): retried
        #: until the time runs out, not for a fixed number of attempts.
        self.refused = refused


def failure(cause: str, applied: int, planned: int) -> ServiceFailure:
    """A failure that is not the service's refusal, with the calls applied so far."""
    return ServiceFailure(
        with_outcome(cause, calls_applied(applied, planned)), applied=applied, planned=planned
    )


def client_error(
    operation: str,
    membership_id: str,
    error: ClientError,
    *,
    applied: int,
    planned: int,
    where: str,
    account_id: str,
) -> Exception:
    """The named error (or ``Retry``) that a refused, failed or rejected call is.

        ``where`` names the account and region the function runs in, so a wrong
    region or account says so in the one line CloudFormation shows.
    """
    response: dict[str, Any] = dict(error.response)
    code = str(response.get("Error", {}).get("Code", "Unknown"))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    if code in REFUSED or status == 429:
        return Retry(code, ambiguous=False, retry_after=retry_after(response), refused=True)
    if status >= 500 or code == "InternalServerException":
        return Retry(code, ambiguous=True, retry_after=retry_after(response))
    outcome = calls_applied(applied, planned)
    if code == "ResourceNotFoundException":
        return MembershipNotFound(
            with_outcome(
                f"Membership {membership_id} was not found in {where}: deploy this stack "
                "in the membership's account and region, and check MembershipId",
                outcome,
            ),
            applied=applied,
            planned=planned,
        )
    if code == "AccessDeniedException":
        action = f"security-ir:{operation}"
        allow = (
            f"allow {action} on arn:<partition>:security-ir:<region>:<account>:membership/* "
            "in the function's role"
        )
        message = str(response.get("Error", {}).get("Message") or response.get("message") or "")
        deny = denial.read(message)
        fix = deny.check(action, account_id, f"membership {membership_id}", allow)
        return PermissionDenied(
            with_outcome(
                f"Access denied for {action} on membership {membership_id}"
                f"{deny.said(action)}: {fix}",
                outcome,
            ),
            applied=applied,
            planned=planned,
        )
    if code == "SecurityIncidentResponseNotActiveException":
        return failure(f"Security Incident Response is not active in {where}", applied, planned)
    fields = [str(f.get("name")) for f in response.get("fieldList") or () if f.get("name")]
    detail = f" on {', '.join(fields)}" if fields else ""
    return Rejected(
        with_outcome(f"{operation} was rejected: {code}{detail}", calls_applied(applied, planned)),
        applied=applied,
        planned=planned,
        fields=tuple(fields) if code == "ValidationException" else (),
    )


def retry_after(response: Mapping[str, Any]) -> float | None:
    """Seconds the service asked to wait before the next attempt, if it said.

    The model's ``retryAfterSeconds`` (bound to the ``Retry-After`` header on
    ThrottlingException and InternalServerException) comes first; other
    refusals (ConflictException has no such member) may still send a bare
    ``Retry-After`` header, which botocore keeps, lower-cased, in
    ``ResponseMetadata.HTTPHeaders``. Only a number of seconds is understood:
    an HTTP-date or garbage is ignored and the backoff alone decides.
    """
    after = response.get("retryAfterSeconds")
    if after is None:
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders") or {}
        after = headers.get("retry-after")
    if after is None:
        return None
    try:
        seconds = float(after)
    except (TypeError, ValueError):
        return None
    return seconds if 0.0 <= seconds < math.inf else None
