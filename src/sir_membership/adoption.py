"""OUs an Update adopted, remembered until that Update is known to have stuck.

An Update that adds an OU to the declaration while it is already associated
(someone associated it outside the stack) adopts it: no call is made for it.
If that Update then fails, CloudFormation rolls it back with an Update whose
old declaration lists the OU and whose new one does not, and the planner's
rule would remove it, taking away an OU that was never this resource's to
remove. The failing Update cannot change the rollback's event, so it leaves a
note instead: before its first write it records the OUs it adopted, keyed by
stack and logical id and tagged with a digest of its declaration; an Update
whose old declaration has that digest (the rollback) keeps them. The note is
deleted once any Update of the resource succeeds, so a later, forward change
set plans exactly what ``python -m sir_membership plan`` previews.

The note holds OU ids only, in the idempotency table, with a TTL.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from .errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

#: Long enough for a rollback that failed and is continued by hand days later.
NOTE_TTL_SECONDS = 7 * 24 * 3600


def digest(ous: frozenset[str]) -> str:
    """A short, stable fingerprint of a declared OU set."""
    return hashlib.sha256("\n".join(sorted(ous)).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class AdoptionNotes:
    """Reads and writes the notes in the idempotency table (key attribute ``id``)."""

    client: DynamoDBClient
    table_name: str

    def _key(self, stack_id: str, logical_id: str) -> dict[str, dict[str, str]]:
        return {"id": {"S": f"adopted#{stack_id}#{logical_id}"}}

    def _fail(self, action: str, error: Exception) -> ConfigurationError:
        code = error.response["Error"]["Code"] if isinstance(error, ClientError) else ""
        return ConfigurationError(
            f"could not {action} the idempotency table {self.table_name} "
            f"({code or type(error).__name__}): check the table exists and the role allows "
            "dynamodb:GetItem/PutItem/DeleteItem on it; no change was applied"
        )

    def recall(
        self, stack_id: str, logical_id: str, membership_id: str, old: frozenset[str]
    ) -> frozenset[str]:
        """The OUs adopted by the Update whose declaration was ``old`` (empty if none)."""
        try:
            item = self.client.get_item(
                TableName=self.table_name,
                Key=self._key(stack_id, logical_id),
                ConsistentRead=True,
            ).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise self._fail("read", error) from None
        # DynamoDB deletes expired items late; an expired note no longer counts.
        if not item or int(item["expiration"]["N"]) < time.time():
            return frozenset()
        if item["membership"]["S"] != membership_id or item["declaration"]["S"] != digest(old):
            return frozenset()
        return frozenset(item["ous"]["SS"])

    def remember(
        self,
        stack_id: str,
        logical_id: str,
        membership_id: str,
        declared: frozenset[str],
        adopted: frozenset[str],
    ) -> None:
        """Record ``adopted`` before the Update that adopts them writes anything."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={
                    **self._key(stack_id, logical_id),
                    "membership": {"S": membership_id},
                    "declaration": {"S": digest(declared)},
                    "ous": {"SS": sorted(adopted)},
                    "expiration": {"N": str(int(time.time()) + NOTE_TTL_SECONDS)},
                },
            )
        except (ClientError, BotoCoreError) as error:
            raise self._fail("write to", error) from None

    def forget(self, stack_id: str, logical_id: str) -> None:
        """Drop the note once an Update succeeded (if that fails, the TTL cleans up)."""
        try:
            self.client.delete_item(TableName=self.table_name, Key=self._key(stack_id, logical_id))
        except (ClientError, BotoCoreError) as error:
            logger.warning(
                "could not delete the adoption note", extra={"errorType": type(error).__name__}
            )
