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
* ``declared#<StackId>#<LogicalResourceId>``: the resource's declaration
  record (``journal.Record``: a digest and OU ids, nothing sensitive), with
  no TTL: what the resource last converged must outlive its entries.
* ``request#<StackId>#<RequestId>`` and ``fence#<StackId>#<LogicalResourceId>``:
  the request's record and the resource's generation fence
  (``request_store``); here only ``first_seen`` reads the record's time.

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

from .errors import JournalUnavailable, MembershipBusy
from .journal import Entry, Record
from .journal_codec import from_json, record_from_json, record_to_json, to_json
from .request_store import REQUEST_TTL_SECONDS

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

#: Long enough for a rollback that failed and is continued by hand days later.
JOURNAL_TTL_SECONDS = 14 * 24 * 3600
#: A lease item outlives its holder's deadline by this much (it lapses at the deadline).
LEASE_TTL_SECONDS = 3600


def holder_name(holder: str) -> str:
    """A lease holder as the stack events may show it: stack name and logical id.

    Holders are ``<StackId>#<LogicalResourceId>#<RequestId>``; the stack id is
    an ARN ``arn:...:stack/<name>/<uuid>``. Neither part is sensitive.
    """
    parts = holder.split("#")
    if len(parts) < 3:  # an older version's holder: <StackId>#<RequestId>
        stack, logical = parts[0], ""
    else:
        stack, logical = parts[0], parts[1]
    name = stack.split(":stack/", 1)[-1].split("/", 1)[0] if ":stack/" in stack else ""
    if not name:
        return "another request"
    return f"stack {name} resource {logical}" if logical else f"stack {name}"


def busy(membership_id: str, holder: str) -> MembershipBusy:
    """The failure of a request that could not take the membership's lease in time."""
    who = holder_name(holder) if holder else "another request"
    return MembershipBusy(
        f"Membership {membership_id} is being changed by another request ({who}) for longer "
        "than this request's ServiceTimeout allows it to wait: retry once that operation "
        "has finished. No change was applied by this request"
    )


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

    def read_record(self, stack_id: str, logical_id: str) -> Record | None:
        """The resource's declaration record, or None (never converged by this version)."""

    def write_record(self, stack_id: str, logical_id: str, record: Record | None) -> None:
        """Record what the resource converged (None: remove the record)."""

    def first_seen(self, stack_id: str, request_id: str, now: float) -> float:
        """When the request was first seen: ``now`` on first sight, the stored time after."""


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

    def _get(self, key: str) -> dict[str, Any] | None:
        """The item ``key`` (a consistent read), or None."""
        try:
            item = self.client.get_item(
                TableName=self.table_name, Key={"id": {"S": key}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise self._fail("read", error) from None
        return dict(item) if item else None

    @staticmethod
    def journal_key(stack_id: str, logical_id: str) -> str:
        """The id of a resource's journal item."""
        return f"journal#{stack_id}#{logical_id}"

    # -- journal -------------------------------------------------------------------

    def read(self, stack_id: str, logical_id: str) -> Entry | None:
        """The resource's latest entry, or None (never written, or expired)."""
        item = self._get(self.journal_key(stack_id, logical_id))
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

    # -- declaration record and first sight ---------------------------------------

    def read_record(self, stack_id: str, logical_id: str) -> Record | None:
        """The resource's declaration record, or None."""
        item = self._get(f"declared#{stack_id}#{logical_id}")
        return record_from_json(item["record"]["S"]) if item else None

    def write_record(self, stack_id: str, logical_id: str, record: Record | None) -> None:
        """Record what the resource converged (no TTL); None removes the record."""
        key = {"id": {"S": f"declared#{stack_id}#{logical_id}"}}
        try:
            if record is None:
                self.client.delete_item(TableName=self.table_name, Key=key)
            else:
                self.client.put_item(
                    TableName=self.table_name,
                    Item={**key, "record": {"S": record_to_json(record)}},
                )
        except (ClientError, BotoCoreError) as error:
            raise self._fail("write to", error) from None

    def first_seen(self, stack_id: str, request_id: str, now: float) -> float:
        """When the request was first seen (one conditional update, idempotent)."""
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key={"id": {"S": f"request#{stack_id}#{request_id}"}},
                UpdateExpression="SET #f = if_not_exists(#f, :now), #e = if_not_exists(#e, :exp)",
                ExpressionAttributeNames={"#f": "firstSeen", "#e": "expiration"},
                ExpressionAttributeValues={
                    ":now": {"N": f"{now:.3f}"},
                    ":exp": {"N": str(int(now) + REQUEST_TTL_SECONDS)},
                },
                ReturnValues="ALL_NEW",
            )
        except (ClientError, BotoCoreError) as error:
            raise self._fail("write to", error) from None
        return float(response["Attributes"]["firstSeen"]["N"])

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
        up to ``wait_until``; then raises ``MembershipBusy`` naming the
        holder. A lease write whose answer was lost is resolved by reading
        the lease back, never left to lapse.
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
                raise busy(membership_id, self.holder_of(membership_id))
            if not waited:
                logger.info(
                    "membership busy: waiting for its lease", extra={"membershipId": membership_id}
                )
                waited = True
            sleep(delay)
            delay = min(delay * 2, 2.0)

    def holder_of(self, membership_id: str) -> str:
        """Who holds the membership's lease now ("" if nobody, or it cannot be read)."""
        try:
            return self._read_holder(membership_id)
        except JournalUnavailable:
            return ""

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
        try:
            return self._put_if(item, condition, "take the lease in")
        except JournalUnavailable:
            # The put may have been applied although its answer was lost: read
            # the lease back; if that fails too, give back whatever it took.
            try:
                return self._read_holder(membership_id) == holder
            except JournalUnavailable:
                self.release(membership_id, holder)
                raise

    def _read_holder(self, membership_id: str) -> str:
        item = self._get(f"lease#{membership_id}")
        return str(item["holder"]["S"]) if item else ""

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
