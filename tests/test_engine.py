"""``Engine`` on moto's Step Functions: one execution per request, stops that never fail.

The execution's input is the request's keys only (no ResponseURL, no
property value); a duplicate start joins; a stop of an execution that ended
or never existed is not an error; a refusal names the permission.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from sir_membership.engine import Engine, execution_input
from sir_membership.errors import EngineUnavailable
from sir_membership.request_record import RequestKeys

REGION, ACCOUNT = "us-east-1", "123456789012"
STACK = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/security-ir/5b6f1c20-3e4d-11ef-9a1b-0e7c3f2a9d41"
KEYS = RequestKeys(STACK, "Membership", "11111111-2222-3333-4444-555555555555")
DEFINITION = json.dumps(
    {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 600, "End": True}}}
)


@contextlib.contextmanager
def _engine() -> Iterator[tuple[Engine, Any]]:
    with mock_aws():
        import boto3  # noqa: PLC0415

        client = boto3.client("stepfunctions", region_name=REGION)
        arn = client.create_state_machine(
            name="sir-membership",
            definition=DEFINITION,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/states",
        )["stateMachineArn"]
        yield Engine(client, arn), client


def test_the_execution_is_named_after_the_request_and_carries_only_its_keys() -> None:
    with _engine() as (engine, client):
        assert engine.start(KEYS) is True
        execution = client.describe_execution(executionArn=engine.execution_arn(KEYS))
        assert execution["name"] == KEYS.execution_name
        assert json.loads(execution["input"]) == {
            "request": KEYS.to_input(),
            "work": {"step": 0, "next": "work", "seconds": 0},
        }
        assert "ResponseURL" not in execution["input"]


def test_a_duplicate_start_joins_the_running_execution() -> None:
    with _engine() as (engine, client):
        engine.start(KEYS)
        refused = ClientError(
            {"Error": {"Code": "ExecutionAlreadyExists", "Message": "exists"}}, "StartExecution"
        )
        # moto returns the same execution for the same name and input, as AWS does;
        # ministack refuses it: both mean "joined".
        engine.start(KEYS)
        with mock.patch.object(client, "start_execution", side_effect=refused):
            assert engine.start(KEYS) is False
        listed = client.list_executions(stateMachineArn=engine.state_machine_arn)["executions"]
        assert [e["name"] for e in listed] == [KEYS.execution_name]


def test_stopping_a_superseded_execution_is_best_effort() -> None:
    with _engine() as (engine, client):
        engine.start(KEYS)
        engine.stop(KEYS)
        status = client.describe_execution(executionArn=engine.execution_arn(KEYS))["status"]
        assert status == "ABORTED"
        engine.stop(KEYS)  # already ended: not an error
        engine.stop(RequestKeys(STACK, "Membership", "never-started"))  # never existed


def test_a_refused_start_names_the_permission_and_says_nothing_changed() -> None:
    with _engine() as (engine, client):
        denied = ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "StartExecution"
        )
        with (
            mock.patch.object(client, "start_execution", side_effect=denied),
            pytest.raises(EngineUnavailable) as raised,
        ):
            engine.start(KEYS)
        assert raised.value.reason == (
            "Could not start the change's execution (AccessDeniedException): allow "
            "states:StartExecution on the provider's state machine in the function's role. "
            "Nothing was changed"
        )


def test_without_a_state_machine_nothing_starts() -> None:
    with _engine() as (_, client):
        with pytest.raises(EngineUnavailable) as raised:
            Engine(client, "").start(KEYS)
        assert "STATE_MACHINE_ARN is not set" in raised.value.reason


def test_the_input_is_identical_on_every_delivery() -> None:
    assert execution_input(KEYS) == execution_input(RequestKeys(*KEYS.to_input().values()))
