"""TagResource / UntagResource / ListTagsForResource for the emulator.

Tags live beside the memberships (GetMembership does not return them),
keyed by membership id and addressed by the membership's ARN, as the
service does. The request itself is validated against botocore's model by
the emulator before it gets here (ARN pattern, key and value lengths, at
most 200 per call); this adds the rules the model does not state: a
resource must exist, and ``aws:`` keys are AWS's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

TAG_OPERATIONS = ("TagResource", "UntagResource", "ListTagsForResource")
RESERVED_PREFIX = "aws:"


def tagged_membership(memberships: Mapping[str, Mapping[str, Any]], arn: str) -> str | None:
    """The id of the membership whose ARN is ``arn``."""
    for membership_id, membership in memberships.items():
        if membership.get("membershipArn") == arn:
            return membership_id
    return None


def run_tag_operation(
    operation: str,
    params: Mapping[str, Any],
    memberships: Mapping[str, Mapping[str, Any]],
    tags: dict[str, dict[str, str]],
    *,
    not_found: Callable[[str], Exception],
    invalid: Callable[[list[tuple[str, str]]], Exception],
) -> dict[str, Any]:
    """Apply one tag operation to ``tags`` (in place); the response body.

    ``not_found`` and ``invalid`` make the emulator's ResourceNotFoundException
    and ValidationException (from a message, and from (field, message) pairs).
    """
    arn = str(params["resourceArn"])
    membership_id = tagged_membership(memberships, arn)
    if membership_id is None:
        raise not_found(f"Resource {arn} not found")
    current = tags.setdefault(membership_id, {})
    if operation == "ListTagsForResource":
        return {"tags": dict(current)}
    if operation == "UntagResource":
        for key in params["tagKeys"]:
            current.pop(key, None)
        return {}
    reserved = [
        (f"tags.{key}", "Tag keys starting with aws: are reserved")
        for key in params["tags"]
        if str(key).lower().startswith(RESERVED_PREFIX)
    ]
    if reserved:
        raise invalid(reserved)
    current.update(params["tags"])
    return {}
