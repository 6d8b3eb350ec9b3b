"""The guard through the real handler: which events are carried out, answered, or ignored.

Each test sends one event to ``app.handler`` with security-ir stubbed (any
call the test did not queue fails it) and DynamoDB from moto, then checks
the PUTs the receiver got, the calls made and the log lines. The pure rules
(URL origins, patterns, event shapes) are checked directly at the end.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from conftest import (
    MEMBERSHIP_ID,
    SECRET_EMAILS,
    SECRET_MEMBERSHIP_NAME,
    SECRET_NAMES,
    SECRET_TITLES,
    function_table,
    get_membership,
    props,
)
from moto import mock_aws
from receiver import Receiver
from test_app import context

from sir_membership import app, guard, tasks
from sir_membership.response import contract_problems

EVENTS = Path(__file__).parent.parent / "events"
TABLE = "sir-membership-idempotency-test"
ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture
def cfn() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with mock_aws():
        yield function_table(monkeypatch, TABLE)


@pytest.fixture
def sir(dynamodb: Any) -> Iterator[Stubber]:
    """security-ir with nothing queued unless a test queues it: any other call fails."""
    with Stubber(tasks.security_ir()) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every JSON line the function logs, at DEBUG (crhelper and botocore at their floors)."""
    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setFormatter(app.logger.registered_formatter)
    app.logger.addHandler(capture)
    app.logger.setLevel("DEBUG")
    app._configure_logging()
    try:
        yield buffer
    finally:
        app.logger.removeHandler(capture)
        app.logger.setLevel("INFO")
        app._configure_logging()


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def stack_id(name: str = "demo", account: str = ACCOUNT, region: str = REGION) -> str:
    return f"arn:aws:cloudformation:{region}:{account}:stack/{name}/{uuid.uuid4()}"


