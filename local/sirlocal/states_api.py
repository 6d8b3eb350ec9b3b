"""A local Step Functions endpoint that plays the provider's state machine, with its tasks
in Lambda worker processes.

A fault-injection stand-in, not an emulator: it plays what the product's own
definition uses, and breaks it on purpose (task sandboxes killed mid-call,
Invoke calls refused, results lost).

Why: the dispatcher (``sir_membership.app.handler``) starts one execution per
request through boto3's ``stepfunctions`` client, and the change runs in the
Work and Answer tasks; the offline fault-injection world (``sirlocal.driver``,
``sirlocal.scenarios``) must run that path with real processes, real deadlines
and real kills. This endpoint speaks the JSON protocol boto3 uses
(``X-Amz-Target: AWSStepFunctions.<Operation>``, ``{"__type", "message"}``
errors) for StartExecution, StopExecution and DescribeExecution, and runs
each execution on a thread, state by state, from the repository's definition
(statemachine/membership.asl.json, read, never restated here):

* Task (``arn:aws:states:::lambda:invoke``): the function named by the
  definition's substitutions runs in a :class:`~sirlocal.driver.LambdaWorker`
  (warm when one is idle; killed at the function timeout, as Lambda does);
  ``Parameters``, ``ResultSelector``, ``ResultPath``, ``TimeoutSeconds``,
  ``Retry`` (``IntervalSeconds`` x ``BackoffRate``, ``MaxAttempts``) and
  ``Catch`` (its ``ResultPath``) as the definition says. A task timeout does
  not stop the function (nor does StopExecution): its late result is dropped.
* Wait (``Seconds`` or ``SecondsPath``), Choice (string equality), Succeed, Fail;
  the top-level ``TimeoutSeconds`` (TIMED_OUT).
* An execution that ends FAILED, TIMED_OUT or ABORTED is sent to the Answer
  function as EventBridge's "Step Functions Execution Status Change" event
  (the provider's safety net), retried as an asynchronous invocation is.

StartExecution follows AWS, not ministack: the same name and input as a
running execution returns that execution; a closed one, or another input,
is ``ExecutionAlreadyExists``. ``wait_scale`` shortens Wait states and retry
intervals (as ministack's ``SFN_WAIT_SCALE``); the default plays them in real
seconds.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sirlocal import JSONRequestHandler, LoopbackHTTPServer
from sirlocal.driver import KILL_GRACE, REPO_ROOT, DriverError, Invocation, LambdaWorker
from sirlocal.worker import ACCOUNT_ID

DEFINITION = REPO_ROOT / "statemachine" / "membership.asl.json"
REGION = "us-east-1"
STATE_MACHINE_NAME = "sir-membership-local"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{STATE_MACHINE_NAME}"
WORK_FUNCTION = "sir-membership-provider-WorkFunction-LOCAL"
ANSWER_FUNCTION = "sir-membership-provider-AnswerFunction-LOCAL"
#: The function each name in the definition's substitutions runs.
HANDLERS = {
    WORK_FUNCTION: "sir_membership.tasks.work",
    ANSWER_FUNCTION: "sir_membership.tasks.answer",
}
STATUS_CHANGE = "Step Functions Execution Status Change"
ENDED_BADLY = ("FAILED", "TIMED_OUT", "ABORTED")
#: EventBridge invokes its target asynchronously: Lambda tries an event 3 times.
SAFETY_NET_ATTEMPTS = 3
_NAME = re.compile(r"^[0-9A-Za-z_-]{1,80}$")


def function_arn(name: str) -> str:
    """The ARN of a local function."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


# --------------------------------------------------------------------------- paths


def _get(document: Any, path: str) -> Any:
    """A JSONPath of the simple kind the definition uses (``$``, ``$.a.b``)."""
    if path == "$":
        return document
    if not path.startswith("$."):
        raise ValueError(f"unsupported path {path!r}")
    value = document
    for part in path[2:].split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(path)
        value = value[part]
    return value


