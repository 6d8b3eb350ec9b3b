"""The fake Lambda Invoke endpoint, driven by botocore's own ``lambda`` client.

The workers run ``async_handlers.handler`` (next to this file), not the
provider: these tests are about the endpoint and the driver's waiting.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config
from sirlocal.driver import (
    NO_RESPONSE_REASON,
    REPO_ROOT,
    ContractViolation,
    LambdaWorker,
    NoResponse,
    StackDriver,
    cfn_properties,
    service_timeout,
    worker_env,
)
from sirlocal.lambda_api import AsyncInvocation, LambdaAPI, request_id_of
from sirlocal.receiver import ResponseReceiver
from sirlocal.scenarios import Fault

HERE = Path(__file__).resolve().parent
HANDLER = "async_handlers.handler"
DELAYS = (0.2, 0.4)


@pytest.fixture(scope="module")
def receiver() -> Iterator[ResponseReceiver]:
    with ResponseReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def env(receiver: ResponseReceiver) -> dict[str, str]:
    """A worker environment without moto or the emulator: the handler needs neither."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    base |= receiver.env() | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    path = os.pathsep.join(str(p) for p in (REPO_ROOT / "src", REPO_ROOT / "local", HERE))
    return worker_env(base, PYTHONPATH=path)


@pytest.fixture(scope="module")
def module_api() -> Iterator[LambdaAPI]:
    with LambdaAPI() as running:
        yield running


@pytest.fixture
def api(module_api: LambdaAPI, env: dict[str, str], receiver: ResponseReceiver) -> LambdaAPI:
    """Configured with the test handler, a 5 s timeout and short retry delays; reset."""
    module_api.reset()
    receiver.reset()
    module_api.configure(
        env=env | module_api.env(),
        timeout=5,
        handler=HANDLER,
        max_retries=2,
        retry_delays=DELAYS,
    )
    return module_api


