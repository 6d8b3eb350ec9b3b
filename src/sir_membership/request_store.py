"""The request records and generation fences, in the function's table.

Items (attribute ``id``), beside the journal's (``journal_store``):

* ``request#<StackId>#<RequestId>``: a ``request_record.RequestRecord``:
  ``firstSeen`` (the ServiceTimeout counts from it), ``event`` (the screened
  event, ResponseURL included), ``attempt``, ``workStep``, ``outcome`` and
  the claimed ``answer``. It expires a little after CloudFormation's longest
  wait for an answer.
* ``fence#<StackId>#<LogicalResourceId>``: the resource's generation fence:
  ``holder`` (``<RequestId>#<attempt>``) is the only request of the resource
  that may write; ``generation`` counts how often it changed hands.

Every write that decides something is conditional, so two deliveries, two
tasks or a task and the safety net can never both win: the fence is taken
once per new request, a step is begun once, an answer is claimed once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from .errors import InvalidProperties, JournalUnavailable
from .request_record import (
    RequestKeys,
    RequestRecord,
    answer_from_json,
    answer_to_json,
)
from .response import Answer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

#: Longer than CloudFormation's longest wait (an hour) for the request's answer.
REQUEST_TTL_SECONDS = 2 * 3600
#: What a request that answered leaves as the fence's holder: nobody may write.
CLOSED = "#closed"
#: The most of an event the request record keeps: a DynamoDB item holds 400 KB,
#: and the record's other attributes (the answer, at most 4 KB) need room too.
EVENT_LIMIT_BYTES = 380_000


def refuse_if_too_large(text: str) -> None:
    """Refuse, before any write, an event too large for its request record."""
    size = len(text.encode())
    if size > EVENT_LIMIT_BYTES:
        raise InvalidProperties(
            f"Invalid properties: the request is {size // 1000} KB, more than the "
            f"{EVENT_LIMIT_BYTES // 1000} KB the provider's table can record for one request "
            "(its properties and, on Update, the old ones): declare fewer OrganizationalUnits "
            "in one resource (split them over several resources of the membership), or use "
            "CoverEntireOrganization. No change was applied"
        )


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "")) or type(error).__name__
    return type(error).__name__


def _n(value: float | int) -> dict[str, str]:
    return {"N": str(value)}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


@dataclass(frozen=True)
class Registration:
    """What registering a delivery found: its keys, and whom its fence took over from."""

    keys: RequestKeys
    first_seen: float
    #: False for a duplicate delivery of an attempt already registered.
    new: bool
    #: The request of the same resource whose fence this one took (to stop its execution).
    superseded: RequestKeys | None = None
    #: The answer already claimed for this attempt (a duplicate after the answer).
    answer: Answer | None = None
    #: A newer request of the resource holds its fence (or, for a request the
    #: previous release began, may have written since): this one must not start.
    stale: bool = False


@dataclass(frozen=True)
class RequestStore:
    """Conditional reads and writes of request records and fences (key attribute ``id``)."""

    client: DynamoDBClient
    table_name: str
    clock: Callable[[], float] = time.time

    def _fail(self, action: str, error: Exception) -> JournalUnavailable:
        return JournalUnavailable(
            f"could not {action} the request record in table {self.table_name} "
            f"({_code(error)}): check the table exists and the role allows "
            "dynamodb:GetItem/PutItem/UpdateItem on it"
        )

    @staticmethod
    def _request_key(stack_id: str, request_id: str) -> dict[str, Any]:
        return {"id": _s(f"request#{stack_id}#{request_id}")}

    @staticmethod
    def _fence_key(stack_id: str, logical_id: str) -> dict[str, Any]:
        return {"id": _s(f"fence#{stack_id}#{logical_id}")}

    def _update(self, action: str, **kwargs: Any) -> dict[str, Any] | None:
        """One UpdateItem; None when its condition does not hold."""
        try:
            response = self.client.update_item(TableName=self.table_name, **kwargs)
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return None
            raise self._fail(action, error) from None
        except BotoCoreError as error:
            raise self._fail(action, error) from None
        return dict(response.get("Attributes") or {})

    def _get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            item = self.client.get_item(
                TableName=self.table_name, Key=dict(key), ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise self._fail("read", error) from None
        return dict(item) if item else None

    # -- the dispatcher -----------------------------------------------------------

    def register(
        self, event: Mapping[str, Any], admit_legacy: Callable[[RequestKeys], bool] | None = None
    ) -> Registration:
        """Record a delivery of ``event``, and take its resource's fence if it is new.

        A duplicate delivery (same RequestId, same ResponseURL) changes
        nothing. The same RequestId with another ResponseURL after its
        answer was claimed is CloudFormation retrying the deployment: a new
        attempt, which takes the fence again. A request never takes the fence
        from one first seen after it (``stale``). A request the previous
        release began (its record has a first sight but no event) takes it
        only if ``admit_legacy`` says it is still the resource's latest.
        """
        now = self.clock()
        keys = RequestKeys.of_event(event)
        text = json.dumps(dict(event), sort_keys=True)
        refuse_if_too_large(text)
        record = {
            "Key": self._request_key(keys.stack_id, keys.request_id),
            "UpdateExpression": (
                "SET firstSeen = if_not_exists(firstSeen, :now), "
                "expiration = if_not_exists(expiration, :exp), "
                "event = if_not_exists(event, :event), attempt = if_not_exists(attempt, :one)"
            ),
            "ExpressionAttributeValues": {
                ":now": _n(round(now, 3)),
                ":exp": _n(int(now) + REQUEST_TTL_SECONDS),
                ":event": _s(text),
                ":one": _n(1),
            },
            "ReturnValues": "ALL_NEW",
        }
        item = self._update(
            "write",
            ConditionExpression="attribute_not_exists(firstSeen) OR attribute_exists(event)",
            **record,
        )
        legacy = item is None
        if legacy:  # first seen by the previous release, which kept no event
            item = self._update("write", **record)
        assert item is not None  # unconditional
        stored = self._record(item)
        keys = stored.keys
        since = float(item["attemptSeen"]["N"]) if "attemptSeen" in item else stored.first_seen
        if stored.event.get("ResponseURL") != event.get("ResponseURL"):
            if stored.answer is None:  # a second URL while the first is unanswered: keep the first
                return Registration(keys, stored.first_seen, new=False)
            keys, since = self._next_attempt(stored, text), now
        elif "fenceTaken" in item:
            return Registration(keys, stored.first_seen, new=False, answer=stored.answer)
        if legacy and admit_legacy is not None and not admit_legacy(keys):
            return Registration(keys, stored.first_seen, new=False, stale=True)
        return self._take_fence(keys, stored.first_seen, since)

    def _next_attempt(self, stored: RequestRecord, text: str) -> RequestKeys:
        keys = stored.keys
        item = self._update(
            "write",
            Key=self._request_key(keys.stack_id, keys.request_id),
            UpdateExpression=(
                "SET attempt = :next, event = :event, workStep = :zero, attemptSeen = :now "
                "REMOVE answer, outcome, fenceTaken"
            ),
            ConditionExpression="attempt = :this",
            ExpressionAttributeValues={
                ":next": _n(keys.attempt + 1),
                ":this": _n(keys.attempt),
                ":event": _s(text),
                ":zero": _n(0),
                ":now": _n(round(self.clock(), 3)),
            },
        )
        if item is None:  # another delivery of the retry got there first
            return self.read_keys(keys.stack_id, keys.logical_id, keys.request_id)
        return RequestKeys(keys.stack_id, keys.logical_id, keys.request_id, keys.attempt + 1)

    def read_keys(self, stack_id: str, logical_id: str, request_id: str) -> RequestKeys:
        """The keys of the request's current attempt."""
        item = self._get(self._request_key(stack_id, request_id))
        attempt = int(item["attempt"]["N"]) if item else 1
        return RequestKeys(stack_id, logical_id, request_id, attempt)

    def _take_fence(self, keys: RequestKeys, first_seen: float, since: float) -> Registration:
        """Hold the resource's fence from now on, unless a newer request holds it.

        ``since`` is when this attempt was first seen: the fence only ever
        passes to a request first seen no earlier than its holder, so a late
        delivery of an older request never supersedes its rollback.
        """
        before = self._update(
            "write",
            Key=self._fence_key(keys.stack_id, keys.logical_id),
            UpdateExpression=(
                "SET holder = :me, since = :since, "
                "generation = if_not_exists(generation, :zero) + :one"
            ),
            ConditionExpression="attribute_not_exists(since) OR since <= :since",
            ExpressionAttributeValues={
                ":me": _s(keys.holder),
                ":since": _n(since),
                ":zero": _n(0),
                ":one": _n(1),
            },
            ReturnValues="ALL_OLD",
        )
        if before is None:
            logger.warning("a newer request of the resource holds its fence: not started")
            return Registration(keys, first_seen, new=False, stale=True)
        self._update(
            "write",
            Key=self._request_key(keys.stack_id, keys.request_id),
            UpdateExpression="SET fenceTaken = :t",
            ExpressionAttributeValues={":t": {"BOOL": True}},
        )
        previous = str(before["holder"]["S"]) if "holder" in before else ""
        superseded = _holder_keys(keys, previous) if previous != keys.holder else None
        return Registration(keys, first_seen, new=True, superseded=superseded)

    # -- the tasks ----------------------------------------------------------------

    def read(self, keys: RequestKeys) -> RequestRecord | None:
        """The request's record, or None (never registered, or expired)."""
        item = self._get(self._request_key(keys.stack_id, keys.request_id))
        return self._record(item) if item else None

    def fence_holder(self, keys: RequestKeys) -> str:
        """Who holds the fence of ``keys``'s resource ("" if nobody): a consistent read."""
        item = self._get(self._fence_key(keys.stack_id, keys.logical_id))
        return str(item["holder"]["S"]) if item else ""

    def holds(self, keys: RequestKeys) -> bool:
        """Whether ``keys`` still holds its resource's fence."""
        return self.fence_holder(keys) == keys.holder

    def closed_by(self, keys: RequestKeys) -> bool:
        """Whether ``keys`` closed its resource's fence (it answered; nobody newer came)."""
        return self.fence_holder(keys) == keys.holder + CLOSED

    def close_fence(self, keys: RequestKeys) -> None:
        """Take the fence from ``keys`` (if it holds it): a late call of it can no longer write."""
        self._update(
            "write",
            Key=self._fence_key(keys.stack_id, keys.logical_id),
            UpdateExpression="SET holder = :closed, generation = generation + :one",
            ConditionExpression="holder = :me",
            ExpressionAttributeValues={
                ":me": _s(keys.holder),
                ":closed": _s(keys.holder + CLOSED),
                ":one": _n(1),
            },
        )

    def begin_step(self, keys: RequestKeys, step: int) -> bool:
        """Record that Work step ``step`` began; True if it had begun before (a retry)."""
        item = self._update(
            "write",
            Key=self._request_key(keys.stack_id, keys.request_id),
            UpdateExpression="SET workStep = :step",
            ConditionExpression="attempt = :attempt AND (attribute_not_exists(workStep) "
            "OR workStep < :step)",
            ExpressionAttributeValues={":step": _n(step), ":attempt": _n(keys.attempt)},
        )
        return item is None

    def record_outcome(self, keys: RequestKeys, answer: Answer) -> None:
        """Keep the Work task's answer for the Answer task (before the execution moves on)."""
        self._update(
            "write",
            Key=self._request_key(keys.stack_id, keys.request_id),
            UpdateExpression="SET outcome = :a",
            ConditionExpression="attempt = :attempt",
            ExpressionAttributeValues={
                ":a": _s(answer_to_json(answer)),
                ":attempt": _n(keys.attempt),
            },
        )

    def claim(self, keys: RequestKeys, answer: Answer) -> Answer:
        """Make ``answer`` the attempt's only answer, or return the one claimed before.

        Whoever claims first (the Answer task, its retry, the safety net)
        decides what CloudFormation hears; everyone after sends that again.
        """
        item = self._update(
            "write",
            Key=self._request_key(keys.stack_id, keys.request_id),
            UpdateExpression="SET answer = :a",
            ConditionExpression="attempt = :attempt AND attribute_not_exists(answer)",
            ExpressionAttributeValues={
                ":a": _s(answer_to_json(answer)),
                ":attempt": _n(keys.attempt),
            },
            ReturnValues="ALL_NEW",
        )
        if item is not None:
            return answer
        stored = self.read(keys)
        if stored is None or stored.answer is None:
            raise JournalUnavailable(
                "the request's answer was claimed by another attempt: nothing is sent"
            )
        return stored.answer

    def _record(self, item: Mapping[str, Any]) -> RequestRecord:
        event = json.loads(item["event"]["S"])
        keys = RequestKeys.of_event(event, int(item.get("attempt", {"N": "1"})["N"]))
        return RequestRecord(
            keys=keys,
            event=event,
            first_seen=float(item["firstSeen"]["N"]),
            outcome=answer_from_json(item["outcome"]["S"]) if "outcome" in item else None,
            answer=answer_from_json(item["answer"]["S"]) if "answer" in item else None,
            work_step=int(item["workStep"]["N"]) if "workStep" in item else 0,
        )


def _holder_keys(keys: RequestKeys, holder: str) -> RequestKeys | None:
    """The keys of the request that held the fence as ``holder`` (None: nobody, or closed)."""
    request_id, _, attempt = holder.partition("#")
    if not request_id or not attempt.isdigit():
        return None
    return RequestKeys(keys.stack_id, keys.logical_id, request_id, int(attempt))