def _put(document: Any, path: str | None, value: Any) -> Any:
    """``ResultPath``: ``value`` placed at ``path`` of a copy of ``document``."""
    if path is None:
        return document
    if path == "$":
        return value
    out = json.loads(json.dumps(document))
    target = out
    parts = path[2:].split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value
    return out


def _template(template: Any, document: Any) -> Any:
    """``Parameters`` / ``ResultSelector``: keys ending in ``.$`` are paths into ``document``."""
    if isinstance(template, Mapping):
        out: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = _get(document, str(value))
            else:
                out[key] = _template(value, document)
        return out
    if isinstance(template, list):
        return [_template(v, document) for v in template]
    return template


def _matches(names: Sequence[str], error: str) -> bool:
    if error in names:
        return True
    if "States.ALL" in names:
        return True
    return "States.TaskFailed" in names and error != "States.Timeout"


def load_definition(path: Path = DEFINITION) -> dict[str, Any]:
    """The definition with its substitutions made (the template's DefinitionSubstitutions)."""
    text = path.read_text(encoding="utf-8")
    for name, value in {
        "Partition": "aws",
        "WorkFunctionArn": function_arn(WORK_FUNCTION),
        "AnswerFunctionArn": function_arn(ANSWER_FUNCTION),
    }.items():
        text = text.replace("${" + name + "}", value)
    definition: dict[str, Any] = json.loads(text)
    return definition


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class TaskRun:
    """One attempt at one task (or a safety-net delivery), as recorded (a snapshot)."""

    execution: str  # the execution's name
    request_id: str  # the CloudFormation RequestId of its request
    state: str  # the definition's state, or "SafetyNet"
    attempt: int  # 1, then the Retry's attempts
    started: float  # epoch seconds
    ended: float | None = None
    #: None while running; then "ok", the function's error type, "timeout" (killed at
    #: the function timeout), "killed" (a fault), "refused" (an Invoke error: the
    #: function did not run), "lost" (it ran; its result was lost), "late" (it ran
    #: past the task's TimeoutSeconds: its result was dropped), "stopped" (its
    #: execution was stopped meanwhile: the function ran on, its result dropped).
    outcome: str | None = None
    worker: str = ""

    @property
    def ran(self) -> bool:
        """True when the function ran (or runs) for this attempt."""
        return self.outcome != "refused"


@dataclass
class _Execution:
    name: str
    arn: str
    input: str
    request_id: str
    started: float
    status: str = "RUNNING"
    stopped: float | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    history: list[str] = field(default_factory=list)
    wake: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class FunctionConfig:
    """What Lambda takes from a function's configuration for each invocation."""

    env: Mapping[str, str] | None = None  # None: not configured, tasks fail
    timeout: float = 30.0
    python: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Fault:
    kind: str  # "refuse", "kill", "lose"
    state: str
    error: str = "Lambda.ServiceException"
    seconds: float = 0.0


