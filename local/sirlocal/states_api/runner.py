"""Running an execution: the definition's states on a thread, its tasks in Lambda workers.

Why: the faults the driver injects (a sandbox killed mid-call, an Invoke
refused, a result lost, a task timeout that leaves the function running) act
where a task meets its worker; this module is that meeting point, apart from
the API that starts, stops and describes executions (:mod:`.api`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sirlocal.driver.errors import DriverError
from sirlocal.driver.workers import KILL_GRACE, Invocation, LambdaWorker
from sirlocal.states_api.definition import (
    ANSWER_FUNCTION,
    HANDLERS,
    REGION,
    apply_template,
    choose,
    error_matches,
    get_path,
    load_definition,
    put_path,
    retry_delay,
)
from sirlocal.states_api.records import Execution, Fault, FunctionConfig, TaskRun, describe
from sirlocal.worker import ACCOUNT_ID

STATUS_CHANGE = "Step Functions Execution Status Change"
ENDED_BADLY = ("FAILED", "TIMED_OUT", "ABORTED")
#: EventBridge invokes its target asynchronously: Lambda tries an event 3 times.
SAFETY_NET_ATTEMPTS = 3


class _TaskError(Exception):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(error)
        self.error, self.cause = error, cause


def _cause(error: str, message: str) -> str:
    return json.dumps({"errorMessage": message, "errorType": error, "stackTrace": []})


class ExecutionRunner:
    """The executions and their task workers, and the state they share (thread-safe).

    The base of :class:`~sirlocal.states_api.api.StatesAPI`, which adds the
    HTTP surface, the functions' configuration, fault arming and the records'
    queries: one object, split in two files by job.
    """

    def __init__(self, *, definition: Path, wait_scale: float, handlers: Mapping[str, str]) -> None:
        self.definition = load_definition(definition)
        self.wait_scale = wait_scale
        #: The handler each function runs (``module.function``, Lambda's ``Handler``).
        self.handlers = dict(handlers)
        self.configs: dict[str, FunctionConfig] = {n: FunctionConfig() for n in HANDLERS}
        self._lock = threading.Condition()
        self._executions: dict[str, Execution] = {}
        self._runs: list[TaskRun] = []
        self._live: dict[int, tuple[LambdaWorker, Execution]] = {}  # run index -> worker
        self._idle: dict[str, list[LambdaWorker]] = {n: [] for n in HANDLERS}
        self._workers: list[LambdaWorker] = []
        self._threads: list[threading.Thread] = []
        self._faults: deque[Fault] = deque()
        self._kill_requests: dict[str, str] = {}  # request id -> error reported
        #: Functions still running after their task gave up on them (timeout, stop).
        self._orphans: list[tuple[str, threading.Thread]] = []
        self._generation = 0
        #: Where each worker kept warm across a reset was in its log then.
        self._log_start: dict[int, int] = {}

    def _current(self, execution: Execution, generation: int) -> bool:
        with self._lock:
            return execution.status == "RUNNING" and generation == self._generation

    def _end(self, execution: Execution, status: str, **fields: str | None) -> bool:
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

    def _sleep(self, execution: Execution, seconds: float, deadline: float) -> None:
        """Sleep (interrupted by a stop); the execution times out at ``deadline``."""
        execution.wake.wait(max(0.0, min(seconds, deadline - time.time())))

    def _run(self, execution: Execution, document: Any, generation: int) -> None:
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
                    name = choose(state, document)
                elif kind == "Wait":
                    seconds = (
                        float(get_path(document, state["SecondsPath"]))
                        if "SecondsPath" in state
                        else float(state["Seconds"])
                    )
                    self._sleep(execution, seconds * self.wait_scale, deadline)
                    name = state["Next"]
                elif kind == "Pass":
                    document = put_path(document, state.get("ResultPath", "$"), state.get("Result"))
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
        execution: Execution,
        generation: int,
        name: str,
        state: Mapping[str, Any],
        document: Any,
    ) -> tuple[Any, str]:
        """Run a lambda:invoke Task with its Retry and Catch: (document, next state)."""
        if not str(state["Resource"]).endswith(":states:::lambda:invoke"):
            raise _TaskError("States.Runtime", "only lambda:invoke tasks are played")
        parameters = apply_template(state.get("Parameters", {}), document)
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
                    result = apply_template(state["ResultSelector"], result)
                return put_path(document, state.get("ResultPath", "$"), result), str(state["Next"])
            except _TaskError as failure:
                if not self._current(execution, generation):
                    return document, name
                retry = retry_delay(state.get("Retry", ()), failure.error, tries)
                if retry is not None:
                    self._sleep(execution, retry * self.wait_scale, float("inf"))
                    continue
                for catcher in state.get("Catch", ()):
                    if error_matches(catcher["ErrorEquals"], failure.error):
                        caught = {"Error": failure.error, "Cause": failure.cause}
                        return put_path(document, catcher.get("ResultPath", "$"), caught), str(
                            catcher["Next"]
                        )
                raise

    def _fault(self, state: str) -> Fault | None:
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
        execution: Execution,
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
        execution: Execution,
        generation: int,
        invocation: Invocation,
        fault: Fault | None,
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

    def _safety_net(self, execution: Execution, generation: int) -> None:
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
                **describe(execution),
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
