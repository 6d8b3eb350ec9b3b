"""What is known of an UpdateMembership call whose answer was lost (pure).

Why apart from ``service``: the retry loop there decides *when* to call;
this decides what a lost answer, and the service's reply to its repeat,
prove. An outcome that nothing proved is "unknown", never "not applied".
"""

from __future__ import annotations

import copy

from .errors import NO_CHANGE, MembershipError, Rejected, with_outcome
from .plan import UpdateRequest


def proves_applied(error: MembershipError, sent: UpdateRequest, lost: UpdateRequest) -> bool:
    """Whether ``error``, the answer to ``sent``, proves the lost call ``lost`` was applied.

    The service rejects adding an OU that is already associated (and
    removing one that is not) as a ValidationException naming each such
    OU's field. When ``sent`` repeats ``lost``'s OU changes and only those
    fields are rejected, each of them, the OUs are as ``lost`` left them: it
    was applied. A call applies whole, so one repeated OU the service does
    not name shows it was not: another request moved the named ones.
    """
    if not isinstance(error, Rejected) or not error.fields:
        return False
    fields = error.fields
    repeated = [
        f"organizationalUnitsToAdd[{i}]"
        for i, ou in enumerate(sent.ous_to_add)
        if ou in lost.ous_to_add
    ] + [
        f"organizationalUnitsToRemove[{i}]"
        for i, ou in enumerate(sent.ous_to_remove)
        if ou in lost.ous_to_remove
    ]
    ou_fields = ("organizationalUnitsToAdd", "organizationalUnitsToRemove")
    only_ous = all(any(name.split("[")[0].endswith(f) for f in ou_fields) for name in fields)
    each = all(
        any(name.endswith(f".{field}") or name == field for name in fields) for field in repeated
    )
    return bool(repeated) and only_ous and each


def with_unknown(error: MembershipError) -> MembershipError:
    """``error`` after a call whose outcome could not be read back."""
    unknown = copy.copy(error)
    unknown.unknown = error.unknown + 1
    reason = error.reason.removesuffix(with_outcome("", NO_CHANGE))
    clause = "the outcome of 1 UpdateMembership call is unknown (it may have been applied)"
    # After a count, one more clause of the outcome; else the outcome itself.
    unknown.args = (f"{reason}; {clause}" if error.applied else with_outcome(reason, clause),)
    return unknown
