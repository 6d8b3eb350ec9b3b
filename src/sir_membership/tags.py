"""The planner for ``Tags``: declared tags + the tags on the membership -> the calls.

A pure function of data, next to ``plan`` and shared the same way by the
function and the preview. The rules follow the OUs': a resource that does
not declare ``Tags`` (now or before) manages none and makes no tag call;
keys it declares are set to their declared values; the only keys it ever
removes are those its previous declaration had and the new one drops
(``old declared - new declared``), so tags set outside the stack stay.
Replaying an Update with old and new swapped (CloudFormation's rollback)
restores the old declaration.

Every key a plan changes carries its value before the change
(``TagPlan.before``, ``None`` for "absent"), so a journal can record what to
restore.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidProperties
from .membership import MembershipState
from .properties import parse_properties
from .request import Request

#: A declared set of tags; ``None`` means "Tags not declared" (not managed).
Tags = Mapping[str, str]


@dataclass(frozen=True)
class TagCall:
    """One TagResource or UntagResource call on the membership's ARN."""

    operation: Literal["TagResource", "UntagResource"]
    resource_arn: str
    tags: tuple[tuple[str, str], ...] = ()
    keys: tuple[str, ...] = ()

    def to_api(self) -> dict[str, Any]:
        """The keyword arguments for boto3's ``tag_resource`` / ``untag_resource``."""
        if self.operation == "TagResource":
            return {"resourceArn": self.resource_arn, "tags": dict(self.tags)}
        return {"resourceArn": self.resource_arn, "tagKeys": list(self.keys)}

    def summary(self) -> dict[str, Any]:
        """Keys only: what the function logs about a call."""
        keys = [k for k, _ in self.tags] if self.operation == "TagResource" else list(self.keys)
        return {"operation": self.operation, "tagKeys": keys}


@dataclass(frozen=True)
class TagChange:
    """One key that differs: its value now (``None``: absent) and the one planned."""

    key: str
    before: str | None
    after: str | None

    @property
    def detail(self) -> str:
        """``added``, ``removed`` or ``old -> new``."""
        if self.before is None:
            return f"added: {self.after}"
        if self.after is None:
            return f"removed (was {self.before})"
        return f"{self.before} -> {self.after}"


@dataclass(frozen=True)
class TagPlan:
    """The tag calls to make, in order, and what each changed key held before."""

    calls: tuple[TagCall, ...] = ()
    changes: tuple[TagChange, ...] = ()
    #: Keys associated outside the stack (on the membership, never declared here).
    outside: tuple[str, ...] = field(default=())

    @property
    def before(self) -> dict[str, str | None]:
        """Each changed key's value before the plan (``None``: the key was absent)."""
        return {c.key: c.before for c in self.changes}

    @property
    def empty(self) -> bool:
        """True when no call is needed."""
        return not self.calls


def managed(declared: Tags | None, previous: Tags | None) -> bool:
    """Whether the request touches tags at all (and so must read them)."""
    return declared is not None or bool(previous)


def declarations(request: Request) -> tuple[Tags | None, Tags | None]:
    """The tags a request declares, and those its previous declaration had.

    The previous declaration counts only for an Update of the same
    membership whose old properties were valid (an invalid one was never
    applied). A Delete manages no tags: the membership stays, and so do its
    tags. Raises ``InvalidProperties`` for invalid new properties, as
    ``request.decide`` does first.
    """
    if request.request_type == "Delete":
        return None, None
    new = parse_properties(request.properties)
    if request.request_type != "Update" or new.membership_id != request.physical_id:
        return new.tag_map, None
    try:
        old = parse_properties(request.old_properties)
    except InvalidProperties:
        return new.tag_map, None
    return new.tag_map, old.tag_map if old.membership_id == new.membership_id else None


def plan_tags(
    declared: Tags | None, previous: Tags | None, actual: Tags, resource_arn: str
) -> TagPlan:
    """The fewest calls that make ``actual`` carry the declaration.

    ``previous`` is the old declaration of the same membership (an Update),
    else ``None``. Removals come first: they free room under the service's
    limit on tags per resource before new keys are added.
    """
    wanted = dict(declared or {})
    old = dict(previous or {})
    to_set = {k: v for k, v in sorted(wanted.items()) if actual.get(k) != v}
    to_remove = sorted(k for k in old.keys() - wanted.keys() if k in actual)
    calls: list[TagCall] = []
    if to_remove:
        calls.append(TagCall("UntagResource", resource_arn, keys=tuple(to_remove)))
    if to_set:
        calls.append(TagCall("TagResource", resource_arn, tags=tuple(to_set.items())))
    changes = [TagChange(k, actual.get(k), v) for k, v in to_set.items()]
    changes += [TagChange(k, actual[k], None) for k in to_remove]
    changes.sort(key=lambda c: c.key)
    outside = tuple(sorted(actual.keys() - wanted.keys() - old.keys()))
    return TagPlan(tuple(calls), tuple(changes), outside)


def apply_tag_call(actual: Tags, call: TagCall) -> dict[str, str]:
    """What the tags become once ``call`` succeeds (the service's semantics)."""
    out = dict(actual)
    if call.operation == "TagResource":
        out.update(call.tags)
    else:
        for key in call.keys:
            out.pop(key, None)
    return out


def membership_arn(partition: str, region: str, account_id: str, membership_id: str) -> str:
    """A membership's ARN, for when GetMembership's is not at hand (offline previews)."""
    return f"arn:{partition}:security-ir:{region}:{account_id}:membership/{membership_id}"


def state_arn(state: MembershipState) -> str:
    """The membership's ARN as GetMembership gave it, or built from its parts."""
    return state.arn or membership_arn("aws", state.region, state.account_id, state.membership_id)
