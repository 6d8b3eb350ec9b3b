"""The shell's reading of the consumer stack's status (``cloudformation:DescribeStacks``).

Why: CloudFormation sends the same Delete whether the user removed a
resource or the operation that created it is rolling back; only the stack's
status tells them apart (``shell.stack_rolls_back``). The client is made on
first use only: most requests never need it, and a cold start should not
pay for it. ``AWS_ENDPOINT_URL_CLOUDFORMATION`` points it elsewhere (boto3
reads it), e.g. at a local CloudFormation.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .errors import StackStatusUnavailable

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient


@functools.cache
def cloudformation_client() -> CloudFormationClient:
    """The CloudFormation client, with short timeouts: the answer waits on it."""
    return boto3.client(
        "cloudformation",
        config=Config(
            connect_timeout=3,
            read_timeout=5,
            retries={"total_max_attempts": 3, "mode": "standard"},
        ),
    )


def stack_status(stack_id: str) -> str:
    """The stack's status (``StackId`` is its ARN, which names it even once deleted)."""
    try:
        stacks = cloudformation_client().describe_stacks(StackName=stack_id)["Stacks"]
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "")) or "ClientError"
        raise StackStatusUnavailable(_reason(code)) from None
    except BotoCoreError as error:
        raise StackStatusUnavailable(_reason(type(error).__name__)) from None
    if not stacks:
        raise StackStatusUnavailable(_reason("no such stack"))
    return str(stacks[0]["StackStatus"])


def _reason(cause: str) -> str:
    return (
        f"Could not read the stack's status with cloudformation:DescribeStacks ({cause}), "
        "which tells a rollback of the Create (restore the membership) from a removal "
        "(follow OnDelete): allow cloudformation:DescribeStacks on this stack in the "
        "function's role, then retry the delete"
    )
