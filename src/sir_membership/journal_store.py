"""Where the journal and the lease live: items in the idempotency table.

Why the same table: it already exists, is the function's own, has a TTL and
the role already holds the item-level actions on it, so no new resource or
permission is needed. Item keys (attribute ``id``):

* ``journal#<StackId>#<LogicalResourceId>``: the resource's latest journal
  entry (``journal.Entry`` as JSON), with a TTL long enough for a rollback
  that is continued by hand days later.
* ``lease#<MembershipId>``: who may write to the membership now, and until
  when. Taken with a conditional write, so two requests can never both
  hold it; it lapses at its holder's deadline, so an invocation that was
  killed cannot block the membership for longer than its own timeout.
* ``handoff#<StackId>#<RequestId>``: a request carried across invocations
  (``continuation.Handoff``): the token of the only invocation that may
  continue it, replaced conditionally at each hand-off; kept a little longer
  than CloudFormation's longest wait for an answer.

Every failure here is a ``JournalUnavailable`` with a reason that names the
table and the permission, raised before the first write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from . import continuation
from .continuation import Handoff
from .errors import JournalUnavailable, MembershipBusy
from .journal import Entry, from_json, to_json

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

#: Long enough for a rollback that failed and is continued by hand days later.
JOURNAL_TTL_SECONDS = 14 * 24 * 3600
#: Longer than CloudFormation's longest wait (an hour) for the request's answer.
HANDOFF_TTL_SECONDS = 2 * 3600
#: A lease item outlives its holder's deadline by this much (it lapses at the deadline).
LEASE_TTL_SECONDS = 3600


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "")) or type(error).__name__
    return type(error).__name__


class Store(Protocol):
    """What the resource needs of the journal's storage (``JournalStore`` on DynamoDB)."""

    def read(self, stack_id: str, logical_id: str) -> Entry | None:
        """The resource's latest entry, or None."""

    def write(self, stack_id: str, logical_id: str, entry: Entry) -> None:
        """Record ``entry`` as the resource's latest."""

    def acquire(
        self,
        membership_id: str,
        holder: str,
        until: float,
        *,
        wait_until: float,
        sleep: Callable[[float], None] = ...,
    ) -> None:
        """Hold the membership's lease until ``until``, waiting up to ``wait_until``."""

    def release(self, membership_id: str, holder: str) -> None:
        """Give the lease back."""

    def read_handoff(self, stack_id: str, request_id: str) -> Handoff | None:
        """The request's hand-off record, or None."""

    def write_handoff(self, stack_id: str, handoff: Handoff, *, replacing: str | None) -> bool:
        """Record ``handoff`` if the stored token is still ``replacing`` (None: no record).

        False when another invocation has replaced it meanwhile.
        """


