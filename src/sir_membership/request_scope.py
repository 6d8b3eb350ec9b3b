"""What a request may touch: the memberships it writes, its own journal entry.

Read by the Work step (``resource``) before it takes any lease. Kept apart
because these are answers about the request itself, from the event and the
journal, with no call to Security IR.
"""

from __future__ import annotations

from collections.abc import Mapping

from .journal import Entry
from .journal_store import Store
from .journal_writer import delete_key
from .request import Decision, Request
from .service_model import rules
from .shell import Shell, stack_rolls_back


def write_targets(request: Request, decision: Decision) -> list[str]:
    """The memberships this request may write to, in the order their leases are taken.

    Taken from the event alone, so the journal is read once, under the
    leases: the declared membership, and for an Update the old
    declaration's (the rollback of a replacement that has not journaled yet,
    after a cancelled update, must wait for the membership the forward
    change is writing to). The Delete of a failed Create's ``unrestored``
    id restores the membership its properties declare.
    """
    targets = {decision.membership_id}
    declarations = [request.properties]
    if request.request_type == "Update":
        declarations.append(request.old_properties or {})
    for declared in declarations:
        if isinstance(declared, Mapping):
            named = declared.get("MembershipId")
            if isinstance(named, str) and rules().membership_id.accepts(named):
                targets.add(named)
    return sorted(t for t in targets if t)


def own_entry(
    request: Request, decision: Decision, store: Store, latest: Entry | None
) -> Entry | None:
    """The entry an earlier Work step of this request wrote, if any.

    A Delete journals under a key of its own (``delete_key``), so the
    resource's latest entry is not always the request's.
    """
    if request.request_type == "Delete" and decision.membership_id:
        own_delete = store.read(
            request.stack_id, delete_key(request.logical_id, decision.membership_id)
        )
        if own_delete is not None and own_delete.request_id == request.request_id:
            return own_delete
    return latest if latest is not None and latest.request_id == request.request_id else None


def rolls_back_adoption(request: Request, entry: Entry | None, shell: Shell) -> bool:
    """Whether this Delete undoes the operation that brought ``entry``'s membership
    under the resource (its Create, or an Update that replaced the resource with it)
    because that operation failed.

    CloudFormation deletes a resource whose creation is being rolled back
    (the stack is ``ROLLBACK_IN_PROGRESS``, or ``UPDATE_ROLLBACK_COMPLETE_
    CLEANUP_IN_PROGRESS`` for one created by a failed update) even with
    ``DeletionPolicy: RetainExceptOnCreate``; the new id of a replacement
    whose stack update failed gets that Delete too, and no rollback Update.
    That Delete restores what the change did, whatever ``OnDelete`` says.
    Any other Delete (the user removed the resource or the stack) follows
    ``OnDelete``. Only the consumer stack's status tells them apart, so it
    is read, and a Delete that cannot read it fails rather than guess.
    """
    if (
        entry is None
        or not (entry.request_type == "Create" or entry.replacement)
        or entry.membership_id != request.physical_id
        or entry.wrote_nothing
    ):
        return False
    return stack_rolls_back(shell.stack_status(request.stack_id))