class ApiError(Exception):
    """An error answer of the JSON protocol."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


class _TaskError(Exception):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(error)
        self.error, self.cause = error, cause


def _cause(error: str, message: str) -> str:
    return json.dumps({"errorMessage": message, "errorType": error, "stackTrace": []})


def _epoch(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


class StatesAPI:
    """The endpoint: an HTTP server on 127.0.0.1 and the executions it runs (thread-safe).

    :meth:`configure` gives the task workers their environment; until then a
    task fails as an Invoke the service refused.
    """

    def __init__(
        self,
        *,
        definition: Path = DEFINITION,
        wait_scale: float = 1.0,
        handlers: Mapping[str, str] = HANDLERS,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.definition = load_definition(definition)
        self.wait_scale = wait_scale
        self.host, self.requested_port = host, port
        #: The handler each function runs (``module.function``, Lambda's ``Handler``).
        self.handlers = dict(handlers)
        self.configs: dict[str, FunctionConfig] = {n: FunctionConfig() for n in HANDLERS}
        self._lock = threading.Condition()
        self._executions: dict[str, _Execution] = {}
        self._runs: list[TaskRun] = []
        self._live: dict[int, tuple[LambdaWorker, _Execution]] = {}  # run index -> worker
        self._idle: dict[str, list[LambdaWorker]] = {n: [] for n in HANDLERS}
        self._workers: list[LambdaWorker] = []
        self._threads: list[threading.Thread] = []
        self._faults: deque[_Fault] = deque()
        self._kill_requests: dict[str, str] = {}  # request id -> error reported
        #: Functions still running after their task gave up on them (timeout, stop).
        self._orphans: list[tuple[str, threading.Thread]] = []
        self._generation = 0
        #: Where each worker kept warm across a reset was in its log then.
        self._log_start: dict[int, int] = {}
        self._server: LoopbackHTTPServer | None = None

    # lifecycle -----------------------------------------------------------------

    def start(self) -> StatesAPI:
        """Bind and serve in the background."""
        server = LoopbackHTTPServer((self.host, self.requested_port), _StatesHandler)
        server.app = self
        server.start_background("states-api")
        self._server = server
        return self

    def stop(self) -> None:
        """Stop serving, end every execution and kill every worker."""
        self.reset(keep_warm=False)
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> StatesAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        assert self._server is not None, "not started"
        return f"http://{self.host}:{self._server.port}"

    @property
    def state_machine_arn(self) -> str:
        """The one state machine this endpoint runs."""
        return STATE_MACHINE_ARN

    def env(self) -> dict[str, str]:
        """The dispatcher's settings: the state machine and this endpoint (local only)."""
        return {"STATE_MACHINE_ARN": STATE_MACHINE_ARN, "AWS_ENDPOINT_URL_SFN": self.endpoint_url}

    def configure(
        self,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        python: Sequence[str] | None = None,
        functions: Sequence[str] = (WORK_FUNCTION, ANSWER_FUNCTION),
    ) -> None:
        """Change the task functions' configuration (only what is given) for later tasks.

        ``env``: the workers' environment (``worker_env(services.child_env())``);
        each function's name and handler are set over it. Idle workers of a
        function whose configuration changed are stopped, so its next task
        starts with the new one (an unchanged one keeps its warm workers).
        """
        changes: dict[str, Any] = {}
        if timeout is not None:
            changes["timeout"] = float(timeout)
        if python is not None:
            changes["python"] = tuple(python)
        idle: list[LambdaWorker] = []
        with self._lock:
            for name in functions:
                update = dict(changes)
                if env is not None:
                    update["env"] = {
                        **env,
                        "AWS_LAMBDA_FUNCTION_NAME": name,
                        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
                        "_HANDLER": self.handlers[name],
                    }
                changed = replace(self.configs[name], **update)
                if changed != self.configs[name]:
                    self.configs[name] = changed
                    idle += self._idle[name]
                    self._idle[name] = []
        for worker in idle:
            worker.stop()

    def reset(self, *, keep_warm: bool = True) -> None:
        """Abort every execution (no safety net), forget records and faults (the
        configuration stays); kill every worker but the idle ones (kept warm, as Lambda
        keeps a sandbox, unless ``keep_warm`` is False)."""
        with self._lock:
            self._generation += 1
            for execution in self._executions.values():
                if execution.status == "RUNNING":
                    execution.status = "ABORTED"
                execution.wake.set()
            threads, self._threads = list(self._threads), []
            threads += [t for _, t in self._orphans]
            self._orphans = []
            warm = {
                id(w)
                for idle in self._idle.values()
                for w in idle
                if keep_warm and w.alive and not w.busy
            }
            workers = [w for w in self._workers if id(w) not in warm]
            self._workers = [w for w in self._workers if id(w) in warm]
            for name, idle in self._idle.items():
                self._idle[name] = [w for w in idle if id(w) in warm]
            self._log_start = {id(w): w.log_mark() for w in self._workers}
            self._executions.clear()
            self._runs = []
            self._live.clear()
            self._lock.notify_all()
        self.clear_faults()
        for worker in workers:
            worker.kill()
        for thread in threads:
            thread.join(timeout=10)
        for worker in workers:
            worker.close()

    # faults --------------------------------------------------------------------

    def fail_next(
        self, times: int = 1, error: str = "Lambda.TooManyRequestsException", state: str = "Work"
    ) -> None:
        """The next ``times`` invocations of ``state`` are refused with ``error`` (nothing
        runs): the definition's Retry decides what follows."""
        with self._lock:
            self._faults.extend(_Fault("refuse", state, error) for _ in range(times))

    def kill_next_after(
        self,
        seconds: float,
        times: int = 1,
        state: str = "Work",
        error: str = "Lambda.ServiceException",
    ) -> None:
        """Kill the sandbox of each of the next ``times`` invocations of ``state``
        ``seconds`` after it began; the task sees ``error`` (a service error is retried,
        a function error such as ``Runtime.ExitError`` is caught)."""
        with self._lock:
            self._faults.extend(_Fault("kill", state, error, seconds) for _ in range(times))

    def lose_next(self, times: int = 1, state: str = "Work") -> None:
        """The next ``times`` invocations of ``state`` run to their end, but their result
        is lost (``Lambda.ServiceException``): the step runs again."""
        with self._lock:
            self._faults.extend(_Fault("lose", state) for _ in range(times))

    def kill_running(self, request_id: str, error: str = "Lambda.ServiceException") -> bool:
        """Kill the sandbox of the task running for ``request_id`` now; False if none runs."""
        with self._lock:
            live = [w for w, e in self._live.values() if e.request_id == request_id]
            if not live:
                return False
            self._kill_requests[request_id] = error
        for worker in live:
            worker.kill()
        return True

    def clear_faults(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._faults.clear()

    # records -------------------------------------------------------------------

    def runs(self, request_id: str | None = None, *, since: float | None = None) -> list[TaskRun]:
        """Every task attempt since the last reset, in the order they began."""
        with self._lock:
            runs = list(self._runs)
        return [
            r
            for r in runs
            if (request_id is None or r.request_id == request_id)
            and (since is None or r.started >= since)
        ]

    def executions(self, request_id: str | None = None) -> list[dict[str, Any]]:
        """The executions (of ``request_id``), as DescribeExecution shows them, plus history."""
        with self._lock:
            chosen = [
                e
                for e in self._executions.values()
                if request_id is None or e.request_id == request_id
            ]
            return [{**self._describe(e), "history": list(e.history)} for e in chosen]

    def busy(self, request_id: str | None = None) -> bool:
        """True while an execution (of ``request_id``) runs, or a task of it still does."""
        with self._lock:
            return self._busy(request_id)

    def _busy(self, request_id: str | None) -> bool:
        if any(
            e.status == "RUNNING" and request_id in (None, e.request_id)
            for e in self._executions.values()
        ):
            return True
        if any(request_id in (None, r.request_id) and r.outcome is None for r in self._runs):
            return True
        if any(t.is_alive() and request_id in (None, r) for r, t in self._orphans):
            return True
        return any(
            t.is_alive() and request_id in (None, t.name.split("|", 1)[-1]) for t in self._threads
        )

    def wait_idle(self, timeout: float = 30.0, request_id: str | None = None) -> bool:
        """Block until :meth:`busy` is False; False if it still is after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._busy(request_id):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.1))
            return True

    def log_mark(self) -> dict[int, int]:
        """Each worker's current log end, for :meth:`logs`."""
        with self._lock:
            return {id(w): w.log_mark() for w in self._workers}

    def logs(self, since: Mapping[int, int] | None = None) -> str:
        """The task functions' logs since the last reset (after ``since``, a log mark)."""
        marks = self._log_start if since is None else since
        with self._lock:
            workers = list(self._workers)
        return "".join(w.logs(marks.get(id(w), 0)) for w in workers)

    # the API ---------------------------------------------------------------------

    def handle(self, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one request of the JSON protocol: (HTTP status, body)."""
        operations = {
            "StartExecution": self.start_execution,
            "StopExecution": self.stop_execution,
            "DescribeExecution": self.describe_execution,
        }
        operation = operations.get(target.rpartition(".")[2])
        if operation is None:
            return 400, {"__type": "UnknownOperationException", "message": "not served here"}
        try:
            return 200, operation(json.loads(body or b"{}"))
        except ApiError as error:
            return error.status, {"__type": error.code, "message": error.message}
        except ValueError as error:
            return 400, {"__type": "SerializationException", "message": type(error).__name__}

    def start_execution(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """StartExecution, with AWS's idempotency on the name."""
        if params.get("stateMachineArn") != STATE_MACHINE_ARN:
            raise ApiError("StateMachineDoesNotExist", "State Machine Does Not Exist")
        name = str(params.get("name") or uuid.uuid4())
        if not _NAME.match(name):
            raise ApiError("InvalidName", f"Invalid Name: '{name}'")
        text = str(params.get("input") or "{}")
        try:
            document = json.loads(text)
        except ValueError:
            raise ApiError("InvalidExecutionInput", "Invalid execution input") from None
        with self._lock:
            existing = self._executions.get(name)
            if existing is not None:
                if existing.status == "RUNNING" and existing.input == text:
                    return {"executionArn": existing.arn, "startDate": _epoch(existing.started)}
                raise ApiError(
                    "ExecutionAlreadyExists", f"Execution Already Exists: '{existing.arn}'"
                )
            request = document.get("request") if isinstance(document, Mapping) else None
            request_id = str(request.get("requestId", "")) if isinstance(request, Mapping) else ""
            execution = _Execution(
                name,
                STATE_MACHINE_ARN.replace(":stateMachine:", ":execution:") + ":" + name,
                text,
                request_id,
                time.time(),
            )
            self._executions[name] = execution
            thread = threading.Thread(
                target=self._run,
                args=(execution, document, self._generation),
                name=f"sfn-{name[:12]}|{request_id}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()
        return {"executionArn": execution.arn, "startDate": _epoch(execution.started)}

    def _find(self, params: Mapping[str, Any]) -> _Execution:
        arn = str(params.get("executionArn") or "")
        execution = self._executions.get(arn.rpartition(":")[2])
        if execution is None or execution.arn != arn:
            raise ApiError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return execution

    def stop_execution(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """StopExecution: a running execution ends ABORTED (a task in flight keeps running)."""
        with self._lock:
            execution = self._find(params)
            if execution.status == "RUNNING":
                execution.status = "ABORTED"
                execution.stopped = time.time()
                execution.error = str(params.get("error") or "") or None
                execution.cause = str(params.get("cause") or "") or None
                execution.wake.set()
            return {"stopDate": _epoch(execution.stopped or time.time())}

    def describe_execution(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """DescribeExecution."""
        with self._lock:
            return self._describe(self._find(params))

    @staticmethod
    def _describe(execution: _Execution) -> dict[str, Any]:
        out: dict[str, Any] = {
            "executionArn": execution.arn,
            "stateMachineArn": STATE_MACHINE_ARN,
            "name": execution.name,
            "status": execution.status,
            "startDate": _epoch(execution.started),
            "input": execution.input,
        }
        optional = {
            "stopDate": _epoch(execution.stopped),
            "output": execution.output,
            "error": execution.error,
            "cause": execution.cause,
        }
        return out | {k: v for k, v in optional.items() if v is not None}

    # running an execution ------------------------------------------------------

    def _current(self, execution: _Execution, generation: int) -> bool:
        with self._lock:
            return execution.status == "RUNNING" and generation == self._generation

    def _end(self, execution: _Execution, status: str, **fields: str | None) -> bool:
        """Close the execution unless it was closed meanwhile (a stop): True if this did."""
        with self._lock:
            if execution.status != "RUNNING":
                return False
            execution.status = status
            execution.stopped = time.time()
            for name, value in fields.items():
                setattr(execution, name, value)
            self._lock.notify_all()
            return True

    def _sleep(self, execution: _Execution, seconds: float, deadline: float) -> None:
        """Sleep (interrupted by a stop); the execution times out at ``deadline``."""
        execution.wake.wait(max(0.0, min(seconds, deadline - time.time())))

    def _run(self, execution: _Execution, document: Any, generation: int) -> None:
        definition = self.definition
        deadline = execution.started + float(definition.get("TimeoutSeconds", 99999999))
        name = str(definition["StartAt"])
        try:
            while self._current(execution, generation):
                if time.time() >= deadline:
                    self._end(execution, "TIMED_OUT", error="States.Timeout")
                    break
                state = definition["States"][name]
                execution.history.append(name)
                kind = state["Type"]
                if kind == "Task":
                    try:
                        document, name = self._task(execution, generation, name, state, document)
                    except _TaskError as failure:
                        self._end(execution, "FAILED", error=failure.error, cause=failure.cause)
                        break
                    if time.time() >= deadline:
                        self._end(execution, "TIMED_OUT", error="States.Timeout")
                        break
                elif kind == "Choice":
                    name = _choose(state, document)
                elif kind == "Wait":
                    seconds = (
                        float(_get(document, state["SecondsPath"]))
                        if "SecondsPath" in state
                        else float(state["Seconds"])
                    )
                    self._sleep(execution, seconds * self.wait_scale, deadline)
                    name = state["Next"]
                elif kind == "Pass":
                    document = _put(document, state.get("ResultPath", "$"), state.get("Result"))
                    name = state["Next"]
                elif kind == "Succeed":
                    self._end(execution, "SUCCEEDED", output=json.dumps(document))
                    break
                elif kind == "Fail":
                    self._end(
                        execution, "FAILED", error=state.get("Error"), cause=state.get("Cause")
                    )
                    break
                else:
                    self._end(execution, "FAILED", error="States.Runtime", cause=f"{kind} state")
                    break
        except (KeyError, ValueError, TypeError) as error:
            self._end(execution, "FAILED", error="States.Runtime", cause=type(error).__name__)
        with self._lock:
            ended = generation == self._generation and execution.status in ENDED_BADLY
        if ended:
            self._safety_net(execution, generation)
        with self._lock:
            self._lock.notify_all()

    def _task(
        self,
        execution: _Execution,
        generation: int,
        name: str,
        state: Mapping[str, Any],
        document: Any,
    ) -> tuple[Any, str]:
        """Run a lambda:invoke Task with its Retry and Catch: (document, next state)."""
        if not str(state["Resource"]).endswith(":states:::lambda:invoke"):
            raise _TaskError("States.Runtime", "only lambda:invoke tasks are played")
        parameters = _template(state.get("Parameters", {}), document)
        function = str(parameters["FunctionName"]).rpartition(":")[2]
        tries: dict[int, int] = {}
        while True:
            attempt = sum(tries.values()) + 1
            try:
                payload = self._invoke(
                    execution,
                    generation,
                    name,
                    function,
                    parameters.get("Payload", {}),
                    float(state.get("TimeoutSeconds", 60)),
                    attempt,
                )
                result = {"Payload": payload, "StatusCode": 200}
                if "ResultSelector" in state:
                    result = _template(state["ResultSelector"], result)
                return _put(document, state.get("ResultPath", "$"), result), str(state["Next"])
            except _TaskError as failure:
                if not self._current(execution, generation):
                    return document, name
                retry = self._retrier(state.get("Retry", ()), failure.error, tries)
                if retry is not None:
                    self._sleep(execution, retry * self.wait_scale, float("inf"))
                    continue
                for catcher in state.get("Catch", ()):
                    if _matches(catcher["ErrorEquals"], failure.error):
                        caught = {"Error": failure.error, "Cause": failure.cause}
                        return _put(document, catcher.get("ResultPath", "$"), caught), str(
                            catcher["Next"]
                        )
                raise

    @staticmethod
    def _retrier(
        retriers: Sequence[Mapping[str, Any]], error: str, tries: dict[int, int]
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when no Retry applies (any more)."""
        for index, retrier in enumerate(retriers):
            if not _matches(retrier["ErrorEquals"], error):
                continue
            done = tries.get(index, 0)
            if done >= int(retrier.get("MaxAttempts", 3)):
                return None
            tries[index] = done + 1
            interval = float(retrier.get("IntervalSeconds", 1))
            return interval * float(retrier.get("BackoffRate", 2.0)) ** done
        return None

    def _fault(self, state: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.state == state:
                    self._faults.remove(fault)
                    return fault
        return None

    def _worker(self, function: str) -> LambdaWorker:
        with self._lock:
            config = self.configs[function]
            idle = self._idle[function]
            while idle:
                worker = idle.pop()
                if worker.alive and not worker.busy:
                    return worker
            assert config.env is not None
            worker = LambdaWorker(
                config.env,
                timeout=config.timeout,
                name=f"{function.split('-')[-2].lower()}-{len(self._workers)}",
                handler=self.handlers[function],
                function_name=function,
                python=config.python,
            )
            self._workers.append(worker)
            return worker

    def _invoke(
        self,
        execution: _Execution,
        generation: int,
        state: str,
        function: str,
        payload: Any,
        task_timeout: float,
        attempt: int,
        *,
        bound: bool = True,
    ) -> Any:
        """One Invoke of ``function``: its result, or the task's error (``_TaskError``).

        ``bound``: a task of the execution (it ends when the execution is stopped);
        else a delivery of an event about the execution (the safety net)."""
        config = self.configs.get(function)
        if config is None:
            raise _TaskError("Lambda.ResourceNotFoundException", f"Function not found: {function}")
        record = TaskRun(execution.name, execution.request_id, state, attempt, time.time())
        with self._lock:
            index = len(self._runs)
            self._runs.append(record)
        fault = self._fault(state)
        if config.env is None or (fault is not None and fault.kind == "refuse"):
            error = fault.error if fault is not None else "Lambda.ResourceNotReadyException"
            self._close(index, generation, "refused")
            raise _TaskError(error, _cause(error, "the local Invoke was refused"))
        worker = self._worker(function)
        outcome, result = "Runtime.InitError", None
        try:
            try:
                invocation = worker.invoke(payload)
            except DriverError:
                self._close(index, generation, outcome, worker)
                raise _TaskError(
                    "Runtime.InitError", _cause("Runtime.InitError", "init failed")
                ) from None
            with self._lock:
                self._live[index] = (worker, execution)
                self._runs[index] = replace(self._runs[index], worker=worker.name)
            outcome, result = self._await(
                execution, generation, invocation, fault, time.time() + task_timeout, bound
            )
        finally:
            with self._lock:
                self._live.pop(index, None)
        self._close(index, generation, outcome, worker)
        if outcome == "ok":
            return result.payload if result is not None else None
        if outcome in ("late", "stopped"):
            raise _TaskError("States.Timeout", "")
        if outcome == "timeout":
            message = f"Task timed out after {config.timeout:.2f} seconds"
            raise _TaskError("Sandbox.Timedout", _cause("Sandbox.Timedout", message))
        if outcome in ("killed", "lost"):
            error = result if outcome == "killed" else "Lambda.ServiceException"
            raise _TaskError(error, _cause(error, "the local sandbox was lost"))
        message = result.message if result is not None and result.message else outcome
        raise _TaskError(outcome, _cause(outcome, message))

    def _await(
        self,
        execution: _Execution,
        generation: int,
        invocation: Invocation,
        fault: _Fault | None,
        task_deadline: float,
        bound: bool,
    ) -> tuple[str, Any]:
        """Wait for the invocation: (outcome, result). A task timeout or a stop leaves the
        function running (its result is dropped, "late"); the function timeout kills it."""
        kill_at = (
            time.time() + fault.seconds if fault is not None and fault.kind == "kill" else None
        )
        while not invocation.done():
            now = time.time()
            if kill_at is not None and now >= kill_at and fault is not None:
                invocation.worker.kill()
                invocation.wait()
                return "killed", fault.error
            if now >= invocation.deadline + KILL_GRACE:
                break
            stopped = bound and not self._current(execution, generation)
            if now >= task_deadline or stopped:
                orphan = threading.Thread(target=invocation.wait, daemon=True, name="orphan")
                orphan.start()
                with self._lock:
                    self._orphans.append((execution.request_id, orphan))
                return ("stopped" if stopped else "late"), None
            time.sleep(0.02)
        result = invocation.wait()
        if result.timed_out:
            return "timeout", result
        if result.crashed:
            with self._lock:
                asked = self._kill_requests.pop(execution.request_id, None)
            if asked is not None:
                return "killed", asked
            return "Runtime.ExitError", result
        if fault is not None and fault.kind == "lose":
            return "lost", result
        return (result.error or "ok"), result

    def _close(
        self, index: int, generation: int, outcome: str, worker: LambdaWorker | None = None
    ) -> None:
        with self._lock:
            if generation != self._generation:
                return
            self._runs[index] = replace(self._runs[index], ended=time.time(), outcome=outcome)
            if worker is not None and worker.alive and not worker.busy:
                self._idle[worker.function_name].append(worker)
            self._lock.notify_all()

    def _safety_net(self, execution: _Execution, generation: int) -> None:
        """EventBridge's status-change event to the Answer function (retried as Lambda's
        asynchronous invocations are)."""
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": STATUS_CHANGE,
            "source": "aws.states",
            "account": ACCOUNT_ID,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [execution.arn],
            "detail": {
                **self._describe(execution),
                "startDate": int(execution.started * 1000),
                "stopDate": int((execution.stopped or time.time()) * 1000),
                "output": None,
                "outputDetails": None,
            },
        }
        for attempt in range(1, SAFETY_NET_ATTEMPTS + 1):
            with self._lock:
                if generation != self._generation:
                    return
            try:
                self._invoke(
                    execution,
                    generation,
                    "SafetyNet",
                    ANSWER_FUNCTION,
                    event,
                    1e9,
                    attempt,
                    bound=False,
                )
            except _TaskError:
                time.sleep(self.wait_scale)
                continue
            return


def _choose(state: Mapping[str, Any], document: Any) -> str:
    """A Choice state's next state (string equality, as the definition uses)."""
    for rule in state.get("Choices", ()):
        if set(rule) - {"Variable", "StringEquals", "Next"}:
            raise ValueError("only StringEquals choices are played")
        try:
            value = _get(document, rule["Variable"])
        except KeyError:
            continue
        if value == rule["StringEquals"]:
            return str(rule["Next"])
    if "Default" not in state:
        raise KeyError("States.NoChoiceMatched")
    return str(state["Default"])


class _StatesHandler(JSONRequestHandler):
    server: LoopbackHTTPServer

    def do_POST(self) -> None:
        api: StatesAPI = self.server.app
        status, body = api.handle(self.headers.get("X-Amz-Target", ""), self.read_body())
        data = json.dumps(body).encode()
        with contextlib.suppress(ConnectionError):
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(data)
