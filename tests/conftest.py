"""Shared fixtures: valid property sets and GetMembership documents."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import pytest

# The handler module creates boto3 clients at import; give them a region and
# fake credentials so no test ever reaches for real ones.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("IDEMPOTENCY_TABLE_NAME", "sir-membership-idempotency-test")
# The unit tests' ResponseURL receiver (tests/receiver.py) is plain HTTP on
# 127.0.0.1; the function's default answers only CloudFormation's https URLs.
os.environ.setdefault("RESPONSE_URL_PATTERNS", "http://127.0.0.1:*")

MEMBERSHIP_ID = "m-abcdef0123"
SECRET_NAMES = ("Alice Example", "Bob Example", "Carol Example")
SECRET_EMAILS = ("alice@example.com", "bob@example.com", "carol@example.com")
SECRET_TITLES = ("CISO Secret", "IR Lead Secret", "Analyst Secret")
SECRET_MEMBERSHIP_NAME = "Secret Membership Name"


def ou(i: int) -> str:
    """A valid, distinct OU id."""
    return f"ou-ab12-{i:08d}"


def team(n: int = 2) -> list[dict[str, Any]]:
    return [
        {"Name": SECRET_NAMES[i], "JobTitle": SECRET_TITLES[i], "Email": SECRET_EMAILS[i]}
        for i in range(n)
    ]


def api_team(n: int = 2) -> list[dict[str, Any]]:
    return [
        {"name": SECRET_NAMES[i], "jobTitle": SECRET_TITLES[i], "email": SECRET_EMAILS[i]}
        for i in range(n)
    ]


def props(**overrides: Any) -> dict[str, Any]:
    """A complete, valid ResourceProperties (as CloudFormation sends it)."""
    base: dict[str, Any] = {
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:sir",
        "ServiceTimeout": "600",
        "MembershipId": MEMBERSHIP_ID,
        "MembershipName": SECRET_MEMBERSHIP_NAME,
        "IncidentResponseTeam": team(2),
        "OptInFeatures": [{"FeatureName": "Triage", "IsEnabled": "true"}],
        "OrganizationalUnits": [ou(1), ou(2)],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def get_membership(**overrides: Any) -> dict[str, Any]:
    """A GetMembership response (boto3 output shape)."""
    base: dict[str, Any] = {
        "membershipId": MEMBERSHIP_ID,
        "accountId": "123456789012",
        "region": "us-east-1",
        "membershipName": SECRET_MEMBERSHIP_NAME,
        "membershipArn": f"arn:aws:security-ir:us-east-1:123456789012:membership/{MEMBERSHIP_ID}",
        "membershipStatus": "Active",
        "customerType": "Organization",
        "incidentResponseTeam": api_team(2),
        "optInFeatures": [{"featureName": "Triage", "isEnabled": True}],
        "membershipAccountsConfigurations": {
            "coverEntireOrganization": False,
            "organizationalUnits": [ou(1), ou(2)],
        },
    }
    base.update(overrides)
    return base


@pytest.fixture
def valid_props() -> dict[str, Any]:
    return props()


def function_table(monkeypatch: pytest.MonkeyPatch, name: str) -> Any:
    """Inside ``mock_aws``: create the function's table and point every part of it there.

    The dispatcher's request records and fences, the tasks' records, the
    change journal and the leases: tests see one table, as the functions do.
    """
    import boto3  # noqa: PLC0415 - after the environment above is set

    from sir_membership import app, tasks  # noqa: PLC0415
    from sir_membership.journal_store import JournalStore  # noqa: PLC0415
    from sir_membership.request_store import RequestStore  # noqa: PLC0415

    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setattr(app, "TABLE_NAME", name)
    monkeypatch.setattr(app, "REQUESTS", RequestStore(client, name))
    monkeypatch.setattr(app, "JOURNAL", JournalStore(client, name))
    monkeypatch.setattr(tasks, "TABLE_NAME", name)
    monkeypatch.setattr(tasks, "REQUESTS", RequestStore(client, name))
    monkeypatch.setattr(tasks, "JOURNAL", JournalStore(client, name))
    inline_engine(monkeypatch, lambda: TaskContext(time.monotonic() + 120.0))
    return client


@dataclass
class TaskContext:
    """The Lambda context of a task the in-process engine runs (its deadline is real)."""

    deadline: float
    aws_request_id: str = "task-request-1"
    function_name: str = "sir-membership-work"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:sir-membership-work"
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def inline_engine(monkeypatch: pytest.MonkeyPatch, context: Any, **options: Any) -> Any:
    """Run the provider's executions in process (``engine_local``) for the dispatcher."""
    from engine_local import InlineEngine  # noqa: PLC0415

    from sir_membership import app  # noqa: PLC0415

    engine = InlineEngine(context, **options)
    monkeypatch.setattr(app, "ENGINE", engine)
    return engine
