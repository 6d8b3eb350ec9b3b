"""The smallest handler that can do the job's calls: the cold-start and warm baseline.

It imports boto3 and creates a ``security-ir`` client at module level (as any
Python Lambda function would), and per event makes one GetMembership and one
UpdateMembership, with no validation, logging, idempotency or answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3

CLIENT = boto3.client("security-ir")


def handler(event: Mapping[str, Any], context: Any) -> None:
    """Read the membership, then rename it."""
    membership_id = event["membershipId"]
    CLIENT.get_membership(membershipId=membership_id)
    CLIENT.update_membership(membershipId=membership_id, membershipName=event["membershipName"])