@dataclass(frozen=True)
class JournalStore:
    """Reads and writes journal entries and leases (key attribute ``id``)."""

    client: DynamoDBClient
    table_name: str
    clock: Callable[[], float] = time.time

    def _fail(self, action: str, error: Exception) -> JournalUnavailable:
        return JournalUnavailable(
            f"could not {action} the change journal in table {self.table_name} "
            f"({_code(error)}): check the table exists and the role allows "
            "dynamodb:GetItem/PutItem/UpdateItem/DeleteItem on it"
        )

    @staticmethod
    def journal_key(stack_id: str, logical_id: str) -> str:
        """The id of a resource's journal item."""
        return f"journal#{stack_id}#{logical_id}"

    # -- journal -------------------------------------------------------------------

    def read(self, stack_id: str, logical_id: str) -> Entry | None:
        """The resource's latest entry, or None (never written, or expired)."""
        try:
            item = self.client.get_item(
                TableName=self.table_name,
                Key={"id": {"S": self.journal_key(stack_id, logical_id)}},
                ConsistentRead=True,
            ).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise self._fail("read", error) from None
        # DynamoDB deletes expired items late; an expired entry no longer counts.
        if not item or int(item["expiration"]["N"]) < self.clock():
            return None
        return from_json(item["entry"]["S"])

    def write(self, stack_id: str, logical_id: str, entry: Entry) -> None:
        """Record ``entry`` as the resource's latest (before its first write)."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={
                    "id": {"S": self.journal_key(stack_id, logical_id)},
                    "entry": {"S": to_json(entry)},
                    "expiration": {"N": str(int(self.clock()) + JOURNAL_TTL_SECONDS)},
                },
            )
        except (ClientError, BotoCoreError) as error:
            raise self._fail("write to", error) from None

    # -- hand-off ------------------------------------------------------------------

    def read_handoff(self, stack_id: str, request_id: str) -> Handoff | None:
        """The request's hand-off record, or None (never handed off, or expired)."""
        try:
            item = self.client.get_item(
                TableName=self.table_name,
                Key={"id": {"S": f"handoff#{stack_id}#{request_id}"}},
                ConsistentRead=True,
            ).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise self._fail("read", error) from None
        if not item or int(item["expiration"]["N"]) < self.clock():
            return None
        return continuation.from_json(item["handoff"]["S"])

    def write_handoff(self, stack_id: str, handoff: Handoff, *, replacing: str | None) -> bool:
        """Record ``handoff`` if the stored token is still ``replacing`` (None: no record)."""
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(id)"}
            if replacing is None
            else {
                "ConditionExpression": "#t = :old",
                "ExpressionAttributeNames": {"#t": "token"},
                "ExpressionAttributeValues": {":old": {"S": replacing}},
            }
        )
        item = {
            "id": {"S": f"handoff#{stack_id}#{handoff.request_id}"},
            "token": {"S": handoff.token},
            "handoff": {"S": continuation.to_json(handoff)},
            "expiration": {"N": str(int(self.clock()) + HANDOFF_TTL_SECONDS)},
        }
        return self._put_if(item, condition, "write to")

    def _put_if(self, item: dict[str, Any], condition: dict[str, Any], action: str) -> bool:
        """Put ``item`` if ``condition`` holds; False when it does not."""
        try:
            self.client.put_item(TableName=self.table_name, Item=item, **condition)
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise self._fail(action, error) from None
        except BotoCoreError as error:
            raise self._fail(action, error) from None
        return True

    # -- lease ---------------------------------------------------------------------

    def acquire(
        self,
        membership_id: str,
        holder: str,
        until: float,
        *,
        wait_until: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Hold ``membership_id``'s lease until ``until`` (epoch seconds).

        Waits (polling with backoff) while another holder's lease is live,
        up to ``wait_until``; then raises ``MembershipBusy``.
        """
        delay = 0.2
        waited = False
        while True:
            now = self.clock()
            if self._try_acquire(membership_id, holder, until, now):
                if waited:
                    logger.info(
                        "lease acquired after waiting", extra={"membershipId": membership_id}
                    )
                return
            if now + delay > wait_until:
                raise MembershipBusy(
                    f"Membership {membership_id} is being changed by another request "
                    "(another stack operation or resource on the same membership) for longer "
                    "than this request could wait; no change was applied. Retry once it is done"
                )
            if not waited:
                logger.info(
                    "membership busy: waiting for its lease", extra={"membershipId": membership_id}
                )
                waited = True
            sleep(delay)
            delay = min(delay * 2, 2.0)

    def _try_acquire(self, membership_id: str, holder: str, until: float, now: float) -> bool:
        item = {
            "id": {"S": f"lease#{membership_id}"},
            "holder": {"S": holder},
            "until": {"N": f"{until:.3f}"},
            "expiration": {"N": str(int(until) + LEASE_TTL_SECONDS)},
        }
        condition = {
            "ConditionExpression": "attribute_not_exists(id) OR #u < :now OR holder = :me",
            "ExpressionAttributeNames": {"#u": "until"},
            "ExpressionAttributeValues": {":now": {"N": f"{now:.3f}"}, ":me": {"S": holder}},
        }
        return self._put_if(item, condition, "take the lease in")

    def release(self, membership_id: str, holder: str) -> None:
        """Give the lease back (if that fails it lapses at its deadline)."""
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key={"id": {"S": f"lease#{membership_id}"}},
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={":me": {"S": holder}},
            )
        except (ClientError, BotoCoreError) as error:
            logger.warning(
                "could not release the lease; it lapses at its deadline",
                extra={"errorType": _code(error)},
            )
