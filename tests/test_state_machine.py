"""statemachine/membership.asl.json, run on moto's ASL executor with scripted task results.

Why: the definition decides which answers a request can get, and ministack,
which runs the whole path end to end, differs from AWS exactly where the
definition's guarantees live (a second StartExecution with the same name and
input is rejected, the top-level timeout never fires). moto runs the file as
deployed (its placeholders substituted, as CloudFormation's
DefinitionSubstitutions do) on its ASL interpreter, which matches AWS there;
every Lambda invocation is answered by a script and recorded (function and
payload), and the retry intervals are recorded instead of slept.

cfn-lint and ``sam validate`` do not read a ``DefinitionUri`` file, so the
definition's shape is checked here too: by a walk over its states, and by
cfn-lint on the definition inlined into an ``AWS::StepFunctions::StateMachine``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.exceptions import JsonRESTError
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from test_template import load_cfn

ROOT = Path(__file__).resolve().parent.parent
DEFINITION = ROOT / "statemachine" / "membership.asl.json"
TEMPLATE = ROOT / "template.yaml"
CFN_LINT = ROOT / ".venv-tools" / "bin" / "cfn-lint"

REGION = "us-east-1"
ACCOUNT = "123456789012"
WORK = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sir-membership-WorkFunction-X"
ANSWER = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sir-membership-AnswerFunction-X"
#: What CloudFormation substitutes (DefinitionSubstitutions in template.yaml).
SUBSTITUTIONS = {"Partition": "aws", "WorkFunctionArn": WORK, "AnswerFunctionArn": ANSWER}
MACHINE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/sir-membership-StateMachineRole-X"
STACK_ID = (
    f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/security-ir-membership/"
    "8c0e4a30-5b1e-11ef-9c2b-0e5b9f0c7d11"
)
REQUEST = {
    "stackId": STACK_ID,
    "logicalId": "Membership",
    "requestId": "5a0c5d5e-4a3b-4b39-9a8c-2f1f1b7b9b01",
    "attempt": 1,
}
#: The statuses an execution can end with and the rule that runs the safety net hears.
SAFETY_NET_STATUSES = {"FAILED", "TIMED_OUT", "ABORTED"}
#: Lambda's own transient errors, the only ones Work is retried on.
LAMBDA_SERVICE_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]


def definition() -> dict[str, Any]:
    """The definition file as data (placeholders left in)."""
    loaded: dict[str, Any] = json.loads(DEFINITION.read_text(encoding="utf-8"))
    return loaded


def deployed(document: Mapping[str, Any]) -> str:
    """``document`` as CloudFormation hands it to Step Functions: placeholders substituted."""
    text = json.dumps(document)
    for name, value in SUBSTITUTIONS.items():
        text = text.replace("${" + name + "}", value)
    assert "${" not in text
    return text


def execution_input(request: Mapping[str, Any] = REQUEST) -> str:
    """The input the dispatcher starts with: the same bytes on every delivery (ENGINE-SPEC)."""
    document = {"request": dict(request), "work": {"step": 0, "next": "work", "seconds": 0}}
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def execution_name(request: Mapping[str, Any] = REQUEST) -> str:
    """The spec's name: sha256 of the stack, the logical id and the RequestId (first attempt)."""
    ids = "\n".join((request["stackId"], request["logicalId"], request["requestId"]))
    return hashlib.sha256(ids.encode()).hexdigest()


# --- scripted tasks ----------------------------------------------------------------


@dataclass(frozen=True)
class Fail:
    """The function raised: Lambda answers with FunctionError and the error's payload."""

    error_type: str
    message: str = "scripted failure"


@dataclass(frozen=True)
class Reject:
    """Lambda itself refused the invocation (Step Functions names it ``Lambda.<code>``)."""

    code: str


@dataclass(frozen=True)
class Hang:
    """The function does not return for ``seconds`` (or until the test ends)."""

    seconds: float


