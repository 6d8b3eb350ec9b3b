"""The local Step Functions stand-in, through boto3's own ``stepfunctions`` client.

What the scenarios rely on: AWS's rule for a second StartExecution with the
same name (the same input joins a running execution; a closed one or another
input is ExecutionAlreadyExists), the definition played as written (Work,
Route, Wait, Answer; a failed Work caught into AnswerFailure with
``$.failure``), StopExecution (ABORTED, then the safety-net event to the
Answer function), and the faults (a refused Invoke retried by the
definition). The tasks are tests/local/states_tasks.py, in worker processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from sirlocal.driver import REPO_ROOT, worker_env
from sirlocal.states_api import (
    ANSWER_FUNCTION,
    STATE_MACHINE_ARN,
    STATUS_CHANGE,
    WORK_FUNCTION,
    StatesAPI,
)

pytestmark = pytest.mark.e2e

HANDLERS = {WORK_FUNCTION: "states_tasks.work", ANSWER_FUNCTION: "states_tasks.answer"}


@pytest.fixture(scope="module")
def module_api() -> Iterator[StatesAPI]:
    with StatesAPI(handlers=HANDLERS) as running:
        yield running


@pytest.fixture
def api(module_api: StatesAPI, tmp_path: Path) -> Iterator[StatesAPI]:
    env = worker_env({"PATH": "/usr/bin:/bin", "STATES_TASKS_LOG": str(tmp_path / "tasks.log")})
    env["PYTHONPATH"] += f":{REPO_ROOT / 'tests' / 'local'}"
    module_api.configure(env=env, timeout=10.0)
    yield module_api
    module_api.reset()


@pytest.fixture
def client(api: StatesAPI) -> Any:
    return boto3.client(
        "stepfunctions",
        endpoint_url=api.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def execution_input(request_id: str, *plan: str) -> str:
    request = {"stackId": "s", "logicalId": "L", "requestId": request_id, "plan": list(plan)}
    return json.dumps({"request": request, "work": {"step": 0, "next": "work", "seconds": 0}})


def tasks(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "tasks.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_status(client: Any, arn: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = str(client.describe_execution(executionArn=arn)["status"])
        if status != "RUNNING" or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_the_definition_is_played_work_wait_work_answer(
    api: StatesAPI, client: Any, tmp_path: Path
) -> None:
    started = client.start_execution(
        stateMachineArn=STATE_MACHINE_ARN, name="one", input=execution_input("r1", "wait", "answer")
    )
    assert wait_status(client, started["executionArn"]) == "SUCCEEDED"
    (execution,) = api.executions("r1")
    assert execution["history"] == [
        *["Work", "Route", "Wait", "Work", "Route", "Answer", "Done"],
    ]
    seen = tasks(tmp_path)
    assert [(t["task"], t["event"].get("step")) for t in seen] == [
        ("work", 0),
        ("work", 1),
        ("answer", None),
    ]
    assert seen[2]["event"] == {"request": json.loads(execution["input"])["request"]}
    assert [(r.state, r.outcome) for r in api.runs("r1")] == [
        ("Work", "ok"),
        ("Work", "ok"),
        ("Answer", "ok"),
    ]


def test_a_second_start_joins_a_running_execution_as_on_aws(api: StatesAPI, client: Any) -> None:
    text = execution_input("r2", "hang")
    first = client.start_execution(stateMachineArn=STATE_MACHINE_ARN, name="two", input=text)
    again = client.start_execution(stateMachineArn=STATE_MACHINE_ARN, name="two", input=text)
    assert again["executionArn"] == first["executionArn"]
    with pytest.raises(ClientError) as other:
        client.start_execution(
            stateMachineArn=STATE_MACHINE_ARN, name="two", input=execution_input("r2", "answer")
        )
    assert other.value.response["Error"]["Code"] == "ExecutionAlreadyExists"
    client.stop_execution(executionArn=first["executionArn"], error="Superseded", cause="test")
    assert wait_status(client, first["executionArn"]) == "ABORTED"
    with pytest.raises(ClientError) as closed:
        client.start_execution(stateMachineArn=STATE_MACHINE_ARN, name="two", input=text)
    assert closed.value.response["Error"]["Code"] == "ExecutionAlreadyExists"
    assert len(api.executions("r2")) == 1


def test_a_stopped_execution_is_sent_to_the_safety_net_and_its_task_runs_on(
    api: StatesAPI, client: Any, tmp_path: Path
) -> None:
    started = client.start_execution(
        stateMachineArn=STATE_MACHINE_ARN, name="three", input=execution_input("r3", "hang")
    )
    deadline = time.monotonic() + 20
    while not api.runs("r3") and time.monotonic() < deadline:
        time.sleep(0.05)
    client.stop_execution(executionArn=started["executionArn"])
    assert wait_status(client, started["executionArn"]) == "ABORTED"
    assert api.wait_idle(20, "r3") is True
    (safety_net,) = [t["event"] for t in tasks(tmp_path) if t["task"] == "answer"]
    assert safety_net["detail-type"] == STATUS_CHANGE
    assert safety_net["detail"]["status"] == "ABORTED"
    assert safety_net["detail"]["stateMachineArn"] == STATE_MACHINE_ARN
    assert json.loads(safety_net["detail"]["input"])["request"]["requestId"] == "r3"
    assert [(r.state, r.outcome) for r in api.runs("r3")] == [
        ("Work", "stopped"),
        ("SafetyNet", "ok"),
    ]


def test_a_failed_work_step_is_caught_into_answer_failure(
    api: StatesAPI, client: Any, tmp_path: Path
) -> None:
    started = client.start_execution(
        stateMachineArn=STATE_MACHINE_ARN, name="four", input=execution_input("r4", "raise")
    )
    assert wait_status(client, started["executionArn"]) == "SUCCEEDED"
    answered = [t["event"] for t in tasks(tmp_path) if t["task"] == "answer"]
    (failure,) = [e["failure"] for e in answered]
    assert failure["Error"] == "RuntimeError"
    assert json.loads(failure["Cause"])["errorType"] == "RuntimeError"
    assert api.executions("r4")[0]["history"] == ["Work", "AnswerFailure", "Done"]


def test_a_refused_invoke_is_retried_by_the_definition(api: StatesAPI, client: Any) -> None:
    api.fail_next(1, "Lambda.TooManyRequestsException")
    started = client.start_execution(
        stateMachineArn=STATE_MACHINE_ARN, name="five", input=execution_input("r5", "answer")
    )
    assert wait_status(client, started["executionArn"]) == "SUCCEEDED"
    assert [(r.state, r.attempt, r.outcome) for r in api.runs("r5")] == [
        ("Work", 1, "refused"),
        ("Work", 2, "ok"),
        ("Answer", 1, "ok"),
    ]


def test_unknown_state_machine_and_execution(client: Any) -> None:
    with pytest.raises(ClientError) as machine:
        client.start_execution(stateMachineArn=STATE_MACHINE_ARN + "-other", name="x", input="{}")
    assert machine.value.response["Error"]["Code"] == "StateMachineDoesNotExist"
    with pytest.raises(ClientError) as execution:
        client.describe_execution(
            executionArn=STATE_MACHINE_ARN.replace(":stateMachine:", ":execution:") + ":none"
        )
    assert execution.value.response["Error"]["Code"] == "ExecutionDoesNotExist"
