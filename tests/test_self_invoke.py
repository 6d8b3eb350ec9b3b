"""The shell's hand-off: one asynchronous Invoke of the function itself, errors named."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import ANY, Stubber
from sir_membership.continuation import Continuation, HandedOff, Stopped

from sir_membership import self_invoke
from sir_membership.errors import ContinuationFailed
from sir_membership.response import Answer

ARN = "arn:aws:lambda:us-east-1:123456789012:function:sir"
EVENT = {"RequestType": "Update", "RequestId": "r", "ResponseURL": "https://x.amazonaws.com/p"}


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Any:
    client = boto3.client(
        "lambda",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )
    monkeypatch.setattr(self_invoke, "lambda_client", lambda: client)
    with Stubber(client) as stubber:
        yield stubber


def test_the_next_invocation_is_an_event_invoke_of_the_function_itself(stub: Stubber) -> None:
    sent: list[bool] = []
    stub.add_response(
        "invoke",
        {"StatusCode": 202},
        {"FunctionName": ARN, "InvocationType": "Event", "Payload": ANY},
    )
    self_invoke.invoker(EVENT, ARN, lambda: sent.append(True))(Continuation("b" * 32, 3))
    stub.assert_no_pending_responses()
    assert sent == [True]


def test_the_payload_is_the_event_with_the_marker() -> None:
    marked = Continuation("b" * 32, 3).on(EVENT)
    assert json.loads(json.dumps(marked)) == {
        **EVENT,
        "SirMembershipContinuation": {"Token": "b" * 32, "Invocation": 3},
    }


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (
            "AccessDeniedException",
            "allow lambda:InvokeFunction on the function's own ARN in its role",
        ),
        ("TooManyRequestsException", "retry the stack operation"),
    ],
)
def test_a_refused_invoke_is_a_named_failure_and_nothing_is_marked_sent(
    stub: Stubber, code: str, hint: str
) -> None:
    sent: list[bool] = []
    stub.add_client_error("invoke", code, http_status_code=403)
    with pytest.raises(ContinuationFailed) as info:
        self_invoke.invoker(EVENT, ARN, lambda: sent.append(True))(Continuation("b" * 32, 2))
    assert str(info.value) == (
        f"the function could not continue in a new invocation of itself ({code}): {hint}"
    )
    assert sent == []


def test_a_deny_by_a_service_control_policy_says_to_check_the_scps(stub: Stubber) -> None:
    """The role allows lambda:InvokeFunction; telling to allow it there would mislead."""
    stub.add_client_error(
        "invoke",
        "AccessDeniedException",
        f"User: arn:aws:sts::123456789012:assumed-role/r/s is not authorized to perform: "
        f"lambda:InvokeFunction on resource: {ARN} with an explicit deny in a service control "
        "policy",
        http_status_code=403,
    )
    with pytest.raises(ContinuationFailed) as info:
        self_invoke.invoker(EVENT, ARN, lambda: None)(Continuation("b" * 32, 2))
    assert str(info.value) == (
        "the function could not continue in a new invocation of itself (AccessDeniedException "
        "with an explicit deny in a service control policy): check the service control "
        f"policies of AWS Organizations that apply to account {ARN.split(':')[4]} (on the "
        "account, its OUs and the root) for a Deny of lambda:InvokeFunction"
    )


def test_the_idempotency_record_keeps_every_outcome() -> None:
    serializer = self_invoke.OutcomeSerializer()
    for outcome in (
        Answer.success("m-1", {"MembershipId": "m-1"}),
        Answer.failed("p", "why"),
        HandedOff("c" * 32, 2),
        Stopped("already answered"),
    ):
        assert serializer.from_dict(json.loads(json.dumps(serializer.to_dict(outcome)))) == outcome