def client(api: LambdaAPI) -> Any:
    """botocore's lambda client, retries off so each fault is seen as sent."""
    return boto3.client(
        "lambda",
        endpoint_url=api.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def invoke(api: LambdaAPI, event: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    args = {"FunctionName": api.function_arn, "InvocationType": "Event"} | kwargs
    return dict(client(api).invoke(Payload=json.dumps(event).encode(), **args))


def runs(out: Path) -> list[dict[str, Any]]:
    """The lines the handler wrote, one per invocation that ran."""
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines()]


def error_of(call: Any) -> tuple[str, int]:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


# --------------------------------------------------------------------------- the endpoint


def test_event_invocation_is_accepted_and_runs_on_a_fresh_worker(
    api: LambdaAPI, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    event = {"Mode": "record", "Out": str(out), "RequestId": "cfn-1"}
    first = invoke(api, event)
    second = invoke(api, event | {"RequestId": "cfn-2"})
    assert first["StatusCode"] == second["StatusCode"] == 202
    assert first["Payload"].read() == b""
    assert api.wait_idle(20)
    recorded = runs(out)
    assert sorted(r["event"]["RequestId"] for r in recorded) == ["cfn-1", "cfn-2"]
    assert len({r["pid"] for r in recorded}) == 2  # one new environment per event
    request_id = first["ResponseMetadata"]["RequestId"]
    assert request_id in {r["request_id"] for r in recorded}  # the context's aws_request_id
    [one] = api.invocations("cfn-1")
    assert (one.number, one.attempt, one.request_id, one.outcome) == (1, 1, request_id, "ok")
    assert one.cold
    assert one.event == event
    assert one.started is not None
    assert one.ended is not None
    assert one.accepted <= one.started <= one.ended
    assert [i.event["RequestId"] for i in api.invocations()] == ["cfn-1", "cfn-2"]
    assert f"START RequestId: {request_id}" in api.logs()  # kept after the worker closed


@pytest.mark.parametrize(
    "name",
    [
        "sir-membership-provider-MembershipFunction-LOCAL",
        "sir-membership-provider-MembershipFunction-LOCAL:$LATEST",
        "123456789012:function:sir-membership-provider-MembershipFunction-LOCAL",
        "arn:aws:lambda:us-east-1:123456789012:function:sir-membership-provider-MembershipFunction-LOCAL",
    ],
)
def test_the_function_is_found_by_name_or_arn(api: LambdaAPI, name: str) -> None:
    assert invoke(api, {"Mode": "record"}, FunctionName=name)["StatusCode"] == 202
    assert api.wait_idle(20)
    assert [i.outcome for i in api.invocations()] == ["ok"]


@pytest.mark.parametrize(
    "name",
    [
        "other-function",
        "sir-membership-provider-MembershipFunction-LOCAL:v1",
        "210987654321:function:sir-membership-provider-MembershipFunction-LOCAL",
        "arn:aws:lambda:eu-west-1:123456789012:function:sir-membership-provider-MembershipFunction-LOCAL",
    ],
)
def test_any_other_function_is_not_found(api: LambdaAPI, name: str) -> None:
    code, status = error_of(lambda: invoke(api, {"Mode": "record"}, FunctionName=name))
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert api.invocations() == []
    assert not api.busy()


@pytest.mark.parametrize("kind", ["RequestResponse", "DryRun"])
def test_only_event_invocations_are_served(api: LambdaAPI, kind: str) -> None:
    code, status = error_of(lambda: invoke(api, {"Mode": "record"}, InvocationType=kind))
    assert (code, status) == ("InvalidRequestContentException", 400)
    assert api.invocations() == []


def test_payload_limit_and_json_are_checked(api: LambdaAPI) -> None:
    big = {"Mode": "record", "Blob": "x" * (256 * 1024)}
    assert error_of(lambda: invoke(api, big)) == ("RequestEntityTooLargeException", 413)
    raw = lambda: client(api).invoke(  # noqa: E731
        FunctionName=api.function_name, InvocationType="Event", Payload=b"{not json"
    )
    assert error_of(raw) == ("InvalidRequestContentException", 400)
    assert api.invocations() == []


def test_an_unconfigured_endpoint_refuses(env: dict[str, str]) -> None:
    with LambdaAPI() as fresh:
        code, status = error_of(lambda: invoke(fresh, {"Mode": "record"}))
        assert (code, status) == ("ResourceNotReadyException", 502)
        fresh.configure(env=env, handler=HANDLER, timeout=5)
        assert invoke(fresh, {"Mode": "record"})["StatusCode"] == 202
        assert fresh.wait_idle(20)
        assert [i.outcome for i in fresh.invocations()] == ["ok"]


def test_fail_next_is_what_botocore_sees(api: LambdaAPI, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    api.fail_next(1)
    api.fail_next(1, "ServiceException", message="internal")
    event = {"Mode": "record", "Out": str(out)}
    assert error_of(lambda: invoke(api, event)) == ("TooManyRequestsException", 429)
    assert error_of(lambda: invoke(api, event)) == ("ServiceException", 500)
    assert invoke(api, event)["StatusCode"] == 202  # the faults are used up
    assert api.wait_idle(20)
    assert len(runs(out)) == 1


def test_a_failing_event_is_retried_twice_then_given_up(api: LambdaAPI, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    response = invoke(api, {"Mode": "raise", "Out": str(out), "RequestId": "cfn-r"})
    assert api.wait_idle(30)
    attempts = api.invocations("cfn-r")
    assert [(a.attempt, a.outcome) for a in attempts] == [
        (1, "RuntimeError"),
        (2, "RuntimeError"),
        (3, "RuntimeError"),
    ]
    request_id = response["ResponseMetadata"]["RequestId"]
    assert {a.request_id for a in attempts} == {request_id}  # Lambda keeps it across retries
    assert [r["request_id"] for r in runs(out)] == [request_id] * 3
    assert len({r["pid"] for r in runs(out)}) == 3
    pairs = list(itertools.pairwise(attempts))
    for (before, after), delay in zip(pairs, DELAYS, strict=True):
        assert before.ended is not None
        assert after.started is not None
        assert after.started - before.ended >= delay
    assert api.logs().count(f"[ERROR] RuntimeError (RequestId: {request_id})") == 3


def test_a_killed_invocation_is_retried(api: LambdaAPI, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    api.kill_next_after(0.3)
    invoke(api, {"Mode": "sleep", "Seconds": 1.0, "Out": str(out)})
    assert api.wait_idle(30)
    first, second = api.invocations()
    assert (first.outcome, second.outcome) == ("killed", "ok")
    assert first.started is not None
    assert first.ended is not None
    assert first.ended - first.started < 1.0
    assert len(runs(out)) == 2


def test_an_invocation_past_its_timeout_is_killed_and_retried(
    api: LambdaAPI, tmp_path: Path
) -> None:
    api.configure(timeout=0.5, max_retries=1)
    invoke(api, {"Mode": "sleep", "Seconds": 5})
    assert api.wait_idle(30)
    assert [(i.attempt, i.outcome) for i in api.invocations()] == [(1, "timeout"), (2, "timeout")]


def test_a_dropped_event_is_accepted_and_never_runs(api: LambdaAPI, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    api.drop_next()
    assert invoke(api, {"Mode": "record", "Out": str(out)})["StatusCode"] == 202
    assert not api.busy()
    [dropped] = api.invocations()
    assert (dropped.outcome, dropped.ran) == ("dropped", False)
    assert runs(out) == []


def test_busy_and_wait_idle(api: LambdaAPI) -> None:
    invoke(api, {"Mode": "sleep", "Seconds": 1.0, "RequestId": "cfn-b"})
    assert api.busy()
    assert api.busy("cfn-b")
    assert not api.busy("cfn-other")
    assert not api.wait_idle(0.1)
    assert api.wait_idle(20, request_id="cfn-b")
    assert not api.busy()


def test_reset_stops_running_and_pending_work(api: LambdaAPI, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    api.configure(retry_delays=(30.0,))
    invoke(api, {"Mode": "raise", "Out": str(out)})  # waits 30 s before its retry
    invoke(api, {"Mode": "sleep", "Seconds": 30, "Out": str(out)})
    deadline = time.monotonic() + 20
    while len(runs(out)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    began = time.monotonic()
    api.reset()
    assert time.monotonic() - began < 5
    assert not api.busy()
    assert (api.invocations(), api.logs()) == ([], "")
    assert len(runs(out)) == 2  # nothing ran again


def test_request_id_of_finds_the_cloudformation_request() -> None:
    assert request_id_of({"RequestId": "r", "ResponseURL": "u"}) == "r"
    assert request_id_of({"Event": {"RequestId": "r", "ResponseURL": "u"}, "Step": 2}) == "r"
    assert request_id_of({"Step": 2}) is None
    assert request_id_of(["RequestId"]) is None


def test_service_timeout_as_cloudformation_reads_it() -> None:
    assert service_timeout({"ResourceProperties": {"ServiceTimeout": "3"}}) == 3
    assert service_timeout({"ResourceProperties": {}}) == 3600
    assert service_timeout({"ResourceProperties": {"ServiceTimeout": "9999"}}) == 3600
    assert service_timeout({}) == 3600


# --------------------------------------------------------------------------- the driver


@pytest.fixture
def worker(api: LambdaAPI, env: dict[str, str]) -> Iterator[LambdaWorker]:
    """The function's first invocation, on a worker that can reach the endpoint."""
    with LambdaWorker(env | api.env(), timeout=5, handler=HANDLER, name="first") as started:
        yield started


def stack_for(
    api: LambdaAPI, receiver: ResponseReceiver, worker: LambdaWorker, **kwargs: Any
) -> StackDriver:
    return StackDriver(receiver, worker, stack_name="async", lambda_api=api, **kwargs)


def test_the_driver_waits_for_the_answer_of_a_continuation(
    api: LambdaAPI, receiver: ResponseReceiver, worker: LambdaWorker
) -> None:
    stack = stack_for(api, receiver, worker)
    operation = stack.create({"Mode": "continue"})
    assert operation.stack_status == "CREATE_COMPLETE"
    [delivery] = operation.deliveries
    assert delivery.answer is not None
    assert delivery.answer.data == {"Continued": "True"}  # the continuation answered
    assert delivery.invocation_count == 2
    [continuation] = delivery.async_invocations
    assert (continuation.attempt, continuation.outcome) == (1, "ok")
    assert continuation.event["RequestId"] == delivery.event["RequestId"]
    assert delivery.answer_seconds is not None
    assert delivery.answer_seconds > delivery.results[0].seconds
    assert delivery.answer_deadline == delivery.service_timeout == 600
    assert delivery.problems() == []


def test_no_answer_before_the_service_timeout_fails_the_resource(
    api: LambdaAPI, receiver: ResponseReceiver, worker: LambdaWorker
) -> None:
    stack = stack_for(api, receiver, worker, strict=False)
    began = time.monotonic()
    operation = stack.create({"Mode": "continue-silent", "Seconds": 30, "ServiceTimeout": 3})
    answer = operation.first_answer
    assert answer is not None
    assert (answer.status, answer.reason) == ("FAILED", NO_RESPONSE_REASON)
    assert operation.stack_status == "ROLLBACK_COMPLETE"  # the Delete is answered at once
    create = operation.deliveries[0]
    assert create.answer is None
    assert create.service_timeout == 3
    assert 3 <= time.monotonic() - began < 8
    assert [a.outcome for a in create.async_invocations] == [None]  # still running


def test_strict_mode_raises_no_response_at_the_service_timeout(
    api: LambdaAPI, receiver: ResponseReceiver, worker: LambdaWorker
) -> None:
    stack = stack_for(api, receiver, worker)
    began = time.monotonic()
    with pytest.raises(NoResponse):
        stack.create({"Mode": "continue-silent", "Seconds": 30, "ServiceTimeout": 2})
    assert 2 <= time.monotonic() - began < 5


def test_without_a_continuation_the_driver_does_not_wait(
    api: LambdaAPI, receiver: ResponseReceiver, worker: LambdaWorker
) -> None:
    stack = stack_for(api, receiver, worker)
    worker.start()
    event = stack.event("Create", cfn_properties({"Mode": "record"}))
    began = time.monotonic()
    delivery = stack.begin(event).finish()
    assert time.monotonic() - began < 2  # not the 600 s ServiceTimeout
    assert (delivery.answer, delivery.async_invocations, delivery.invocation_count) == (None, [], 1)


def test_an_answer_from_a_continuation_counts_against_the_contract(
    api: LambdaAPI, receiver: ResponseReceiver, worker: LambdaWorker
) -> None:
    stack = stack_for(api, receiver, worker)
    with pytest.raises(ContractViolation, match="answered 2 times for 1 invocation"):
        stack.create({"Mode": "answer-and-continue"})


def test_a_failed_continuation_is_retried_by_lambda_and_its_answer_awaited(
    api: LambdaAPI, receiver: ResponseReceiver, worker: LambdaWorker
) -> None:
    api.kill_next_after(0.0)  # the continuation's first environment dies at once
    stack = stack_for(api, receiver, worker)
    operation = stack.create({"Mode": "continue"})
    assert operation.stack_status == "CREATE_COMPLETE"
    [delivery] = operation.deliveries
    outcomes = [a.outcome for a in delivery.async_invocations]
    assert outcomes == ["killed", "ok"]
    assert delivery.invocation_count == 3
    assert isinstance(delivery.async_invocations[0], AsyncInvocation)


def test_scenario_faults_arm_the_endpoint(api: LambdaAPI, tmp_path: Path) -> None:
    services: Any = SimpleNamespace(emulator=None, receiver=None, lambda_api=api)
    error = Fault("invoke_error", error="ServiceException")
    kill, drop = Fault("invoke_kill", seconds=0.0), Fault("invoke_drop")
    for fault in (error, kill, drop):
        fault.arm(services)
    assert [f.describe() for f in (error, kill, drop)] == [
        "Lambda Invoke answered ServiceException x1",
        "continuation killed after 0 s x1",
        "continuation event lost x1",
    ]
    event = {"Mode": "record", "Out": str(tmp_path / "out.jsonl")}
    assert error_of(lambda: invoke(api, event)) == ("ServiceException", 500)
    invoke(api, event)  # dropped
    invoke(api, event)  # killed at once, then retried
    assert api.wait_idle(20)
    assert [i.outcome for i in api.invocations()] == ["dropped", "killed", "ok"]