@dataclass
class Tasks:
    """What each function answers, in order, and every invocation made (function, payload)."""

    script: dict[str, list[Any]] = field(default_factory=lambda: {WORK: [], ANSWER: []})
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def work(self, *outcomes: Any) -> None:
        self.script[WORK].extend(outcomes)

    def answer(self, *outcomes: Any) -> None:
        self.script[ANSWER].extend(outcomes)

    def payloads(self, function: str) -> list[dict[str, Any]]:
        return [payload for name, payload in self.calls if name == function]

    def invoke(self, function: str, body: bytes | str, response_headers: dict[str, str]) -> bytes:
        """One invocation, as moto's Lambda backend would answer it."""
        self.calls.append((function, json.loads(body)))
        assert self.script[function], f"no scripted result left for {function}"
        outcome = self.script[function].pop(0)
        if isinstance(outcome, Reject):
            raise JsonRESTError(outcome.code, "scripted rejection")
        if isinstance(outcome, Hang):
            self.released.wait(outcome.seconds)
            outcome = {"step": 99, "next": "answer", "seconds": 0}
        if isinstance(outcome, Fail):
            response_headers["x-amz-function-error"] = "Unhandled"
            outcome = {"errorType": outcome.error_type, "errorMessage": outcome.message}
        return json.dumps(outcome).encode()


