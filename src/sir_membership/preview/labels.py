"""Words and one-line call summaries that every renderer shares.

Text, JSON and markdown must say the same thing about a resource; keeping
the labels in one place keeps them from drifting apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..plan import UpdateRequest
from ..steps import service_timeout
from ..tags import TagCall, TagPlan
from .base import EXIT_CHANGES, EXIT_ERROR, EXIT_OK
from .pacing import pace_note
from .steps import ResourcePreview, Step

PLAN_VERDICTS = {
    EXIT_OK: "no change to any membership (exit 0)",
    EXIT_CHANGES: "changes planned (exit 2)",
    EXIT_ERROR: "the function would fail (exit 1)",
}
DRIFT_LABELS = {
    "in-sync": "in sync",
    "drifted": "drifted",
    "unresolved": "cannot tell (see below)",
    "fail": "FAILS (see below)",
}
DRIFT_VERDICTS = {
    "in-sync": "no drift (exit 0)",
    "drifted": "drift found (exit 2)",
    "fail": "drift could not be checked for every resource (exit 1)",
}
#: The least ServiceTimeout that outlasts a Lambda retry of the function: it may
#: start 240 s (MaximumEventAgeInSeconds) after the request and run 300 s.
SERVICE_TIMEOUT_FLOOR = 600
MASKED_NOTE = (
    "Names, emails, job titles and the membership name are masked (--show-sensitive shows them)."
)


def api(request: UpdateRequest, show: bool) -> dict[str, Any]:
    """The call's parameters, masked unless ``show``."""
    return request.to_api() if show else request.masked()


def value(item: Any) -> str:
    """A value on one line: strings bare, lists of strings bracketed, the rest as JSON."""
    if isinstance(item, str):
        return item
    if isinstance(item, list) and all(isinstance(v, str) for v in item):
        return "[" + ", ".join(item) + "]"
    return json.dumps(item, separators=(",", ":"))


def call_line(parameters: Mapping[str, Any], show: bool) -> str:
    """One call on one line; a masked team is only counted (JSON has it in full)."""
    parts = []
    for key, item in parameters.items():
        if key == "incidentResponseTeam" and not show:
            parts.append(f"{key}=[{len(item)} responders, masked]")
        elif key == "membershipAccountsConfigurationsUpdate" and isinstance(item, Mapping):
            parts += [f"{k}={value(v)}" for k, v in item.items()]
        else:
            parts.append(f"{key}={value(item)}")
    return " ".join(parts)


def action_label(resource: ResourcePreview) -> str:
    """CloudFormation's action, with the replacement the function will answer with."""
    if any(s.replacement for s in resource.steps):
        return f"{resource.target.action} (replacement)"
    return resource.target.action


def result_label(resource: ResourcePreview) -> str:
    """What happens to the resource, in a few words."""
    status = resource.status
    calls = sum(len(s.requests) for s in resource.steps)
    tagging = sum(len(s.tag_calls) for s in resource.steps)
    change = f"{calls} UpdateMembership call{'s' if calls != 1 else ''}"
    if tagging:
        change += f", {tagging} tag call{'s' if tagging != 1 else ''}"
    return {
        "fail": "FAILS (reason below)",
        "change": change,
        "no-change": "no call: already as declared",
        "skip": "no call",
        "unresolved": "unknown until the change set executes",
    }[status]


def memberships(resource: ResourcePreview) -> str:
    """The membership ids the resource's steps touch (old / new for a replacement)."""
    ids = [s.membership_id or s.request.physical_id for s in resource.steps]
    return " / ".join(dict.fromkeys(i for i in ids if i)) or "-"


def timing_note(step: Step) -> str | None:
    """The step's calls against the resource's ServiceTimeout (README, "ServiceTimeout").

    ServiceTimeout is both how long CloudFormation waits and the function's
    deadline for the whole change: the service may refuse each call for
    minutes while accounts propagate, and the state machine waits between
    Work steps until it. Below ``SERVICE_TIMEOUT_FLOOR`` a Lambda retry of
    the dispatcher, or a Work step, may still run after CloudFormation
    stopped waiting.
    """
    calls = len(step.requests)
    if calls == 0:
        return None
    properties = step.request.properties
    timeout = service_timeout(properties)
    source = "declared" if "ServiceTimeout" in properties else "the default: none declared"
    note = (
        f"{calls} UpdateMembership call{'s' if calls != 1 else ''} within the resource's "
        f"ServiceTimeout of {timeout} s ({source})"
    )
    if calls > 1:
        note += (
            ": the service may take minutes per call while accounts propagate; the state "
            "machine waits between Work steps until then (no function runs while it waits)"
        )
    estimate = pace_note(step)
    if estimate is not None:
        note += f"; {estimate}"
    if timeout < SERVICE_TIMEOUT_FLOOR:
        note += (
            f"; below {SERVICE_TIMEOUT_FLOOR} s a Lambda retry of the function may still run "
            "after CloudFormation stopped waiting: declare 3600"
        )
    return note


def tag_call_line(call: TagCall) -> str:
    """One tag call on one line (tags are not sensitive: keys and values are shown)."""
    return f"{call.operation} " + call_line(call.to_api(), True)


def tag_rows(plan: TagPlan | None) -> list[tuple[str, str]]:
    """(key, change) for each tag the plan changes."""
    return [(c.key, c.detail) for c in plan.changes] if plan is not None else []
