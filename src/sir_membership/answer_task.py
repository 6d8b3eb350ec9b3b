"""The one answer of a request: claimed in its record, then PUT to its ResponseURL.

Why one place for every answer the execution gives: the Answer task after a
Work step that concluded, the same task after a Work step that failed or
timed out (``failure``), and the safety net that hears an execution end
FAILED, TIMED_OUT or ABORTED all go through ``RequestStore.claim``, so
whichever comes first decides, and any later one can only send the same
answer again. CloudFormation ignores a repeated answer; it must never get
two different ones.

Every answer first closes the request's fence: a Work Lambda that is still
running (neither a task timeout nor a stop kills it, and a step whose Invoke
failed while it ran is retried beside it) finds it closed before its next
write, to the service or to the journal, and writes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import NO_CHANGE, calls_known, with_outcome
from .journal import Entry, declaration_digest
from .journal_writer import delete_key
from .request import failed_physical_id
from .request_record import RequestKeys, RequestRecord
from .request_store import RequestStore
from .response import Answer

logger = logging.getLogger(__name__)

#: The EventBridge events the safety net hears.
STATUS_CHANGE = "Step Functions Execution Status Change"
ENDED_BADLY = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})


@dataclass(frozen=True)
class Sent:
    """What was answered, and how (for the metrics)."""

    answer: Answer
    by_safety_net: bool = False

    @property
    def unrestored(self) -> bool:
        """Whether the answer tells the rollback to restore what a failed Create left."""
        return "-unrestored-" in self.answer.physical_resource_id


def _error_name(failure: Mapping[str, Any] | None) -> str:
    """The failed step's kind of error, from the Catch's ``Error`` (and ``Cause``).

    A ``TaskFailed`` (``tasks._sanitized``) carries only the original
    exception's type name as its message; anything else that does not look
    like a name is not shown.
    """
    failure = failure or {}
    name = str(failure.get("Error") or "")
    if name == "TaskFailed":
        try:
            name = str(json.loads(str(failure.get("Cause")))["errorMessage"])
        except (ValueError, KeyError, TypeError):
            name = "TaskFailed"
    return name if name and name.replace(".", "").replace("_", "").isalnum() else "unknown error"


def _restores(record: RequestRecord, entry: Entry | None) -> bool:
    """Whether the request is a rollback restoring ``entry`` (another request's change).

    Its calls are counted nowhere (they restore under that entry), so
    whether it wrote is unknown: never "no change was applied".
    """
    if entry is None or entry.request_id == record.keys.request_id:
        return False
    event = record.event
    if event.get("RequestType") == "Update":
        old = declaration_digest(event.get("OldResourceProperties"))
        return (old, declaration_digest(event.get("ResourceProperties"))) == (entry.new, entry.old)
    return event.get("RequestType") == "Delete" and entry.request_type == "Create"


def journal_entry(
    record: RequestRecord, journal: Callable[[str, str], Entry | None]
) -> Entry | None:
    """The entry the request's answer is given from: a Delete's own, else the resource's."""
    keys, physical = record.keys, str(record.event.get("PhysicalResourceId") or "")
    if record.event.get("RequestType") == "Delete" and physical:
        own = journal(keys.stack_id, delete_key(keys.logical_id, physical))
        if own is not None and own.request_id == keys.request_id:
            return own
    return journal(keys.stack_id, keys.logical_id)


def failure_answer(record: RequestRecord, what: str, entry: Entry | None) -> Answer:
    """FAILED, with what the request's journal entry says was applied.

    The entry counts only if it is this request's; a change that may have
    written is answered so that the stack's rollback restores it, and a
    rollback that may have restored some of it says it may have.
    """
    if _restores(record, entry):
        reason = with_outcome(what, "some of its restoring calls may have been applied")
        return Answer.failed(
            failed_physical_id(record.event),
            f"{reason}; the change journal keeps what to restore: retry the rollback "
            "(continue the update rollback, or delete again)",
        )
    own = entry if entry is not None and entry.request_id == record.keys.request_id else None
    # "applied": the step died after its last call, before its answer was recorded.
    wrote = (
        own is not None and not own.wrote_nothing and own.phase in ("applying", "failed", "applied")
    )
    outcome = NO_CHANGE
    if own is not None:
        # A step that died mid-change may have had a call in flight, which its
        # entry could not count yet: unknown, never "not applied". Not so while
        # the execution waits between steps: the step that ended counted its calls.
        in_flight = own.phase == "applying" and own.applied < own.planned and not own.resting
        outcome = calls_known(own.applied, own.planned, max(own.unknown, int(in_flight)))
    reason = with_outcome(what, outcome)
    if wrote:
        reason += "; the stack's rollback restores them from the change journal"
    return Answer.failed(failed_physical_id(record.event, unrestored=wrote), reason)


def answer_request(
    keys: RequestKeys,
    failure: Mapping[str, Any] | None,
    store: RequestStore,
    journal: Callable[[str, str], Entry | None],
    send: Callable[[Mapping[str, Any], Answer], bool],
) -> Sent | None:
    """The Answer task: claim the Work step's answer (or FAILED after ``failure``), then PUT it."""
    record = store.read(keys)
    if record is None or record.keys.attempt != keys.attempt:
        logger.warning("the request's record is gone or belongs to a newer attempt")
        return None
    # Once answered, the request writes no more: a Work invocation that still
    # runs (a task timeout, or an Invoke that failed while it ran) is fenced out.
    store.close_fence(keys)
    if record.outcome is not None:
        chosen = record.outcome
    else:
        what = (
            f"The change's Work step failed ({_error_name(failure)}); see the Work function's "
            f"logs for RequestId {keys.request_id}"
        )
        chosen = failure_answer(record, what, journal_entry(record, journal))
    claimed = store.claim(keys, chosen)
    if not send(record.event, claimed):
        raise AnswerUndelivered("the answer could not be delivered to the ResponseURL")
    return Sent(claimed)


class AnswerUndelivered(Exception):
    """The PUT failed after its retries: the state machine retries the Answer task."""


def safety_net(
    event: Mapping[str, Any],
    store: RequestStore,
    journal: Callable[[str, str], Entry | None],
    send: Callable[[Mapping[str, Any], Answer], bool],
) -> Sent | None:
    """Answer a request whose execution ended without answering it.

    Not for a request a newer one of its resource superseded: CloudFormation
    has moved on from it (the rollback carries the resource now).
    """
    detail = event.get("detail")
    if not isinstance(detail, Mapping) or detail.get("status") not in ENDED_BADLY:
        return None
    try:
        keys = RequestKeys.from_input(json.loads(str(detail.get("input") or "{}")).get("request"))
    except (ValueError, AttributeError) as error:
        logger.warning("not an execution of this provider", extra={"why": type(error).__name__})
        return None
    record = store.read(keys)
    if record is None or record.keys.attempt != keys.attempt:
        return None
    if record.answer is None and not store.holds(keys) and not store.closed_by(keys):
        logger.info("superseded by a newer request of the resource: no answer")
        return None
    what = (
        f"The change's execution ended {detail['status']} before it answered; see the "
        f"provider's state machine execution {keys.execution_name}"
    )
    chosen = record.answer
    if chosen is None:
        store.close_fence(keys)
        chosen = failure_answer(record, what, journal_entry(record, journal))
    claimed = store.claim(keys, chosen)
    send(record.event, claimed)
    logger.warning("the safety net answered", extra={"status": claimed.status})
    return Sent(claimed, by_safety_net=True)