@dataclass
class Engine:
    """moto's Step Functions with the scripted tasks; retry intervals recorded, not slept."""

    tasks: Tasks
    slept: list[float]
    sfn: Any

    def create(self, document: Mapping[str, Any] | None = None) -> str:
        arn: str = self.sfn.create_state_machine(
            name="sir-membership-MembershipStateMachine",
            definition=deployed(document or definition()),
            roleArn=MACHINE_ROLE,
            type="STANDARD",
        )["stateMachineArn"]
        return arn

    def start(self, machine: str, name: str | None = None, body: str | None = None) -> str:
        started = self.sfn.start_execution(
            stateMachineArn=machine, name=name or execution_name(), input=body or execution_input()
        )
        arn: str = started["executionArn"]
        return arn

    def status(self, execution: str) -> str:
        status: str = self.sfn.describe_execution(executionArn=execution)["status"]
        return status

    def wait_until(self, execution: str, wanted: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.status(execution) != wanted:
            assert time.monotonic() < deadline, f"{execution} is {self.status(execution)}"
            time.sleep(0.02)

    def finish(self, execution: str, timeout: float = 30) -> dict[str, Any]:
        """The ended execution's description."""
        deadline = time.monotonic() + timeout
        while (described := self.sfn.describe_execution(executionArn=execution))[
            "status"
        ] == "RUNNING":
            assert time.monotonic() < deadline, "the execution did not end"
            time.sleep(0.02)
        return dict(described)

    def run(self, document: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.finish(self.start(self.create(document)))

    def states_entered(self, execution: str) -> list[str]:
        events = self.sfn.get_execution_history(executionArn=execution)["events"]
        return [
            e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
        ]


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    tasks = Tasks()
    slept: list[float] = []

    def invoke(
        backend: LambdaSimpleBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        return tasks.invoke(function_name, body, response_headers)

    class _Clock:
        """retrier_decl's ``time``: records each retry interval instead of sleeping it."""

        @staticmethod
        def sleep(seconds: float) -> None:
            slept.append(seconds)

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    monkeypatch.setattr(retrier_decl, "time", _Clock)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    with mock_aws(config=config):
        yield Engine(tasks, slept, boto3.client("stepfunctions", region_name=REGION))
        tasks.released.set()


ANSWERED = {"answered": True}


def work_said(step: int, next_: str, seconds: int = 0) -> dict[str, Any]:
    """A Work result (ENGINE-SPEC): the step reached, what comes next, the seconds to wait."""
    return {"step": step, "next": next_, "seconds": seconds}


# --- runs ---------------------------------------------------------------------------


def test_the_answer_payload_holds_the_request_and_never_the_response_url(engine: Engine) -> None:
    """Work then Answer: each payload is the request's ids (and Work's step), nothing else."""
    engine.tasks.work(work_said(1, "answer"))
    engine.tasks.answer(ANSWERED)
    machine = engine.create()
    execution = engine.start(machine)
    ended = engine.finish(execution)
    assert ended["status"] == "SUCCEEDED"
    assert engine.tasks.calls == [
        (WORK, {"request": REQUEST, "step": 0}),
        (ANSWER, {"request": REQUEST}),
    ]
    assert engine.states_entered(execution) == ["Work", "Route", "Answer", "Done"]
    history = json.dumps(engine.sfn.get_execution_history(executionArn=execution), default=str)
    assert "ResponseURL" not in history
    assert "https://" not in history


def test_work_waits_then_works_again_from_the_step_it_reached(engine: Engine) -> None:
    engine.tasks.work(work_said(3, "wait", 1), work_said(5, "wait", 2), work_said(6, "answer"))
    engine.tasks.answer(ANSWERED)
    machine = engine.create()
    began = time.monotonic()
    execution = engine.start(machine)
    assert engine.finish(execution)["status"] == "SUCCEEDED"
    # Two Wait states, of the seconds Work said (Step Functions' Wait takes whole seconds).
    assert time.monotonic() - began >= 3
    assert [p["step"] for p in engine.tasks.payloads(WORK)] == [0, 3, 5]
    assert engine.tasks.payloads(ANSWER) == [{"request": REQUEST}]
    assert engine.states_entered(execution) == [
        *["Work", "Route", "Wait"] * 2,
        *["Work", "Route", "Answer", "Done"],
    ]


def test_a_superseded_request_ends_without_an_answer(engine: Engine) -> None:
    """stop: a newer request of the resource holds the fence and answers for it."""
    engine.tasks.work(work_said(2, "stop"))
    machine = engine.create()
    execution = engine.start(machine)
    assert engine.finish(execution)["status"] == "SUCCEEDED"
    assert engine.tasks.payloads(ANSWER) == []
    assert engine.states_entered(execution) == ["Work", "Route", "Superseded"]


def test_a_work_error_is_answered_once_with_its_error_and_cause(engine: Engine) -> None:
    """Work's own failure is not retried (Work decides what a retry may do)."""
    engine.tasks.work(Fail("RuntimeError", "the plan could not be read"))
    engine.tasks.answer(ANSWERED)
    machine = engine.create()
    execution = engine.start(machine)
    assert engine.finish(execution)["status"] == "SUCCEEDED"
    assert len(engine.tasks.payloads(WORK)) == 1
    assert engine.tasks.payloads(ANSWER) == [
        {
            "request": REQUEST,
            "failure": {
                "Error": "RuntimeError",
                "Cause": json.dumps(
                    {"errorType": "RuntimeError", "errorMessage": "the plan could not be read"},
                    separators=(",", ":"),
                ),
            },
        }
    ]
    assert engine.states_entered(execution) == ["Work", "AnswerFailure", "Done"]
    assert engine.slept == []


@pytest.mark.parametrize("error", LAMBDA_SERVICE_ERRORS)
def test_lambdas_own_errors_are_retried(error: str, engine: Engine) -> None:
    engine.tasks.work(Reject(error.removeprefix("Lambda.")), work_said(1, "answer"))
    engine.tasks.answer(ANSWERED)
    assert engine.run()["status"] == "SUCCEEDED"
    assert [p["step"] for p in engine.tasks.payloads(WORK)] == [0, 0]
    assert engine.tasks.payloads(ANSWER) == [{"request": REQUEST}]
    assert engine.slept == [2]


def test_lambda_errors_that_outlast_the_retries_are_answered(engine: Engine) -> None:
    engine.tasks.work(*[Reject("TooManyRequestsException")] * 4)
    engine.tasks.answer(ANSWERED)
    assert engine.run()["status"] == "SUCCEEDED"
    assert len(engine.tasks.payloads(WORK)) == 4  # the first try and 3 retries
    assert engine.slept == [2, 4, 8]
    (answer,) = engine.tasks.payloads(ANSWER)
    assert answer["failure"]["Error"] == "Lambda.TooManyRequestsException"


def test_a_hung_work_is_caught_and_answered(engine: Engine) -> None:
    """The state's timeout (a shortened copy: 1 s) ends in AnswerFailure with States.Timeout."""
    document = definition()
    document["States"]["Work"]["TimeoutSeconds"] = 1
    engine.tasks.work(Hang(10))
    engine.tasks.answer(ANSWERED)
    machine = engine.create(document)
    execution = engine.start(machine)
    assert engine.finish(execution)["status"] == "SUCCEEDED"
    (answer,) = engine.tasks.payloads(ANSWER)
    assert answer["request"] == REQUEST
    assert answer["failure"]["Error"] == "States.Timeout"
    assert engine.states_entered(execution) == ["Work", "AnswerFailure", "Done"]


@pytest.mark.parametrize("failing_work", [False, True], ids=["Answer", "AnswerFailure"])
def test_an_answer_that_keeps_failing_ends_unanswered(failing_work: bool, engine: Engine) -> None:
    """The first try and 6 retries (2 to 64 s apart) fail: the execution FAILS, for the safety net."""
    engine.tasks.work(Fail("RuntimeError") if failing_work else work_said(1, "answer"))
    engine.tasks.answer(*[Fail("ConnectionError")] * 7)
    machine = engine.create()
    execution = engine.start(machine)
    ended = engine.finish(execution)
    assert ended["status"] == "FAILED"
    assert ended["status"] in SAFETY_NET_STATUSES
    assert (ended["error"], ended["cause"]) == ("Unanswered", "the answer could not be sent")
    assert len(engine.tasks.payloads(ANSWER)) == 7
    assert engine.slept == [2, 4, 8, 16, 32, 64]
    task = "AnswerFailure" if failing_work else "Answer"
    assert engine.states_entered(execution)[-2:] == [task, "Unanswered"]


def test_the_last_retry_of_an_answer_can_still_succeed(engine: Engine) -> None:
    engine.tasks.work(work_said(1, "answer"))
    engine.tasks.answer(*[Fail("ConnectionError")] * 6, ANSWERED)
    assert engine.run()["status"] == "SUCCEEDED"
    assert len(engine.tasks.payloads(ANSWER)) == 7


def test_a_second_start_with_the_same_name_and_input_joins_the_running_execution(
    engine: Engine,
) -> None:
    """AWS: the same name and input while RUNNING returns the running execution; a
    different input, or the same after it ended, is ExecutionAlreadyExists. moto 5.2.5
    behaves the same (ministack rejects the first case: the reason this runs on moto)."""
    engine.tasks.work(work_said(1, "wait", 60))
    machine = engine.create()
    first = engine.start(machine)
    engine.wait_until(first, "RUNNING")
    while "Wait" not in engine.states_entered(first):
        time.sleep(0.02)
    again = engine.start(machine)
    assert again == first
    listed = engine.sfn.list_executions(stateMachineArn=machine)["executions"]
    assert [e["executionArn"] for e in listed] == [first]
    assert len(engine.tasks.payloads(WORK)) == 1  # joined: no second Work
    other = execution_input({**REQUEST, "attempt": 2})
    with pytest.raises(ClientError) as refused:
        engine.start(machine, body=other)
    assert refused.value.response["Error"]["Code"] == "ExecutionAlreadyExists"
    engine.sfn.stop_execution(executionArn=first)
    assert engine.finish(first)["status"] == "ABORTED"
    with pytest.raises(ClientError) as ended:
        engine.start(machine)
    assert ended.value.response["Error"]["Code"] == "ExecutionAlreadyExists"
    assert engine.tasks.payloads(ANSWER) == []


def test_every_end_without_an_answer_is_a_status_the_safety_net_hears(engine: Engine) -> None:
    """Stopped (ABORTED) or past the top-level timeout (TIMED_OUT, a shortened copy: 2 s):
    no Answer ran, and the template's rule sends exactly these statuses to Answer."""
    rule = load_cfn(TEMPLATE)["Resources"]["AnswerFunction"]["Properties"]["Events"]
    (pattern,) = [event["Properties"]["Pattern"] for event in rule.values()]
    assert set(pattern["detail"]["status"]) == SAFETY_NET_STATUSES

    engine.tasks.work(work_said(1, "wait", 60), work_said(1, "wait", 60))
    stopped = engine.start(engine.create())
    while "Wait" not in engine.states_entered(stopped):
        time.sleep(0.02)
    engine.sfn.stop_execution(executionArn=stopped, error="Superseded", cause="rollback")
    assert engine.finish(stopped)["status"] == "ABORTED"

    document = definition()
    document["TimeoutSeconds"] = 2
    machine = engine.sfn.create_state_machine(
        name="short", definition=deployed(document), roleArn=MACHINE_ROLE
    )["stateMachineArn"]
    timed_out = engine.sfn.start_execution(stateMachineArn=machine, input=execution_input())
    assert engine.finish(timed_out["executionArn"])["status"] == "TIMED_OUT"
    assert engine.tasks.payloads(ANSWER) == []
    assert {"ABORTED", "TIMED_OUT"} <= SAFETY_NET_STATUSES


# --- the definition as data ----------------------------------------------------------


def _choice_rules(rules: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for rule in rules:
        yield rule
        for key in ("And", "Or"):
            yield from _choice_rules(rule.get(key, []))
        if "Not" in rule:
            yield from _choice_rules([rule["Not"]])


def test_the_choice_never_compares_timestamps() -> None:
    """Deadlines are Work's: the only Choice compares Work's word, a string, for equality."""
    states = definition()["States"]
    choices = {name: s for name, s in states.items() if s["Type"] == "Choice"}
    assert set(choices) == {"Route"}
    rules = list(_choice_rules(choices["Route"]["Choices"]))
    operators = {k for rule in rules for k in rule if k not in ("Variable", "Next", "Comment")}
    assert operators == {"StringEquals"}
    assert {rule["Variable"] for rule in rules} == {"$.work.next"}
    assert {rule["StringEquals"]: rule["Next"] for rule in rules} == {
        "wait": "Wait",
        "stop": "Superseded",
    }
    assert choices["Route"]["Default"] == "Answer"
    text = DEFINITION.read_text(encoding="utf-8")
    assert "Timestamp" not in text  # no TimestampEquals..., no Wait until a timestamp
    assert "$$." not in text  # no context object (EnteredTime, StartTime)
    assert states["Wait"] == {
        "Comment": states["Wait"]["Comment"],
        "Type": "Wait",
        "SecondsPath": "$.work.seconds",
        "Next": "Work",
    }


def test_lambda_ends_a_hung_work_before_the_state_does() -> None:
    """Work's TimeoutSeconds exceeds the WorkFunction's Timeout: Lambda's error is what is caught,
    and the top-level timeout exceeds the longest ServiceTimeout (a backstop only)."""
    document = definition()
    function = load_cfn(TEMPLATE)["Resources"]["WorkFunction"]["Properties"]
    assert document["States"]["Work"]["TimeoutSeconds"] == 330
    assert document["States"]["Work"]["TimeoutSeconds"] > function["Timeout"]
    assert document["TimeoutSeconds"] == 3900
    assert document["TimeoutSeconds"] > 3600  # CloudFormation's largest ServiceTimeout


def _targets(state: Mapping[str, Any]) -> set[str]:
    found = {state[k] for k in ("Next", "Default") if k in state}
    found |= {rule["Next"] for rule in state.get("Choices", [])}
    found |= {catch["Next"] for catch in state.get("Catch", [])}
    return found


def test_the_definition_is_well_formed() -> None:
    """What the linters would check if they read DefinitionUri, plus this project's rules."""
    document = definition()
    states = document["States"]
    assert document["QueryLanguage"] == "JSONPath"
    assert document["StartAt"] == "Work"
    assert document["Comment"]
    assert set(states) == {
        "Work",
        "Route",
        "Wait",
        "Answer",
        "AnswerFailure",
        "Superseded",
        "Done",
        "Unanswered",
    }
    reached, todo = set(), [document["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(_targets(states[name]))
    assert reached == set(states)  # every target exists and every state is reachable
    for name, state in states.items():
        assert len(state["Comment"]) >= 30, f"{name} says why"
        terminal = state["Type"] in ("Succeed", "Fail")
        assert terminal == (not _targets(state)), name
        assert "End" not in state  # every end is a Succeed or a Fail that says which
    assert states["Unanswered"] == {
        "Comment": states["Unanswered"]["Comment"],
        "Type": "Fail",
        "Error": "Unanswered",
        "Cause": "the answer could not be sent",
    }


def test_the_tasks_are_exactly_the_specs() -> None:
    states = definition()["States"]
    invoke = "arn:${Partition}:states:::lambda:invoke"
    work = {k: v for k, v in states["Work"].items() if k != "Comment"}
    assert work == {
        "Type": "Task",
        "Resource": invoke,
        "Parameters": {
            "FunctionName": "${WorkFunctionArn}",
            "Payload": {"request.$": "$.request", "step.$": "$.work.step"},
        },
        "ResultSelector": {
            "step.$": "$.Payload.step",
            "next.$": "$.Payload.next",
            "seconds.$": "$.Payload.seconds",
        },
        "ResultPath": "$.work",
        "TimeoutSeconds": 330,
        "Retry": [
            {
                "ErrorEquals": LAMBDA_SERVICE_ERRORS,
                "IntervalSeconds": 2,
                "MaxAttempts": 3,
                "BackoffRate": 2,
            }
        ],
        "Catch": [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "AnswerFailure"}
        ],
        "Next": "Route",
    }
    answer_payloads = {
        "Answer": {"request.$": "$.request"},
        "AnswerFailure": {"request.$": "$.request", "failure.$": "$.failure"},
    }
    for name, payload in answer_payloads.items():
        assert {k: v for k, v in states[name].items() if k != "Comment"} == {
            "Type": "Task",
            "Resource": invoke,
            "Parameters": {"FunctionName": "${AnswerFunctionArn}", "Payload": payload},
            "ResultPath": None,
            "Retry": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "IntervalSeconds": 2,
                    "MaxAttempts": 6,
                    "BackoffRate": 2,
                }
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Unanswered"}],
            "Next": "Done",
        }, name


def _paths(
    states: Mapping[str, Any], name: str, seen: tuple[str, ...]
) -> Iterator[tuple[str, ...]]:
    """Every path from ``name`` to an end, each loop (Work, Route, Wait) taken at most once."""
    path = (*seen, name)
    targets = _targets(states[name])
    if not targets:
        yield path
    for target in sorted(targets):
        if target not in path:
            yield from _paths(states, target, path)


def test_every_path_ends_in_an_answer_a_superseded_stop_or_a_failure_the_safety_net_hears() -> None:
    states = definition()["States"]
    paths = list(_paths(states, "Work", ()))
    assert paths
    for path in paths:
        end = path[-1]
        if end == "Done":
            assert path[-2] in ("Answer", "AnswerFailure"), path
        elif end == "Superseded":
            assert path[-2] == "Route", path  # only on Work's own word
        else:
            assert end == "Unanswered", path  # FAILED: the EventBridge rule answers
            assert path[-2] in ("Answer", "AnswerFailure"), path
    assert {p[-1] for p in paths} == {"Done", "Superseded", "Unanswered"}


def test_cfn_lint_validates_the_definition(tmp_path: Path) -> None:
    """cfn-lint's state machine rules on the file, inlined as CloudFormation would see it
    (it skips a DefinitionUri); a broken copy fails, so the check is real."""
    if not CFN_LINT.exists():
        pytest.skip(".venv-tools/bin/cfn-lint is not installed (make setup)")

    def template(document: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {
                "MembershipStateMachine": {
                    "Type": "AWS::StepFunctions::StateMachine",
                    "Properties": {
                        "StateMachineType": "STANDARD",
                        "RoleArn": MACHINE_ROLE,
                        "Definition": json.loads(deployed(document)),
                    },
                }
            },
        }

    broken = copy.deepcopy(definition())
    broken["States"]["Route"]["Type"] = "Branch"
    paths = []
    for name, document in (("definition", definition()), ("broken", broken)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(template(document), indent=1), encoding="utf-8")
        paths.append(path)
    env = {**os.environ}
    good = subprocess.run(
        [str(CFN_LINT), str(paths[0])], capture_output=True, text=True, check=False, env=env
    )
    assert good.returncode == 0, good.stdout + good.stderr
    bad = subprocess.run(
        [str(CFN_LINT), str(paths[1])], capture_output=True, text=True, check=False, env=env
    )
    assert bad.returncode != 0
    assert re.search(r"E3601 'Branch' is not one of", bad.stdout), bad.stdout