def event(request_type: str, receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    name = {"Create": "create", "Update": "update", "Delete": "delete"}[request_type]
    raw = json.loads((EVENTS / f"{name}.json").read_text())
    raw.update(ResponseURL=receiver.url, RequestId=str(uuid.uuid4()), StackId=stack_id())
    raw.update(overrides)
    return raw


def no_record_written(dynamodb: Any) -> bool:
    return dynamodb.scan(TableName=TABLE)["Count"] == 0


def the_answer(receiver: Receiver, sent: dict[str, Any]) -> dict[str, Any]:
    assert len(receiver.bodies) == 1, f"expected one answer, got {len(receiver.bodies)}"
    assert contract_problems(sent, receiver.bodies[0]) == []
    return receiver.bodies[0]


# --- where answers go ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        # A forged host: the answer (membership ARN, account, status) would go to it.
        "https://attacker.example/cfn?X-Amz-Signature=forged-signature",
        # CloudFormation's host over plain http (the default allows https only).
        "http://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?X-Amz-Signature=s",
        # Look-alikes of the default patterns.
        "https://s3.amazonaws.com.attacker.example/x?X-Amz-Signature=s",
        "https://amazonaws.com@attacker.example/x?X-Amz-Signature=s",
        "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com:8443/x?X-Amz-Signature=s",
        "file:///etc/passwd",
        # Hosts under amazonaws.com that anyone can own (review R8): a bucket, an API.
        "https://attacker-bucket.s3.amazonaws.com/x?X-Amz-Signature=s",
        "https://attacker-bucket.s3.us-east-1.amazonaws.com/x?X-Amz-Signature=s",
        "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/x?X-Amz-Signature=s",
        # CloudFormation's response bucket of another region.
        "https://cloudformation-custom-resource-response-uswest2.s3.us-west-2.amazonaws.com/x?X-Amz-Signature=s",
    ],
    ids=[
        "forged-host",
        "http",
        "suffix-lookalike",
        "userinfo",
        "other-port",
        "file",
        "any-bucket",
        "any-bucket-regional",
        "api-gateway",
        "other-region",
    ],
)
def test_a_url_outside_the_default_patterns_gets_no_call_no_put_one_error_line(
    url: str,
    sir: Stubber,
    dynamodb: Any,
    cfn: Receiver,
    logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RESPONSE_URL_PATTERNS")  # the deployed default
    sent = event("Create", cfn, ResponseURL=url)
    app.handler(sent, context())  # the Stubber fails the test on any security-ir call
    assert cfn.bodies == []
    assert no_record_written(dynamodb)
    errors = [line for line in lines(logs) if line["level"] == "ERROR"]
    assert len(errors) == 1
    logged = logs.getvalue()
    assert "X-Amz-Signature" not in logged
    assert "/x?" not in logged
    assert "/cfn" not in logged
    assert "passwd" not in logged


def test_the_error_line_names_the_host_and_nothing_of_the_path(
    sir: Stubber, cfn: Receiver, logs: io.StringIO
) -> None:
    sent = event("Create", cfn)
    sent["ResponseURL"] = "https://attacker.example/stack%2Fdemo?X-Amz-Signature=topsecret"
    app.handler(sent, context())
    (error,) = [line for line in lines(logs) if line["level"] == "ERROR"]
    assert error["host"] == "attacker.example"
    assert error["message"] == (
        "not answering: the ResponseURL's host matches none of RESPONSE_URL_PATTERNS"
    )
    assert error["correlation_id"] == sent["RequestId"]
    assert "topsecret" not in logs.getvalue()
    assert "stack%2Fdemo" not in logs.getvalue()
    assert cfn.bodies == []


def test_a_url_matching_the_configured_pattern_is_answered(
    sir: Stubber, cfn: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same receiver under another name (localhost) is refused; its own pattern is not."""
    port = cfn.server.server_address[1]
    forged = event("Delete", cfn, ResponseURL=f"http://localhost:{port}/forged?sig=1")
    app.handler(forged, context())
    assert cfn.bodies == [], "localhost does not match http://127.0.0.1:*"
    monkeypatch.setenv("RESPONSE_URL_PATTERNS", "https://*.example.com, http://localhost:*")
    app.handler(forged, context())
    assert cfn.paths == ["/forged?sig=1"]
    assert cfn.bodies[0]["Status"] == "SUCCESS"


def test_the_default_accepts_cloudformations_urls_of_the_functions_region() -> None:
    """The full table of forms is in test_response_bucket.py."""
    policy = guard.Policy.from_environ({"AWS_REGION": REGION})
    for url in (
        json.loads((EVENTS / "create.json").read_text())["ResponseURL"],
        "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com:443/a",
    ):
        assert policy.admits(url), url
    china = guard.Policy.from_environ({"AWS_REGION": "cn-north-1"})
    assert china.admits(
        "https://cloudformation-custom-resource-response-cnnorth1.s3.cn-north-1.amazonaws.com.cn/a?b=c"
    )
    assert policy.stack_patterns == ("*",)


def test_the_default_refusal_names_the_bucket_and_the_host(
    sir: Stubber, cfn: Receiver, logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESPONSE_URL_PATTERNS")  # the deployed default
    sent = event("Create", cfn)
    sent["ResponseURL"] = (
        "https://attacker-bucket.s3.amazonaws.com/stack%2Fdemo?X-Amz-Signature=s3cr"
    )
    app.handler(sent, context())
    (error,) = [line for line in lines(logs) if line["level"] == "ERROR"]
    assert error["message"] == (
        "not answering: the ResponseURL is not CloudFormation's response bucket "
        "cloudformation-custom-resource-response-useast1 (us-east-1) over https"
    )
    assert error["host"] == "attacker-bucket.s3.amazonaws.com"
    assert "s3cr" not in logs.getvalue()
    assert cfn.bodies == []


def test_without_aws_region_nothing_is_answered(
    sir: Stubber, cfn: Receiver, logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESPONSE_URL_PATTERNS")
    monkeypatch.delenv("AWS_REGION")
    sent = event("Delete", cfn)
    sent["ResponseURL"] = json.loads((EVENTS / "delete.json").read_text())["ResponseURL"]
    app.handler(sent, context())
    (error,) = [line for line in lines(logs) if line["level"] == "ERROR"]
    assert error["message"] == (
        "not answering: AWS_REGION is not set to a region, so no ResponseURL is known to be "
        "CloudFormation's"
    )


def test_an_empty_url_pattern_list_answers_nothing(
    sir: Stubber, cfn: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESPONSE_URL_PATTERNS", " , ")
    app.handler(event("Delete", cfn), context())
    assert cfn.bodies == []


# --- who may use the provider ------------------------------------------------------


def test_a_stack_outside_allowed_stack_names_fails_before_any_call(
    sir: Stubber, dynamodb: Any, cfn: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOWED_STACK_NAMES", "sir-membership-*, security-baseline")
    sent = event("Create", cfn, StackId=stack_id("team-sandbox"))
    app.handler(sent, context())
    body = the_answer(cfn, sent)
    assert body["Status"] == "FAILED"
    assert body["Reason"] == (
        "Stack team-sandbox may not use this provider: its name matches none of the provider "
        "stack's AllowedStackNames (sir-membership-*,security-baseline); update the provider "
        "stack with a pattern that matches it (e.g. "
        "AllowedStackNames=sir-membership-*,security-baseline,team-sandbox), deploy this stack "
        "under a name that matches, or use a provider that serves it"
    )
    assert body["PhysicalResourceId"] == f"Membership-failed-{sent['RequestId']}"
    assert no_record_written(dynamodb)


def test_a_matching_stack_is_served(
    sir: Stubber, cfn: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOWED_STACK_NAMES", "sir-membership-*, security-baseline")
    sent = event(
        "Create",
        cfn,
        StackId=stack_id("sir-membership-prod"),
        ResourceProperties=props(OrganizationalUnits=None),
    )
    sir.add_response("get_membership", get_membership(), {"membershipId": MEMBERSHIP_ID})
    app.handler(sent, context())
    assert the_answer(cfn, sent)["Status"] == "SUCCESS"


def test_a_disallowed_stack_cannot_delete_either(
    sir: Stubber, cfn: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Delete with RemoveOrganizationalUnits writes, so it is refused too (no call queued)."""
    monkeypatch.setenv("ALLOWED_STACK_NAMES", "prod-*")
    sent = event(
        "Delete",
        cfn,
        StackId=stack_id("dev-1"),
        ResourceProperties=props(OnDelete="RemoveOrganizationalUnits"),
    )
    app.handler(sent, context())
    body = the_answer(cfn, sent)
    assert body["Status"] == "FAILED"
    assert body["PhysicalResourceId"] == sent["PhysicalResourceId"]
    assert "AllowedStackNames (prod-*)" in body["Reason"]


@pytest.mark.parametrize(("account", "region"), [("210987654321", REGION), (ACCOUNT, "eu-west-1")])
def test_a_stack_in_another_account_or_region_fails_before_any_call(
    account: str, region: str, sir: Stubber, dynamodb: Any, cfn: Receiver
) -> None:
    sent = event("Update", cfn, StackId=stack_id("demo", account, region))
    app.handler(sent, context())
    body = the_answer(cfn, sent)
    assert body["Status"] == "FAILED"
    assert body["Reason"] == (
        f"Stack demo is in account {account} ({region}), but this provider serves only its "
        f"own account {ACCOUNT} ({REGION}): deploy a provider in that account and region and "
        "use its ServiceToken"
    )
    assert body["PhysicalResourceId"] == sent["PhysicalResourceId"]
    assert no_record_written(dynamodb)


def test_an_unreadable_function_arn_fails_closed(sir: Stubber, cfn: Receiver) -> None:
    sent = event("Create", cfn)
    ctx = context()
    ctx.invoked_function_arn = "not-an-arn"
    app.handler(sent, ctx)
    assert the_answer(cfn, sent)["Reason"].startswith("The function cannot read its own ARN")


def test_an_alias_or_version_arn_is_the_functions_own() -> None:
    ok = guard.screen(
        {**json.loads((EVENTS / "create.json").read_text())},
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sir:live",
        guard.Policy.from_environ({"AWS_REGION": REGION}),
    )
    assert isinstance(ok, guard.Accepted)


# --- events that are not CloudFormation's ------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"RequestType": "Frobnicate"},
            "Unsupported RequestType Frobnicate: CloudFormation sends Create, Update or Delete",
        ),
        (
            {"RequestType": "Alice Example"},
            "Unsupported RequestType (unreadable): CloudFormation sends Create, Update or Delete",
        ),
        ({"RequestType": 7}, "Malformed request: RequestType must be a string, not a number"),
        ({"RequestType": None}, "Malformed request: RequestType is missing"),
        (
            {"ResourceProperties": "x"},
            "Malformed request: ResourceProperties must be an object, not a string",
        ),
        (
            {"ResourceProperties": [1]},
            "Malformed request: ResourceProperties must be an object, not an array",
        ),
        (
            {"ResourceProperties": None},
            "Malformed request: ResourceProperties must be an object, not null",
        ),
        ({"StackId": {"a": 1}}, "Malformed request: StackId is not a CloudFormation stack ARN"),
        (
            {"LogicalResourceId": "Has Space"},
            "Malformed request: LogicalResourceId is not an alphanumeric logical id",
        ),
        ({"RequestId": True}, "Malformed request: RequestId is not CloudFormation's request id"),
        ({"ServiceToken": 5}, "Malformed request: ServiceToken must be a string, not a number"),
        (
            {"OldResourceProperties": "{}"},
            "Malformed request: OldResourceProperties must be an object, not a string",
        ),
    ],
)
def test_a_malformed_event_fails_with_a_one_line_reason_and_no_write(
    change: dict[str, Any], reason: str, sir: Stubber, dynamodb: Any, cfn: Receiver
) -> None:
    sent = event("Create", cfn)
    sent.update(change)
    if change.get("RequestType", "") is None:
        del sent["RequestType"]
    app.handler(sent, context())
    assert len(cfn.bodies) == 1
    body = cfn.bodies[0]
    assert body["Status"] == "FAILED"
    assert body["Reason"] == reason
    assert "\n" not in body["Reason"]
    assert "_Resource" not in body["Reason"]
    assert no_record_written(dynamodb)


