"""Reading a change set: DescribeChangeSet output as a value, and whether it is ready.

A preview that silently misses a page of changes, or reads a change set
whose changes are not computed yet, is worse than none: both are refused
with what to do about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .base import PreviewError, arn_part

#: Change set statuses in which its changes are not known yet.
NOT_READY = ("CREATE_PENDING", "CREATE_IN_PROGRESS")


@dataclass(frozen=True)
class ChangeSet:
    """A DescribeChangeSet result with every page's changes joined."""

    name: str
    stack_name: str
    stack_id: str
    status: str
    execution_status: str = ""
    status_reason: str = ""
    changes: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)

    @property
    def region(self) -> str:
        """The stack's region: where the function runs and reads the membership."""
        return arn_part(self.stack_id, 3)

    @property
    def account_id(self) -> str:
        """The stack's account, for the same not-found reason the function gives."""
        return arn_part(self.stack_id, 4)


def load_change_set(document: Any) -> ChangeSet:
    """Accept one page or a list of pages, as saved from DescribeChangeSet.

    A list whose last page still has a NextToken is refused: changes would be
    missing, and a preview that silently misses a resource is worse than none.
    """
    pages = [document] if isinstance(document, Mapping) else document
    if not isinstance(pages, list) or not pages or not all(isinstance(p, Mapping) for p in pages):
        raise PreviewError(
            "not a DescribeChangeSet document: expected an object or a list of pages"
        )
    first = pages[0]
    if not any(key in first for key in ("Changes", "ChangeSetName", "ChangeSetId")):
        raise PreviewError(
            "not a DescribeChangeSet document (no ChangeSetName or Changes): save the output of "
            "aws cloudformation describe-change-set --include-property-values"
        )
    if pages[-1].get("NextToken"):
        raise PreviewError(
            f"the last of {len(pages)} page(s) has a NextToken: save every page (or omit "
            "--no-paginate) so no change is missed"
        )
    changes = [
        change["ResourceChange"]
        for page in pages
        for change in page.get("Changes") or ()
        if isinstance(change, Mapping) and isinstance(change.get("ResourceChange"), Mapping)
    ]
    return ChangeSet(
        name=str(first.get("ChangeSetName") or first.get("ChangeSetId") or "?"),
        stack_name=str(first.get("StackName", "")),
        stack_id=str(first.get("StackId", "")),
        status=str(first.get("Status", "")),
        execution_status=str(first.get("ExecutionStatus", "")),
        status_reason=str(first.get("StatusReason", "")),
        changes=tuple(changes),
    )


def check_ready(change_set: ChangeSet) -> None:
    """Refuse change sets whose changes are unknown, with what to do about it."""
    name = change_set.name
    if change_set.status in NOT_READY:
        raise PreviewError(
            f"change set {name} is not created yet (Status {change_set.status}): wait for "
            "CREATE_COMPLETE (aws cloudformation wait change-set-create-complete) and run again"
        )
    if change_set.status == "FAILED":
        raise PreviewError(
            f"change set {name} FAILED: {change_set.status_reason or 'no StatusReason given'}"
        )
    if change_set.status.startswith("DELETE"):
        raise PreviewError(f"change set {name} is being deleted (Status {change_set.status})")


def change_set_notes(change_set: ChangeSet) -> tuple[str, ...]:
    """Warnings that do not stop the preview but change how to read it."""
    status = change_set.execution_status
    if status in ("EXECUTE_IN_PROGRESS", "EXECUTE_COMPLETE", "EXECUTE_FAILED", "OBSOLETE"):
        return (
            f"change set ExecutionStatus is {status}: it cannot run (again); the preview "
            "shows what it would do against the membership as it is now",
        )
    return ()
