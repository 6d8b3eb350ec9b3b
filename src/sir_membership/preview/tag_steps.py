"""Tags in the preview: the function's own tag planner on each step.

The function reads the membership's tags (ListTagsForResource) only when a
request manages them (``tags.managed``), and plans with ``tags.plan_tags``;
the preview does the same, with the tags read live, or, offline, assumed to
be what the old declaration says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce

from .. import tags
from ..membership import MembershipState
from ..request import Request
from .base import arn_part
from .selection import Selection

TAGS_ASSUMED = "assumed: the tags are as the old declaration says"


@dataclass(frozen=True)
class ObservedTags:
    """A membership's tags and where they came from."""

    tags: Mapping[str, str]
    source: str


#: Reads a membership's tags by (membership id, ARN); raises ``MembershipError``
#: as ``MembershipService.list_tags`` does.
TagLookup = Callable[[str, str], ObservedTags]


def offline_tag_lookup(selection: Selection) -> TagLookup:
    """Tags as the old declarations say (nothing else is known without AWS)."""
    declared: dict[str, Mapping[str, str]] = {}
    for target in selection.targets:
        before = target.before or {}
        membership_id = before.get("MembershipId")
        raw = before.get("Tags")
        if isinstance(membership_id, str) and isinstance(raw, list):
            declared.setdefault(
                membership_id,
                {
                    str(t["Key"]): str(t["Value"])
                    for t in raw
                    if isinstance(t, Mapping) and "Key" in t and "Value" in t
                },
            )

    def lookup(membership_id: str, arn: str) -> ObservedTags:
        return ObservedTags(dict(declared.get(membership_id, {})), TAGS_ASSUMED)

    return lookup


def resource_arn(request: Request, state: MembershipState) -> str:
    """GetMembership's ARN, else one built from the stack's partition, region and account."""
    if state.arn:
        return state.arn
    stack = request.stack_id
    return tags.membership_arn(
        arn_part(stack, 1) or "aws",
        state.region or arn_part(stack, 3),
        state.account_id or arn_part(stack, 4),
        state.membership_id,
    )


def plan_step_tags(
    request: Request,
    state: MembershipState,
    lookup: TagLookup,
    seen: dict[str, ObservedTags],
) -> tuple[tags.TagPlan | None, str]:
    """The step's tag plan and the tags' source; ``None`` when the request manages no tags.

    Tags carry over from step to step, as the service would hold them.
    """
    declared, previous = tags.declarations(request)
    if not tags.managed(declared, previous):
        return None, ""
    arn = resource_arn(request, state)
    mid = state.membership_id
    observed = seen[mid] if mid in seen else lookup(mid, arn)
    plan = tags.plan_tags(declared, previous, observed.tags, arn)
    seen[mid] = ObservedTags(
        reduce(tags.apply_tag_call, plan.calls, dict(observed.tags)),
        f"{observed.source}, after the calls planned above",
    )
    return plan, observed.source