@pytest.mark.parametrize(
    ("request_type", "missing"),
    [
        ("Create", "ResourceProperties"),
        ("Update", "PhysicalResourceId"),
        ("Update", "OldResourceProperties"),
        ("Delete", "PhysicalResourceId"),
        ("Delete", "StackId"),
    ],
)
def test_a_missing_key_is_named(
    request_type: str, missing: str, sir: Stubber, dynamodb: Any, cfn: Receiver
) -> None:
    sent = event(request_type, cfn)
    del sent[missing]
    app.handler(sent, context())
    assert [b["Reason"] for b in cfn.bodies] == [f"Malformed request: {missing} is missing"]
    assert no_record_written(dynamodb)


def test_an_unknown_request_type_keeps_the_echo_so_cloudformation_takes_the_answer(
    sir: Stubber, cfn: Receiver
) -> None:
    sent = event("Update", cfn, RequestType="Frobnicate")
    app.handler(sent, context())
    body = cfn.bodies[0]
    assert {k: body[k] for k in ("StackId", "RequestId", "LogicalResourceId")} == {
        k: sent[k] for k in ("StackId", "RequestId", "LogicalResourceId")
    }
    assert body["PhysicalResourceId"] == f"Membership-failed-{sent['RequestId']}"


def test_crhelpers_own_keys_are_dropped(sir: Stubber, cfn: Receiver) -> None:
    """``CrHelperData`` would otherwise become the answer's Data (a forged GetAtt)."""
    sent = event("Delete", cfn, CrHelperData={"MembershipArn": "forged"}, CrHelperPoll=True)
    app.handler(sent, context())
    body = the_answer(cfn, sent)
    assert body["Status"] == "SUCCESS"
    assert body["Data"] == {}


