"""What the table keeps of one request while Step Functions carries it (pure).

Why: the execution's input and history must never hold the pre-signed
ResponseURL or the declared names and emails, so the dispatcher keeps the
event in the table and the execution carries only ``RequestKeys``. The same
record holds the one answer the request may get (``answer``, claimed with a
conditional write before it is PUT, so a retry can only send it again) and
what the Work task concluded (``outcome``) for the Answer task to claim.

The generation fence is one item per resource (StackId + LogicalResourceId):
its ``holder`` is the request that may write now. A newer request of the
same resource (its rollback, or the next update) takes it; a request that
lost it stops before its next write (``request_store``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import MalformedRequest
from .response import Answer

#: Step Functions' execution names: at most 80 characters of this alphabet.
_NAME_LENGTH = 80
_ATTEMPT = re.compile(r"[1-9][0-9]{0,3}")


@dataclass(frozen=True)
class RequestKeys:
    """Which request an execution carries: all it needs to find the rest in the table.

    ``attempt`` tells CloudFormation's retry of a deployment, which may
    reuse a RequestId with a new ResponseURL (aws-cdk#35957), from a
    duplicate delivery of the same attempt.
    """

    stack_id: str
    logical_id: str
    request_id: str
    attempt: int = 1

    @property
    def holder(self) -> str:
        """The fence holder for this attempt of the request."""
        return f"{self.request_id}#{self.attempt}"

    @property
    def execution_name(self) -> str:
        """One execution per attempt: a hash of the ids (within 80 characters), then the attempt.

        The same name for every delivery of an attempt, so a duplicate
        delivery joins the execution that is already carrying it.
        """
        digest = hashlib.sha256(
            "\n".join((self.stack_id, self.logical_id, self.request_id)).encode()
        ).hexdigest()
        name = digest if self.attempt == 1 else f"{digest}-{self.attempt}"
        assert len(name) <= _NAME_LENGTH
        return name

    def to_input(self) -> dict[str, Any]:
        """The keys as the execution's input carries them (identical on every delivery)."""
        return {
            "stackId": self.stack_id,
            "logicalId": self.logical_id,
            "requestId": self.request_id,
            "attempt": self.attempt,
        }

    @classmethod
    def from_input(cls, raw: object) -> RequestKeys:
        """The keys of a task's input; ``MalformedRequest`` if they are not keys."""
        if not isinstance(raw, Mapping) or set(raw) != {
            "stackId",
            "logicalId",
            "requestId",
            "attempt",
        }:
            raise MalformedRequest("Malformed task input: request must hold exactly the four keys")
        ids = [raw["stackId"], raw["logicalId"], raw["requestId"]]
        attempt = raw["attempt"]
        if not all(isinstance(i, str) and i for i in ids) or not (
            type(attempt) is int and _ATTEMPT.fullmatch(str(attempt))
        ):
            raise MalformedRequest("Malformed task input: ids must be text, attempt 1..9999")
        return cls(str(ids[0]), str(ids[1]), str(ids[2]), int(attempt))

    @classmethod
    def of_event(cls, event: Mapping[str, Any], attempt: int = 1) -> RequestKeys:
        """The keys of a (screened) CloudFormation event."""
        return cls(
            str(event["StackId"]),
            str(event["LogicalResourceId"]),
            str(event["RequestId"]),
            attempt,
        )


@dataclass(frozen=True)
class RequestRecord:
    """The table's record of a request (item ``request#<StackId>#<RequestId>``)."""

    keys: RequestKeys
    #: CloudFormation's event as screened, ResponseURL included (never logged).
    event: Mapping[str, Any]
    first_seen: float
    #: What the Work task concluded, for the Answer task to claim.
    outcome: Answer | None = None
    #: The answer claimed for this attempt: the only one it will ever send.
    answer: Answer | None = None
    #: The highest Work step begun: a step that finds itself begun is a retry.
    work_step: int = 0


def answer_to_json(answer: Answer) -> str:
    """An answer as the table stores it (its reason and data hold nothing sensitive)."""
    return json.dumps(
        {
            "status": answer.status,
            "physicalResourceId": answer.physical_resource_id,
            "reason": answer.reason,
            "data": dict(answer.data),
        },
        sort_keys=True,
    )


def answer_from_json(text: str) -> Answer:
    """The answer stored as ``text`` (see ``answer_to_json``)."""
    raw = json.loads(text)
    if raw["status"] == "SUCCESS":
        return Answer.success(str(raw["physicalResourceId"]), dict(raw["data"]))
    return Answer.failed(str(raw["physicalResourceId"]), str(raw["reason"]))
