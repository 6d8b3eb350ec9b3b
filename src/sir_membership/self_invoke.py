"""The shell's side of a continuation: an asynchronous Invoke of this very function.

Why the function invokes itself instead of using crhelper's polling mode:
that mode creates EventBridge rules and adds invoke permissions at run time,
so the role would need ``events:*`` and ``lambda:AddPermission``; this needs
only ``lambda:InvokeFunction`` on the function's own ARN. The client is made
on the first hand-off only: most requests never need it, and a cold start
should not pay for it.

Also here: the idempotency record's serializer for an ``Outcome`` (an
answer, or the note that a new invocation carries the request on).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.utilities.idempotency.serialization.base import (
    BaseIdempotencySerializer,
)
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import continuation, denial
from .continuation import Continuation, Outcome
from .errors import ContinuationFailed

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

INVOKE = "lambda:InvokeFunction"


def _account_of(function_arn: str) -> str:
    """The account field of a function ARN ("?" if it has none)."""
    parts = function_arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4].isdigit() else "?"


@functools.cache
def lambda_client() -> LambdaClient:
    """The Lambda client (``AWS_ENDPOINT_URL_LAMBDA`` points it elsewhere, e.g. locally)."""
    return boto3.client(
        "lambda",
        config=Config(
            connect_timeout=3,
            read_timeout=5,
            retries={"total_max_attempts": 3, "mode": "standard"},
        ),
    )


def invoker(
    event: dict[str, Any], function_arn: str, on_sent: Callable[[], None]
) -> Callable[[Continuation], None]:
    """A hand-off that starts the next invocation with ``event`` and the marker.

    ``on_sent`` hears that the next invocation is started: from then on
    this one must not answer (not even its timer).
    """

    def invoke(marker: Continuation) -> None:
        try:
            lambda_client().invoke(
                FunctionName=function_arn,
                InvocationType="Event",
                Payload=json.dumps(marker.on(event)).encode(),
            )
        except ClientError as error:
            info = error.response.get("Error", {})
            code = str(info.get("Code", "Unknown"))
            said, hint = "", "retry the stack operation"
            if code == "AccessDeniedException":
                deny = denial.read(str(info.get("Message") or ""))
                said = deny.said(INVOKE)
                hint = deny.check(
                    INVOKE,
                    _account_of(function_arn),
                    "the function",
                    f"allow {INVOKE} on the function's own ARN in its role",
                )
            raise ContinuationFailed(
                "the function could not continue in a new invocation of itself "
                f"({code}{said}): {hint}"
            ) from None
        except BotoCoreError as error:
            raise ContinuationFailed(
                "the function could not continue in a new invocation of itself "
                f"({type(error).__name__}): retry the stack operation"
            ) from None
        on_sent()

    return invoke


class OutcomeSerializer(BaseIdempotencySerializer):
    """An ``Outcome`` as the idempotency record's JSON (``continuation.outcome_to_dict``)."""

    def to_dict(self, data: Outcome) -> dict[str, Any]:
        """The record's form."""
        return continuation.outcome_to_dict(data)

    def from_dict(self, data: dict[str, Any]) -> Outcome:
        """The outcome back from the record."""
        return continuation.outcome_from_dict(data)
