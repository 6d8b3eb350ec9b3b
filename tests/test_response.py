"""The answer to CloudFormation: body contract, size limit, and delivery."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from receiver import Receiver

from sir_membership.response import (
    MAX_BODY_BYTES,
    Answer,
    DeliveryPolicy,
    ResponseSender,
    build_body,
    contract_problems,
    encode,
)

EVENT = {"StackId": "arn:stack/s/1", "RequestId": "r-1", "LogicalResourceId": "Membership"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def fast(**kw: float) -> DeliveryPolicy:
    return DeliveryPolicy(**{"attempt_timeout": 1.0, "base_delay": 0.01, "max_delay": 0.02, **kw})  # type: ignore[arg-type]


def test_success_body_echoes_ids_and_carries_data() -> None:
    body = build_body(EVENT, Answer.success("m-abcdef0123", {"MembershipId": "m-abcdef0123"}))
    assert body == {
        "Status": "SUCCESS",
        "Reason": "",
        "PhysicalResourceId": "m-abcdef0123",
        "StackId": "arn:stack/s/1",
        "RequestId": "r-1",
        "LogicalResourceId": "Membership",
        "NoEcho": False,
        "Data": {"MembershipId": "m-abcdef0123"},
    }
    assert contract_problems(EVENT, body) == []


def test_long_reason_is_truncated_to_fit_4096_bytes() -> None:
    body = build_body(EVENT, Answer.failed("p", "x" * 10_000))
    assert len(encode(body)) <= MAX_BODY_BYTES
    assert body["Reason"].endswith(" [truncated]")
    assert contract_problems(EVENT, body) == []


def test_non_ascii_reason_is_cut_by_bytes_not_replaced_by_a_generic_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Case 7 of the journal issue: 1,000 OU ids pasted with en-dashes."""
    reason = "unknown OUs: " + ", ".join(f"ou\u2013ab12\u2013{i:08d}" for i in range(1000))
    with caplog.at_level("WARNING", logger="sir_membership.response"):
        body = build_body(EVENT, Answer.failed("p", reason))
    assert len(encode(body)) <= MAX_BODY_BYTES
    assert body["Reason"].startswith("unknown OUs: ou\u2013ab12\u201300000000")
    assert body["Reason"].endswith(" [truncated]")
    # The cut is the longest that fits: one more character would not.
    kept = len(body["Reason"]) - len(" [truncated]")
    longer = {**body, "Reason": reason[: kept + 1] + " [truncated]"}
    assert len(encode(longer)) > MAX_BODY_BYTES
    assert [r.reason for r in caplog.records if hasattr(r, "reason")] == [reason]


@given(
    st.text(min_size=0, max_size=3000),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=300),
)
@settings(max_examples=200, deadline=None)
def test_any_reason_fits_and_keeps_its_longest_prefix(reason: str, logical: str) -> None:
    event = {**EVENT, "LogicalResourceId": logical}
    body = build_body(event, Answer.failed("p", reason or "x"))
    assert len(encode(body)) <= MAX_BODY_BYTES
    sent = body["Reason"]
    assert sent
    if sent != (reason or "x"):
        assert sent.endswith(" [truncated]") or sent == "Failed (see the function's logs)"


def test_contract_problems_are_detected() -> None:
    bad = {
        "Status": "FAILED",
        "PhysicalResourceId": "",
        "StackId": "other",
        "Reason": "",
        "Data": {"a": 1},
    }
    assert contract_problems(EVENT, bad) == [
        "StackId not echoed",
        "RequestId not echoed",
        "LogicalResourceId not echoed",
        "PhysicalResourceId is empty",
        "FAILED without a Reason",
        "Data values must be strings",
    ]
    too_big = contract_problems(EVENT, {**bad, "Reason": "y" * 5000})
    assert any("over 4096" in problem for problem in too_big)


def test_failed_answer_always_has_a_reason() -> None:
    assert build_body(EVENT, Answer.failed("p", ""))["Reason"]


def test_delivery_sends_empty_content_type(receiver: Receiver) -> None:
    body = build_body(EVENT, Answer.success("m-abcdef0123", {}))
    assert ResponseSender(fast()).send(receiver.url, body)
    assert receiver.bodies == [body]
    assert receiver.headers[0]["content-type"] == ""


@pytest.mark.parametrize("status", [500, 503, 429])
def test_5xx_and_429_are_retried(receiver: Receiver, status: int) -> None:
    receiver.statuses = [status, status]
    body = build_body(EVENT, Answer.success("m-abcdef0123", {}))
    sleeps: list[float] = []
    assert ResponseSender(fast(), sleep=sleeps.append).send(receiver.url, body)
    assert receiver.bodies == [body]
    assert len(sleeps) == 2


def test_4xx_is_not_delivered_and_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [403, 200]
    body = build_body(EVENT, Answer.success("m-abcdef0123", {}))
    assert not ResponseSender(fast()).send(receiver.url, body)
    assert receiver.bodies == []
    assert receiver.statuses == [200], "exactly one attempt was made"


def test_network_errors_are_retried_then_given_up() -> None:
    sleeps: list[float] = []
    sender = ResponseSender(fast(attempts=3), sleep=sleeps.append)
    assert not sender.send("http://127.0.0.1:9/unreachable", {"Status": "SUCCESS"})
    assert len(sleeps) == 2


def test_each_attempt_has_a_timeout(receiver: Receiver) -> None:
    receiver.hang_seconds = 1.0
    sender = ResponseSender(fast(attempt_timeout=0.2, attempts=1))
    assert not sender.send(receiver.url, {"Status": "SUCCESS"})


def test_no_retry_when_the_invocation_is_out_of_time(receiver: Receiver) -> None:
    receiver.statuses = [500, 200]
    sender = ResponseSender(fast(), remaining=lambda: 0.5)
    assert not sender.send(receiver.url, {"Status": "SUCCESS"})


def test_the_url_is_never_logged(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    receiver.statuses = [500]
    ResponseSender(fast(), sleep=lambda _: None).send(receiver.url, {"Status": "SUCCESS"})
    ResponseSender(fast(attempts=1)).send("http://127.0.0.1:9/x?X-Amz-Signature=s3cr3t", {})
    text = caplog.text + json.dumps([r.__dict__ for r in caplog.records], default=str)
    assert "secret-signature" not in text
    assert "s3cr3t" not in text
