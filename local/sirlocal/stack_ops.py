"""Stack operations through CloudFormation's API: change sets, waits and stack events.

Why: the demo and the end-to-end tests drive a real CloudFormation engine
(ministack) the way a deployment pipeline does: create a change set, read
it, execute it, wait, and read what happened from ``DescribeStackEvents``.
Only the API is used, so the same code would drive AWS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Change set statuses in which its changes are not computed yet.
PENDING = ("CREATE_PENDING", "CREATE_IN_PROGRESS")
POLL_SECONDS = 0.05


class StackOpError(RuntimeError):
    """A stack operation could not be started or did not finish in time."""


@dataclass(frozen=True)
class StackEvent:
    """One line of ``DescribeStackEvents``."""

    event_id: str
    logical_id: str
    resource_type: str
    status: str
    reason: str
    timestamp: Any

    @classmethod
    def from_api(cls, event: Mapping[str, Any]) -> StackEvent:
        """From one ``StackEvents`` item."""
        return cls(
            str(event["EventId"]),
            str(event.get("LogicalResourceId", "")),
            str(event.get("ResourceType", "")),
            str(event.get("ResourceStatus", "")),
            str(event.get("ResourceStatusReason") or ""),
            event.get("Timestamp"),
        )


@dataclass(frozen=True)
class Outcome:
    """How one stack operation ended: its last status and the events it added."""

    stack_status: str
    events: tuple[StackEvent, ...]
    seconds: float

    def reasons(self, status_suffix: str = "_FAILED") -> list[str]:
        """The reasons of the resource events whose status ends with ``status_suffix``."""
        return [e.reason for e in self.events if e.status.endswith(status_suffix) and e.reason]


def parameters(values: Mapping[str, str]) -> list[dict[str, str]]:
    """CloudFormation's ``Parameters`` from a mapping."""
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def stack_id(cfn: Any, stack_name: str) -> str | None:
    """The id of the live stack named ``stack_name``, or None when there is none."""
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except cfn.exceptions.ClientError as error:
        if "does not exist" in str(error):
            return None
        raise
    live = [s for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"]
    return str(live[0]["StackId"]) if live else None


def event_ids(cfn: Any, stack: str) -> set[str]:
    """Every event id the stack has now (to tell an operation's new events apart)."""
    return {e.event_id for e in all_events(cfn, stack)}


def all_events(cfn: Any, stack: str) -> list[StackEvent]:
    """Every event of ``stack`` (name or id), oldest first."""
    events: list[StackEvent] = []
    for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack):
        events += [StackEvent.from_api(e) for e in page["StackEvents"]]
    return list(reversed(events))


def create_change_set(
    cfn: Any,
    *,
    stack_name: str,
    change_set_name: str,
    template_body: str,
    values: Mapping[str, str],
    capabilities: Sequence[str] = (),
) -> dict[str, Any]:
    """Create a change set (CREATE for a new stack, else UPDATE) and wait until it is computed."""
    existing = stack_id(cfn, stack_name)
    cfn.create_change_set(
        StackName=stack_name,
        ChangeSetName=change_set_name,
        ChangeSetType="UPDATE" if existing else "CREATE",
        TemplateBody=template_body,
        Parameters=parameters(values),
        Capabilities=list(capabilities),
    )
    deadline = time.monotonic() + 60
    while True:
        described: dict[str, Any] = cfn.describe_change_set(
            StackName=stack_name, ChangeSetName=change_set_name
        )
        if described["Status"] not in PENDING:
            break
        if time.monotonic() > deadline:
            raise StackOpError(f"change set {change_set_name} not computed within 60 s")
        time.sleep(POLL_SECONDS)
    if described["Status"] != "CREATE_COMPLETE":
        raise StackOpError(
            f"change set {change_set_name}: {described['Status']}: "
            f"{described.get('StatusReason', '')}"
        )
    return described


def wait(cfn: Any, stack: str, seen: set[str], began: float, timeout: float = 120) -> Outcome:
    """Poll until ``stack`` (its id) leaves every ``*_IN_PROGRESS`` status."""
    deadline = time.monotonic() + timeout
    while True:
        status = str(cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"])
        if not status.endswith("_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            raise StackOpError(f"stack {stack} still {status} after {timeout} s")
        time.sleep(POLL_SECONDS)
    events = tuple(e for e in all_events(cfn, stack) if e.event_id not in seen)
    return Outcome(status, events, time.monotonic() - began)


def execute_change_set(cfn: Any, described: Mapping[str, Any]) -> Outcome:
    """Execute a computed change set and wait for the stack to settle."""
    stack = str(described["StackId"])
    seen = event_ids(cfn, stack)
    began = time.monotonic()
    cfn.execute_change_set(ChangeSetName=described["ChangeSetId"])
    return wait(cfn, stack, seen, began)


def delete_stack(cfn: Any, stack_name: str) -> Outcome:
    """Delete the stack and wait (by id: a deleted stack is found only by its id)."""
    return _on_existing(cfn, stack_name, lambda stack: cfn.delete_stack(StackName=stack))


def continue_update_rollback(cfn: Any, stack_name: str) -> Outcome:
    """``continue-update-rollback`` of a stack in ``UPDATE_ROLLBACK_FAILED``, and wait."""
    return _on_existing(
        cfn, stack_name, lambda stack: cfn.continue_update_rollback(StackName=stack)
    )


def _on_existing(cfn: Any, stack_name: str, start: Callable[[str], object]) -> Outcome:
    """Start an operation on the live stack ``stack_name`` (given its id) and wait."""
    stack = stack_id(cfn, stack_name)
    if stack is None:
        raise StackOpError(f"stack {stack_name} does not exist")
    seen = event_ids(cfn, stack)
    began = time.monotonic()
    start(stack)
    return wait(cfn, stack, seen, began)


def format_events(events: Sequence[StackEvent], width: int = 60) -> str:
    """Stack events as an aligned table (reasons cut to ``width``)."""
    rows = [("RESOURCE", "TYPE", "STATUS", "REASON")]
    for e in events:
        reason = e.reason if len(e.reason) <= width else e.reason[: width - 3] + "..."
        rows.append((e.logical_id, e.resource_type, e.status, reason))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)).rstrip()
        for row in rows
    )
