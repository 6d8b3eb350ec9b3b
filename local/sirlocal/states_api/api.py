"""The endpoint's API: the JSON protocol, the functions' configuration, faults, records.

Why: the dispatcher reaches Step Functions through boto3 (StartExecution,
StopExecution, DescribeExecution), and the driver arms faults and reads what
ran; both go through :class:`StatesAPI`, whose executions run in
:class:`~sirlocal.states_api.runner.ExecutionRunner`.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from sirlocal import JSONRequestHandler, LoopbackHTTPServer
from sirlocal.driver.workers import LambdaWorker
from sirlocal.states_api.definition import (
    ANSWER_FUNCTION,
    DEFINITION,
    HANDLERS,
    STATE_MACHINE_ARN,
    WORK_FUNCTION,
)
from sirlocal.states_api.records import Execution, Fault, TaskRun, describe, epoch
from sirlocal.states_api.runner import ExecutionRunner

_NAME = re.compile(r"^[0-9A-Za-z_-]{1,80}$")


class ApiError(Exception):
    """An error answer of the JSON protocol."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


class StatesAPI(ExecutionRunner):
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
        super().__init__(definition=definition, wait_scale=wait_scale, handlers=handlers)
        self.host, self.requested_port = host, port
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
            self._faults.extend(Fault("refuse", state, error) for _ in range(times))

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
            self._faults.extend(Fault("kill", state, error, seconds) for _ in range(times))

    def lose_next(self, times: int = 1, state: str = "Work") -> None:
        """The next ``times`` invocations of ``state`` run to their end, but their result
        is lost (``Lambda.ServiceException``): the step runs again."""
        with self._lock:
            self._faults.extend(Fault("lose", state) for _ in range(times))

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
            return [{**describe(e), "history": list(e.history)} for e in chosen]

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
                    return {"executionArn": existing.arn, "startDate": epoch(existing.started)}
                raise ApiError(
                    "ExecutionAlreadyExists", f"Execution Already Exists: '{existing.arn}'"
                )
            request = document.get("request") if isinstance(document, Mapping) else None
            request_id = str(request.get("requestId", "")) if isinstance(request, Mapping) else ""
            execution = Execution(
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
        return {"executionArn": execution.arn, "startDate": epoch(execution.started)}

    def _find(self, params: Mapping[str, Any]) -> Execution:
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
            return {"stopDate": epoch(execution.stopped or time.time())}

    def describe_execution(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """DescribeExecution."""
        with self._lock:
            return describe(self._find(params))


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