def test_an_event_that_is_not_an_object_is_ignored(
    sir: Stubber, cfn: Receiver, logs: io.StringIO
) -> None:
    for raw in ([1, 2], "Create", None, 3):
        app.handler(raw, context())  # type: ignore[arg-type]
    assert cfn.bodies == []
    messages = [line["message"] for line in lines(logs) if line["level"] == "ERROR"]
    assert messages == ["not answering: the event is not a JSON object"] * 4


def test_refusals_log_no_sensitive_value_at_debug(
    sir: Stubber,
    cfn: Receiver,
    logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level("DEBUG")
    monkeypatch.setenv("ALLOWED_STACK_NAMES", "prod-*")
    app.handler(event("Create", cfn, RequestType="Frobnicate"), context())
    app.handler(event("Create", cfn, StackId=stack_id(account="210987654321")), context())
    app.handler(event("Create", cfn), context())
    forged = event("Create", cfn)
    forged["ResponseURL"] = "https://attacker.example/p?X-Amz-Signature=topsecret"
    app.handler(forged, context())
    for sent in (event("Create", cfn),):
        sent["ResourceProperties"] = props(
            MembershipName=SECRET_MEMBERSHIP_NAME,
            IncidentResponseTeam=[
                {"Name": SECRET_NAMES[0], "Email": SECRET_EMAILS[0], "JobTitle": SECRET_TITLES[0]}
            ],
        )
        app.handler(sent, context())
    assert len(cfn.bodies) == 4
    warnings = [line for line in lines(logs) if line["message"] == "refused"]
    assert [w["errorType"] for w in warnings] == ["MalformedRequest", *["RequestNotAllowed"] * 3]
    text = (
        logs.getvalue()
        + caplog.text
        + json.dumps([r.__dict__ for r in caplog.records], default=str)
    )
    for secret in (
        *SECRET_NAMES,
        *SECRET_EMAILS,
        *SECRET_TITLES,
        SECRET_MEMBERSHIP_NAME,
        "secret-signature",
        "topsecret",
        cfn.url,
    ):
        assert secret not in text


# --- the pure rules ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://b.s3.amazonaws.com/p?q=1", "https://b.s3.amazonaws.com"),
        ("HTTPS://B.S3.AmazonAWS.com:443/p", "https://b.s3.amazonaws.com"),
        ("http://127.0.0.1:8080/p", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:80/p", "http://127.0.0.1"),
        ("https://[::1]:8443/p", "https://[::1]:8443"),
        ("ftp://b.s3.amazonaws.com/p", None),
        ("https://user@b.s3.amazonaws.com/p", None),
        ("https://b.s3.amazonaws.com:99999/p", None),
        ("https://b .s3.amazonaws.com/p", None),
        ("https://b.s3.amazonaws.com/p\n", None),
        ("https://bücher.amazonaws.com/p", None),
        ("https:///p", None),
        ("https://-b.amazonaws.com/p", None),
        ("https://a..amazonaws.com/p", None),
        ("", None),
        (42, None),
    ],
)
def test_response_origin(url: object, origin: str | None) -> None:
    assert guard.response_origin(url) == origin


