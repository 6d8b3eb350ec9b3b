"""Where a membership's pace lives (``pace#<MembershipId>`` in the table), and its pacer.

Why apart from ``pace``: that module decides; this one reads and writes the
item and keeps the current value through a Work step. Pacing is advice:
a pace that cannot be read counts as not known, one that cannot be written
is logged, and neither ever fails a change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from .errors import MembershipError
from .pace import Pace

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

#: A pace not refreshed for this long expires: the service's window may have changed.
PACE_TTL_SECONDS = 30 * 24 * 3600


class PaceBook(Protocol):
    """Each membership's recorded pace."""

    def read_pace(self, membership_id: str) -> Pace | None:
        """The recorded pace, or None; raises on a table failure."""

    def write_pace(self, membership_id: str, pace: Pace) -> None:
        """Record ``pace``; raises on a table failure."""


@dataclass(frozen=True)
class TablePaces:
    """``pace#<MembershipId>`` items: the pace's numbers, no sensitive value."""

    client: DynamoDBClient
    table_name: str
    clock: Callable[[], float] = time.time

    def read_pace(self, membership_id: str) -> Pace | None:
        item = self.client.get_item(
            TableName=self.table_name, Key={"id": {"S": f"pace#{membership_id}"}}
        ).get("Item")
        if not item or int(item.get("expiration", {}).get("N", "0")) < self.clock():
            return None
        return Pace.from_item({k: v.get("N") for k, v in item.items() if "N" in v})

    def write_pace(self, membership_id: str, pace: Pace) -> None:
        fields = {k: {"N": v} for k, v in pace.to_item().items()}
        self.client.put_item(
            TableName=self.table_name,
            Item={
                "id": {"S": f"pace#{membership_id}"},
                **fields,
                "expiration": {"N": str(int(self.clock()) + PACE_TTL_SECONDS)},
            },
        )


def recorded(book: PaceBook | None, membership_id: str) -> Pace | None:
    """The membership's recorded pace; None when there is none or it cannot be read."""
    if book is None:
        return None
    try:
        return book.read_pace(membership_id)
    except (ClientError, BotoCoreError, MembershipError) as error:
        logger.warning("could not read the pace", extra={"errorType": type(error).__name__})
        return None


class Pacer:
    """One membership's pace through a Work step: read once, written after each lesson."""

    def __init__(self, book: PaceBook, membership_id: str, clock: Callable[[], float]) -> None:
        self._book = book
        self._membership_id = membership_id
        self._clock = clock
        self.pace = recorded(book, membership_id) or Pace()

    def wait(self) -> float:
        """Seconds before the next UpdateMembership is due."""
        return self.pace.wait(self._clock())

    def accepted(self, *, propagating: bool) -> None:
        self._learn(self.pace.accepted(self._clock(), propagating=propagating))

    def refused(self, retry_after: float | None) -> None:
        self._learn(self.pace.refusal(self._clock(), retry_after))

    def _learn(self, pace: Pace) -> None:
        if pace == self.pace:
            return
        self.pace = pace
        try:
            self._book.write_pace(self._membership_id, pace)
        except (ClientError, BotoCoreError, MembershipError) as error:
            logger.warning("could not record the pace", extra={"errorType": type(error).__name__})