def test_patterns_match_the_whole_origin_not_a_prefix() -> None:
    patterns = ("https://*.example.com",)
    assert guard.url_allowed("https://x.example.com/a", patterns)
    assert not guard.url_allowed("https://example.com/a", patterns)
    assert not guard.url_allowed("https://xexample.com/a", patterns)
    assert not guard.url_allowed("https://x.example.com.evil/a", patterns)
    assert not guard.url_allowed("https://evil/x.example.com", patterns)
    assert not guard.url_allowed("https://evil#.example.com", patterns)
    assert not guard.url_allowed("https://evil?.example.com", patterns)


def test_policy_from_environ() -> None:
    policy = guard.Policy.from_environ(
        {"RESPONSE_URL_PATTERNS": " HTTPS://*.Example.com ,,", "ALLOWED_STACK_NAMES": "a-*, B"}
    )
    assert policy.url_patterns == ("https://*.example.com",)
    assert policy.stack_patterns == ("a-*", "B")
    assert guard.Policy.from_environ({"ALLOWED_STACK_NAMES": ""}).stack_patterns == ()


def policy(stack_patterns: tuple[str, ...]) -> guard.Policy:
    """The deployed policy of a function in REGION, with these AllowedStackNames."""
    deployed = guard.Policy.from_environ({"AWS_REGION": REGION})
    return dataclasses.replace(deployed, stack_patterns=stack_patterns)


def test_stack_names_are_matched_case_sensitively() -> None:
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sir"
    sent = json.loads((EVENTS / "create.json").read_text())
    verdict = guard.screen(sent, arn, policy(("Demo",)))
    assert isinstance(verdict, guard.Refused)
    assert isinstance(guard.screen(sent, arn, policy(("d?mo",))), guard.Accepted)


def test_an_empty_allowed_stack_names_serves_no_stack() -> None:
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sir"
    sent = json.loads((EVENTS / "create.json").read_text())
    verdict = guard.screen(sent, arn, policy(()))
    assert isinstance(verdict, guard.Refused)
    assert "AllowedStackNames ((empty))" in verdict.error.reason


# --- moving to a new provider (docs/deploy.md "The ServiceToken is permanent") ------


def test_a_new_logical_id_on_a_new_provider_adopts_the_membership_without_a_write(
    sir: Stubber, cfn: Receiver
) -> None:
    """Step 3 of the move: the new resource's Create reads and, declaration unchanged, writes nothing."""
    declared = props()
    sent = event(
        "Create",
        cfn,
        LogicalResourceId="MembershipV2",
        ServiceToken=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sir-membership-provider-v2",
        ResourceProperties=declared,
    )
    sir.add_response("get_membership", get_membership(), {"membershipId": MEMBERSHIP_ID})
    app.handler(sent, context())  # an UpdateMembership call would fail the Stubber
    body = the_answer(cfn, sent)
    assert body["Status"] == "SUCCESS"
    assert body["PhysicalResourceId"] == MEMBERSHIP_ID


@pytest.mark.parametrize(
    "marker",
    [{"Token": "a" * 32, "Invocation": 2}, {"Token": "forged"}, "a" * 32],
)
def test_the_previous_releases_continuation_marker_is_dropped(marker: object) -> None:
    """Upgrade in flight: a continuation of the previous release is the request itself again.

    The marker is not CloudFormation's, so it is dropped: the event is a
    duplicate delivery of its request, which joins (or starts) the request's
    execution; no token is trusted, none is needed.
    """
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sir"
    sent = json.loads((EVENTS / "create.json").read_text())
    plain = guard.screen(copy.deepcopy(sent), arn, policy(("*",)))
    sent["SirMembershipContinuation"] = marker
    verdict = guard.screen(sent, arn, policy(("*",)))
    assert isinstance(verdict, guard.Accepted)
    assert isinstance(plain, guard.Accepted)
    assert verdict.event == plain.event
    assert "SirMembershipContinuation" not in verdict.event
