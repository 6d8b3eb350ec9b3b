"""A CloudFormation stand-in that plays a stack through the real handler.

Why: unit tests call the handler function; they cannot show what a stack
goes through. This driver does what CloudFormation does with a custom
resource, end to end and offline:

* it builds the events CloudFormation sends (``RequestType``,
  ``ServiceToken``, a pre-signed-looking ``ResponseURL`` from the receiver,
  the stack ARN, a fresh ``RequestId``, ``PhysicalResourceId``, properties
  with CloudFormation's string scalars, ``OldResourceProperties``);
* it invokes the handler in a :class:`LambdaWorker` (a child process that
  imported ``sir_membership.app`` once, with a real deadline; killed at the
  deadline as Lambda would) and waits for the answer PUT at the receiver;
  when the dispatcher started the request's execution (on the local Step
  Functions endpoint, :mod:`sirlocal.states_api`, whose tasks run in workers
  too), it keeps waiting, as CloudFormation does, up to the resource's
  ServiceTimeout counted from the request;
* it refuses an answer that breaks the response contract, by raising
  :class:`ContractViolation` (ids not echoed, empty physical id, FAILED
  without a reason, over 4,096 bytes, answered more than once);
* it follows the answer the way a stack does: a failed Create (or a
  succeeded one whose stack fails later, ``later_failure``) rolls back
  with a Delete of the answered physical id; a failed Update rolls back with
  an Update whose old and new properties are swapped; a replacement (new
  physical id) deletes the old resource in the cleanup phase, and a rolled
  back replacement gets no rollback Update: the new one is deleted;
* it can cancel an update mid-way (``cancel_update``): the rollback Update
  goes to a second worker while the forward invocation still runs, as
  CloudFormation sends it without waiting for an invocation it gave up on;
* it records the stack events (``CREATE_COMPLETE``, ``UPDATE_FAILED``,
  ``UPDATE_ROLLBACK_COMPLETE``, ...) with their reasons, and times each
  operation.

Everything started here is stopped by the context managers, also on error;
each worker runs in its own process group.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Protocol

from sirlocal.receiver import ReceivedPut, ResponseReceiver, normalize_path
from sirlocal.worker import ACCOUNT_ID, DEFAULT_FUNCTION_NAME, DEFAULT_HANDLER

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
RESOURCE_TYPE = "Custom::SecurityIRMembership"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{DEFAULT_FUNCTION_NAME}"
MAX_BODY_BYTES = 4096
#: Seconds after the deadline before a still-running invocation is killed.
KILL_GRACE = 0.5
#: CloudFormation's default (and largest) ServiceTimeout of a custom resource, seconds.
MAX_SERVICE_TIMEOUT = 3600.0
NO_RESPONSE_REASON = (
    "CloudFormation did not receive a response from your Custom Resource before the "
    "ServiceTimeout. Please check your custom resource function's logs"
)

RequestType = Literal["Create", "Update", "Delete"]

_LIVE_WORKERS: set[LambdaWorker] = set()
_LIVE_LOCK = threading.Lock()


class DriverError(Exception):
    """The driver could not play the stack (worker failed to start, wrong stack state)."""


class ContractViolation(DriverError):
    """The function's answer breaks CloudFormation's custom resource response contract."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("response contract broken: " + "; ".join(problems))
        self.problems = list(problems)


class NoResponse(ContractViolation):
    """No answer was accepted before the invocation ended (CloudFormation would time out)."""


# --------------------------------------------------------------------------- the Lambda worker


@dataclass(frozen=True)
class InvocationResult:
    """How one invocation ended, as Lambda would report it."""

    aws_request_id: str
    seconds: float
    error: str | None = None
    timed_out: bool = False
    crashed: bool = False
    cold: bool = False
    #: What the handler returned (JSON), and its exception's text (Lambda returns both
    #: to a synchronous caller: Step Functions reads them).
    payload: Any = None
    message: str | None = None


class Invocation:
    """An invocation in flight on one worker."""

    def __init__(self, worker: LambdaWorker, request_id: str, deadline: float, cold: bool) -> None:
        self.worker = worker
        self.aws_request_id = request_id
        self.deadline = deadline  # epoch seconds
        self.started = time.time()
        self.cold = cold
        self._result: InvocationResult | None = None
        self._lock = threading.Lock()

    def done(self) -> bool:
        """True once the handler returned (does not block)."""
        if self._result is not None:
            return True
        return self._poll(0.0) is not None

    def wait(self) -> InvocationResult:
        """Block until the handler returns, or kill the worker at the deadline."""
        result = self._poll(max(0.0, self.deadline + KILL_GRACE - time.time()))
        if result is not None:
            return result
        with self._lock:
            if self._result is None:
                self.worker.kill()
                self._result = InvocationResult(
                    self.aws_request_id, time.time() - self.started, "Task timed out", True, False
                )
            return self._result

    def _poll(self, timeout: float) -> InvocationResult | None:
        with self._lock:
            if self._result is not None:
                return self._result
            message = self.worker._next_message(timeout)
            if message is None:
                return None
            self.worker._busy = False
            if "done" not in message:  # the pipe closed: the process died
                self._result = InvocationResult(
                    self.aws_request_id,
                    time.time() - self.started,
                    "Runtime.ExitError",
                    crashed=True,
                    cold=self.cold,
                )
            else:
                done = message["done"]
                self._result = InvocationResult(
                    self.aws_request_id,
                    float(done["seconds"]),
                    done.get("error"),
                    cold=self.cold,
                    payload=done.get("result"),
                    message=done.get("message"),
                )
            return self._result


class LambdaWorker:
    """A Lambda execution environment: ``python -m sirlocal.worker`` in its own process group.

    Started lazily (the first invocation is a cold start); :meth:`restart`
    forces the next one to be cold again. stdout and stderr (the function's
    logs) go to one file that survives restarts; :meth:`logs` reads it.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        timeout: float = 30.0,
        name: str = "worker",
        handler: str = DEFAULT_HANDLER,
        function_name: str = DEFAULT_FUNCTION_NAME,
        memory_mb: int = 256,
        start_timeout: float = 60.0,
        python: Sequence[str] = (),
    ) -> None:
        self.env = dict(env)
        #: The interpreter and its flags (default: this one), e.g. a bare
        #: python3.13 with ``-S`` to run the built package and nothing else.
        self.python = list(python) or [sys.executable]
        self.timeout = timeout
        self.name = name
        self.handler = handler
        self.function_name = function_name
        self.memory_mb = memory_mb
        self.start_timeout = start_timeout
        self.cold_starts = 0
        self.init_seconds: list[float] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._busy = False
        self._directory = tempfile.mkdtemp(prefix=f"sirlocal-{name}-")
        self.log_path = Path(self._directory, "function.log")
        self.log_path.touch()

    # lifecycle -----------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """True while the worker process runs."""
        return self._process is not None and self._process.poll() is None

    @property
    def busy(self) -> bool:
        """True while an invocation is in flight."""
        return self._busy

    @property
    def pid(self) -> int | None:
        """The worker's pid (= its process group id) while it runs."""
        return self._process.pid if self.alive and self._process is not None else None

    def start(self) -> LambdaWorker:
        """Spawn the worker and wait until it imported the handler (a cold start)."""
        if self.alive:
            return self
        read_fd, write_fd = os.pipe()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self._process = subprocess.Popen(
                [
                    *self.python,
                    "-m",
                    "sirlocal.worker",
                    "--result-fd",
                    str(write_fd),
                    "--handler",
                    self.handler,
                    "--function-name",
                    self.function_name,
                    "--memory",
                    str(self.memory_mb),
                ],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                pass_fds=(write_fd,),
                env=self.env,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
            log.close()
        with _LIVE_LOCK:
            _LIVE_WORKERS.add(self)
        self._messages = queue.Queue()
        reader = os.fdopen(read_fd, "r", encoding="utf-8")
        threading.Thread(
            target=_read_messages, args=(reader, self._messages), daemon=True, name=self.name
        ).start()
        self._busy = False
        message = self._next_message(self.start_timeout)
        if message is None or "ready" not in message:
            tail = self.logs()[-3000:]
            self.kill()
            raise DriverError(f"{self.name} did not start ({message}):\n{tail}")
        self.cold_starts += 1
        self.init_seconds.append(float(message["ready"]["init_seconds"]))
        return self

    def stop(self, grace: float = 3.0) -> None:
        """Ask the worker to exit, then make sure its whole process group is gone."""
        process = self._process
        if process is not None and process.poll() is None and process.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                process.stdin.write(b'{"exit": true}\n')
                process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the worker's process group (Lambda ending a timed-out environment)."""
        process = self._process
        if process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
            if process.stdin is not None:
                with contextlib.suppress(OSError, ValueError):
                    process.stdin.close()
        self._process = None
        self._busy = False
        with _LIVE_LOCK:
            _LIVE_WORKERS.discard(self)

    def restart(self) -> LambdaWorker:
        """Kill the environment and start a fresh one (the next invocation is cold)."""
        self.kill()
        return self.start()

    def close(self) -> None:
        """Stop the worker and delete its log."""
        self.stop()
        with contextlib.suppress(OSError):
            self.log_path.unlink()
            os.rmdir(self._directory)

    def __enter__(self) -> LambdaWorker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # invocations ---------------------------------------------------------------

    def invoke(
        self,
        event: Mapping[str, Any],
        timeout: float | None = None,
        *,
        request_id: str | None = None,
    ) -> Invocation:
        """Start one invocation (asynchronously, like CloudFormation's); see :meth:`Invocation.wait`.

        ``request_id``: the context's ``aws_request_id`` (default: a fresh one);
        Lambda keeps it across the retries of one asynchronous event.
        """
        if self._busy:
            raise DriverError(f"{self.name} is still running an invocation")
        cold = not self.alive
        if cold:
            self.start()
        process = self._process
        assert process is not None
        assert process.stdin is not None
        seconds = self.timeout if timeout is None else timeout
        request_id = request_id or str(uuid.uuid4())
        invocation = Invocation(self, request_id, time.time() + seconds, cold)
        line = json.dumps(
            {
                "event": event,
                "deadline_ms": int(invocation.deadline * 1000),
                "aws_request_id": request_id,
            }
        )
        self._busy = True
        process.stdin.write(line.encode() + b"\n")
        process.stdin.flush()
        return invocation

    def _next_message(self, timeout: float) -> dict[str, Any] | None:
        try:
            message = (
                self._messages.get(timeout=timeout) if timeout > 0 else self._messages.get_nowait()
            )
        except queue.Empty:
            return None
        return message if message is not None else {"eof": True}

    # logs ----------------------------------------------------------------------

    def log_mark(self) -> int:
        """The current end of the log, for :meth:`logs` ``since``."""
        return self.log_path.stat().st_size

    def logs(self, since: int = 0) -> str:
        """The function's logs (stdout and stderr) from byte offset ``since``."""
        with open(self.log_path, "rb") as log:
            log.seek(since)
            return log.read().decode("utf-8", "replace")


def _read_messages(reader: IO[str], messages: queue.Queue[dict[str, Any] | None]) -> None:
    with reader:
        for line in reader:
            with contextlib.suppress(ValueError):
                messages.put(json.loads(line))
    messages.put(None)


@atexit.register
def stop_all_workers() -> None:
    """Kill every worker still running (registered with ``atexit``)."""
    with _LIVE_LOCK:
        live = list(_LIVE_WORKERS)
    for worker in live:
        worker.kill()


def worker_env(base: Mapping[str, str], **extra: str) -> dict[str, str]:
    """``base`` (``LocalServices.child_env()``) plus what the Lambda runtime and template set."""
    src, local = REPO_ROOT / "src", REPO_ROOT / "local"
    env = dict(base)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join((str(src), str(local))),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_LAMBDA_FUNCTION_NAME": DEFAULT_FUNCTION_NAME,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{DEFAULT_FUNCTION_NAME}",
            "_HANDLER": DEFAULT_HANDLER,
            "POWERTOOLS_SERVICE_NAME": "sir-membership",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


class WorkerPool:
    """Numbered workers started on first use (a second one for concurrent deliveries)."""

    def __init__(
        self, env: Mapping[str, str], *, timeout: float = 30.0, python: Sequence[str] = ()
    ) -> None:
        self.env = dict(env)
        self.timeout = timeout
        self.python = tuple(python)
        self._workers: list[LambdaWorker] = []

    def get(self, index: int = 0) -> LambdaWorker:
        """Worker ``index`` (created, not started, if new)."""
        while len(self._workers) <= index:
            n = len(self._workers)
            self._workers.append(
                LambdaWorker(self.env, timeout=self.timeout, name=f"worker-{n}", python=self.python)
            )
        return self._workers[index]

    @property
    def workers(self) -> list[LambdaWorker]:
        """Every worker made so far."""
        return list(self._workers)

    def log_marks(self) -> dict[int, int]:
        """Each worker's current log end."""
        return {i: w.log_mark() for i, w in enumerate(self._workers)}

    def logs_since(self, marks: Mapping[int, int]) -> str:
        """Every worker's logs written after ``marks``."""
        return "".join(w.logs(marks.get(i, 0)) for i, w in enumerate(self._workers))

    def close(self) -> None:
        """Stop every worker."""
        for worker in self._workers:
            worker.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- events and answers


def cfn_value(value: Any) -> Any:
    """A property value as CloudFormation delivers it: scalars become strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): cfn_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [cfn_value(v) for v in value]
    return value


def cfn_properties(
    properties: Mapping[str, Any], *, service_token: str = FUNCTION_ARN, service_timeout: int = 600
) -> dict[str, Any]:
    """``ResourceProperties`` for a declared property set (ServiceToken first, like CloudFormation)."""
    out: dict[str, Any] = {"ServiceToken": service_token, "ServiceTimeout": str(service_timeout)}
    out.update(cfn_value(dict(properties)))
    return out


def service_timeout(event: Mapping[str, Any]) -> float:
    """Seconds CloudFormation waits for the answer to ``event``, from when it sent it.

    The resource's ``ServiceTimeout`` (a string of 1..3600 in the event's
    ResourceProperties), else 3600. CloudFormation refuses other values
    before it invokes anything; here they are clamped, so a test of bad
    input still gets a delivery.
    """
    raw = (event.get("ResourceProperties") or {}).get("ServiceTimeout")
    try:
        seconds = float(raw) if raw is not None else MAX_SERVICE_TIMEOUT
    except (TypeError, ValueError):
        return MAX_SERVICE_TIMEOUT
    return min(max(seconds, 1.0), MAX_SERVICE_TIMEOUT)


def response_problems(event: Mapping[str, Any], put: ReceivedPut) -> list[str]:
    """Why CloudFormation would refuse (or misread) this answer to ``event``; [] if fine."""
    problems = [f"receiver: {p}" for p in put.problems]
    if len(put.raw.encode()) > MAX_BODY_BYTES:
        problems.append(f"body is {len(put.raw.encode())} bytes, over {MAX_BODY_BYTES}")
    body = put.body
    if not isinstance(body, dict):
        return [*problems, "body is not a JSON object"]
    for key in ("StackId", "RequestId", "LogicalResourceId"):
        if not body.get(key):
            problems.append(f"{key} is missing")
        elif body[key] != event.get(key):
            problems.append(f"{key} does not echo the request")
    if body.get("Status") not in ("SUCCESS", "FAILED"):
        problems.append("Status is not SUCCESS or FAILED")
    physical = body.get("PhysicalResourceId")
    if not isinstance(physical, str) or not physical:
        problems.append("PhysicalResourceId is empty")
    elif len(physical) > 1024:
        problems.append("PhysicalResourceId is over 1 KB")
    if body.get("Status") == "FAILED" and not str(body.get("Reason") or "").strip():
        problems.append("FAILED without a Reason")
    if "Data" in body and not isinstance(body["Data"], dict):
        problems.append("Data is not an object")
    return problems


class TaskRecord(Protocol):
    """One task attempt of a request's execution (``sirlocal.states_api.TaskRun``)."""

    @property
    def state(self) -> str:
        """The definition's state (Work, Answer, ...), or SafetyNet."""

    @property
    def attempt(self) -> int:
        """1, then the Retry's attempts."""

    @property
    def outcome(self) -> str | None:
        """None while running, else "ok" or how it ended."""

    @property
    def ran(self) -> bool:
        """Whether the function ran for it."""


class Executions(Protocol):
    """The local Step Functions endpoint, as the driver waits on it (``StatesAPI``).

    A protocol, so this module does not import ``states_api`` (which starts
    :class:`LambdaWorker` processes: it imports this module).
    """

    def busy(self, request_id: str | None = None) -> bool:
        """Whether an execution (or a task) of the request still runs."""

    def runs(self, request_id: str | None = None, *, since: float | None = None) -> Sequence[Any]:
        """The request's task attempts (``TaskRecord``)."""

    def kill_running(self, request_id: str, error: str = ...) -> bool:
        """Kill the sandbox of the request's running task."""


@dataclass(frozen=True)
class Answer:
    """The accepted answer to one request, as CloudFormation reads it."""

    status: str
    physical_id: str
    reason: str
    data: dict[str, Any]

    @property
    def ok(self) -> bool:
        """True for SUCCESS."""
        return self.status == "SUCCESS"


@dataclass
class Delivery:
    """One request sent to the function (by one or more workers) and what came back.

    ``results`` are the invocations the driver made (the dispatcher);
    ``task_runs`` the task attempts of the request's execution on the local
    Step Functions endpoint (Work steps, with their retries, the Answer, a
    safety-net delivery). Every PUT to the ResponseURL counts, whichever
    invocation made it.
    """

    event: dict[str, Any]
    path: str
    started: float
    results: list[InvocationResult]
    puts: list[ReceivedPut]
    timeout: float
    expected_answers: int = 1
    service_timeout: float = MAX_SERVICE_TIMEOUT
    task_runs: list[Any] = field(default_factory=list)
    #: A task's sandbox was killed mid-step (``deliver_crashing``).
    retried: bool = False
    #: CloudFormation stopped waiting for this request (a cancelled update's forward
    #: request): no answer is expected, at most one is allowed.
    abandoned: bool = False

    @property
    def accepted(self) -> list[ReceivedPut]:
        """The PUTs the receiver stored (answered 200)."""
        return [p for p in self.puts if p.accepted]

    @property
    def in_time(self) -> list[ReceivedPut]:
        """The accepted PUTs that came before the ServiceTimeout (CloudFormation reads these)."""
        return [p for p in self.accepted if p.time - self.started <= self.service_timeout]

    @property
    def work_steps(self) -> int:
        """Work task invocations that ran for this request (its steps and their retries)."""
        return sum(1 for r in self.task_runs if r.state == "Work" and r.ran)

    @property
    def answer_deadline(self) -> float:
        """Seconds from the start the answer may take: the function timeout when the
        dispatcher answered, the ServiceTimeout once an execution carries the request."""
        return self.service_timeout if self.task_runs or self.retried else self.timeout

    @property
    def answer(self) -> Answer | None:
        """The first accepted answer in time (None: CloudFormation got no answer)."""
        if not self.in_time:
            return None
        body = self.in_time[0].body
        return Answer(
            str(body.get("Status")),
            str(body.get("PhysicalResourceId")),
            str(body.get("Reason") or ""),
            dict(body.get("Data") or {}),
        )

    @property
    def answer_seconds(self) -> float | None:
        """Seconds from the invocation to the first accepted PUT in time."""
        return self.in_time[0].time - self.started if self.in_time else None

    def problems(self) -> list[str]:
        """Contract problems of every accepted answer, and of answering too often."""
        out: list[str] = []
        for put in self.accepted:
            out += response_problems(self.event, put)
        if len(self.accepted) > self.expected_answers:
            out.append(
                f"answered {len(self.accepted)} times for {self.expected_answers} invocation(s)"
            )
        return out


@dataclass(frozen=True)
class StackEvent:
    """One line of ``describe-stack-events``."""

    time: float
    logical_id: str
    resource_type: str
    status: str
    physical_id: str = ""
    reason: str = ""


@dataclass
class Operation:
    """One stack operation (create, update, delete): its deliveries, events and duration."""

    action: str
    stack_status: str = ""
    events: list[StackEvent] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0
    #: For a cancelled update: whether the rollback was delivered while the
    #: forward invocation was still running.
    overlapped: bool | None = None

    @property
    def first_answer(self) -> Answer | None:
        """The answer CloudFormation took for the operation's own request (not its rollback)."""
        return self.answers[0] if self.answers else None

    @property
    def ok(self) -> bool:
        """True when the stack ended in a *_COMPLETE state that is not a rollback."""
        return self.stack_status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE")


def format_events(events: Sequence[StackEvent], *, width: int = 100) -> str:
    """Stack events as a plain-text table, oldest first (CloudFormation's console is newest first)."""
    if not events:
        return "  (no events)"
    origin = events[0].time
    rows = [("t(s)", "Logical id", "Status", "Reason")]
    for e in events:
        rows.append((f"{e.time - origin:5.2f}", e.logical_id, e.status, e.reason))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for row in rows:
        head = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3]))
        reason = row[3]
        room = max(20, width - len(head) - 4)
        if len(reason) > room:
            reason = reason[: room - 3] + "..."
        lines.append(f"  {head}  {reason}".rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------- the stack


@dataclass
class PendingDelivery:
    """A delivery whose invocations may still be running (see ``StackDriver.begin``)."""

    stack: StackDriver
    event: dict[str, Any]
    path: str
    before: int
    started: float
    timeout: float
    invocations: list[Invocation]

    def running(self) -> bool:
        """True while any invocation has not returned, or the request's execution runs."""
        if not all(i.done() for i in self.invocations):
            return True
        states = self.stack.states
        return states is not None and states.busy(str(self.event.get("RequestId", "")))

    def finish(self) -> Delivery:
        """Wait for the first answer and every invocation's end; check the contract.

        When the dispatcher ends without answering while the request's
        execution runs (the driver's ``states`` is busy with this request),
        keep waiting for the answer as CloudFormation does: up to the
        ServiceTimeout from the start.
        """
        stack = self.stack
        stack._wait_for_answer(self.path, self.before, self.invocations)
        results = [i.wait() for i in self.invocations]
        limit = service_timeout(self.event)
        request_id = str(self.event.get("RequestId", ""))
        api = stack.states
        if api is not None:
            stack._wait_for_execution(self.path, self.before, request_id, self.started + limit)
        delivery = Delivery(
            event=self.event,
            path=self.path,
            started=self.started,
            results=results,
            puts=stack.receiver.requests(self.path)[self.before :],
            timeout=self.timeout,
            expected_answers=len(self.invocations),
            service_timeout=limit,
            task_runs=list(api.runs(request_id, since=self.started)) if api else [],
        )
        stack.deliveries.append(delivery)
        if stack.strict:
            problems = delivery.problems()
            if problems:
                raise ContractViolation(problems)
        return delivery


class StackDriver:
    """One stack holding one ``Custom::SecurityIRMembership``, played like CloudFormation.

    ``strict`` (default) raises :class:`ContractViolation` when an answer
    breaks the contract and :class:`NoResponse` when none arrives; with
    ``strict=False`` a missing answer becomes CloudFormation's timeout failure.
    With ``states`` (``services.states``), an answer sent by the request's
    execution is waited for, up to the resource's ServiceTimeout.
    """

    def __init__(
        self,
        receiver: ResponseReceiver,
        worker: LambdaWorker,
        *,
        stack_name: str = "sir-membership-stack",
        logical_id: str = "Membership",
        timeout: float | None = None,
        strict: bool = True,
        states: Executions | None = None,
    ) -> None:
        self.receiver = receiver
        self.states = states
        self.worker = worker
        self.stack_name = stack_name
        self.logical_id = logical_id
        self.timeout = worker.timeout if timeout is None else timeout
        self.strict = strict
        self.stack_id = ""
        self.status = "NONE"
        self.physical_id: str | None = None
        self.properties: dict[str, Any] | None = None  # as CloudFormation sends them
        self.attributes: dict[str, Any] = {}
        self.events: list[StackEvent] = []
        self.operations: list[Operation] = []
        self.deliveries: list[Delivery] = []
        self._operation: Operation | None = None
        #: The rollback Update to send again (old, new, physical id) after UPDATE_ROLLBACK_FAILED.
        self._failed_rollback: tuple[dict[str, Any], dict[str, Any], str] | None = None

    # events and deliveries -----------------------------------------------------

    def event(
        self,
        request_type: RequestType,
        properties: Mapping[str, Any],
        *,
        physical_id: str | None = None,
        old_properties: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """The event CloudFormation would send (``properties`` already in CloudFormation form)."""
        if not self.stack_id:
            self.stack_id = f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{self.stack_name}/{uuid.uuid4()}"
        request_id = request_id or str(uuid.uuid4())
        event: dict[str, Any] = {
            "RequestType": request_type,
            "ServiceToken": properties.get("ServiceToken", FUNCTION_ARN),
            "ResponseURL": "",
            "StackId": self.stack_id,
            "RequestId": request_id,
            "LogicalResourceId": self.logical_id,
            "ResourceType": RESOURCE_TYPE,
        }
        if request_type != "Create":
            event["PhysicalResourceId"] = physical_id or ""
        event["ResourceProperties"] = copy.deepcopy(dict(properties))
        if request_type == "Update":
            event["OldResourceProperties"] = copy.deepcopy(dict(old_properties or {}))
        name = f"{self.stack_id}|{self.logical_id}|{request_id}"
        event["ResponseURL"] = self.receiver.url_for(name, event=event)
        return event

    def deliver(
        self,
        event: Mapping[str, Any],
        *,
        workers: Sequence[LambdaWorker] | None = None,
        timeout: float | None = None,
    ) -> Delivery:
        """Invoke ``event`` on each of ``workers`` at once (default: this stack's worker).

        Waits for every invocation to end (killing it at its deadline) and
        returns the PUTs made to the event's ResponseURL meanwhile. Raises
        :class:`ContractViolation` in strict mode when an answer breaks the contract.
        """
        return self.begin(event, workers=workers, timeout=timeout).finish()

    def begin(
        self,
        event: Mapping[str, Any],
        *,
        workers: Sequence[LambdaWorker] | None = None,
        timeout: float | None = None,
        aws_request_id: str | None = None,
    ) -> PendingDelivery:
        """Start invoking ``event`` and return at once; ``finish()`` waits as :meth:`deliver`.

        Why: CloudFormation does not wait for an invocation it gave up on (a
        cancelled update): the next request can arrive while it still runs.
        ``aws_request_id``: the Lambda request id (a retry keeps the first one's).
        """
        chosen = list(workers) if workers else [self.worker]
        seconds = self.timeout if timeout is None else timeout
        path = normalize_path(str(event["ResponseURL"]))
        before = len(self.receiver.requests(path))
        started = time.time()
        invocations = [w.invoke(event, seconds, request_id=aws_request_id) for w in chosen]
        return PendingDelivery(self, dict(event), path, before, started, seconds, invocations)

    def deliver_crashing(
        self,
        event: Mapping[str, Any],
        crash_when: Callable[[], bool],
        error: str = "Lambda.ServiceException",
    ) -> Delivery:
        """Invoke ``event``; once ``crash_when()`` holds, kill the sandbox of the request's
        running task (a Work step).

        The sandbox dies mid-step (out of memory, a runtime crash, a lost
        host): the task sees ``error``, and the definition decides what
        follows (a Lambda service error is retried: the step runs again in a
        fresh sandbox; a function error such as ``Runtime.ExitError`` is
        caught and answered). One :class:`Delivery` holds the dispatcher's
        invocation, every task attempt and every PUT. If the request is
        answered before ``crash_when()`` holds, nothing is killed.
        """
        if self.states is None:
            raise DriverError("deliver_crashing needs the local Step Functions endpoint")
        pending = self.begin(event)
        request_id = str(event["RequestId"])
        path = normalize_path(str(event["ResponseURL"]))
        killed = False
        while not crash_when():
            answered = any(p.accepted for p in self.receiver.requests(path)[pending.before :])
            if answered or (not pending.running() and not self.states.busy(request_id)):
                break
            time.sleep(0.01)
        else:
            deadline = time.time() + 5.0
            while not killed and time.time() < deadline:
                killed = self.states.kill_running(request_id, error)
                time.sleep(0.01)
        delivery = pending.finish()
        delivery.retried = killed
        return delivery

    def _wait_for_answer(self, path: str, before: int, invocations: Sequence[Invocation]) -> None:
        """Wait for the first accepted PUT (receiver.wait_for) while any invocation runs."""
        while True:
            if before == 0:
                with contextlib.suppress(TimeoutError):
                    self.receiver.wait_for(path, timeout=0.05)
                    return
            elif any(p.accepted for p in self.receiver.requests(path)[before:]):
                return
            else:
                time.sleep(0.02)
            if all(i.done() or time.time() > i.deadline + KILL_GRACE for i in invocations):
                return

    def _wait_for_execution(self, path: str, before: int, request_id: str, deadline: float) -> None:
        """Wait while the execution of ``request_id`` (or a task of it) runs.

        Until the first accepted PUT, up to ``deadline`` (epoch seconds: the
        ServiceTimeout); after it, for one more function timeout at most, so
        a second answer (a safety net's) is still seen (and counted). Returns
        at once when nothing runs for the request: no answer can come.
        """
        api = self.states
        assert api is not None
        answered: float | None = None
        while time.time() < deadline and api.busy(request_id):
            if answered is None and any(p.accepted for p in self.receiver.requests(path)[before:]):
                answered = time.time()
            if answered is not None and time.time() > answered + self.timeout + KILL_GRACE:
                return
            time.sleep(0.02)

    def _answer(
        self,
        event: dict[str, Any],
        crash_when: Callable[[], bool] | None = None,
        crash_error: str = "Lambda.ServiceException",
    ) -> tuple[Answer, Delivery]:
        if crash_when is None:
            delivery = self.deliver(event)
        else:
            delivery = self.deliver_crashing(event, crash_when, crash_error)
        assert self._operation is not None
        self._operation.deliveries.append(delivery)
        answer = delivery.answer
        if answer is None:
            if self.strict:
                raise NoResponse([f"no answer to {event['RequestType']} before the deadline"])
            fallback = event.get("PhysicalResourceId") or event["RequestId"]
            answer = Answer("FAILED", str(fallback), NO_RESPONSE_REASON, {})
        self._operation.answers.append(answer)
        return answer, delivery

    def _record(
        self, status: str, reason: str = "", *, stack: bool = False, physical_id: str | None = None
    ) -> None:
        if stack:
            logical, kind, physical = self.stack_name, "AWS::CloudFormation::Stack", self.stack_id
            self.status = status
            self.receiver.set_stack_status(self.stack_id, status)  # for DescribeStacks
        else:
            logical, kind = self.logical_id, RESOURCE_TYPE
            physical = physical_id if physical_id is not None else (self.physical_id or "")
        event = StackEvent(time.time(), logical, kind, status, physical, reason)
        self.events.append(event)
        if self._operation is not None:
            self._operation.events.append(event)

    @contextlib.contextmanager
    def _operate(self, action: str) -> Iterator[Operation]:
        operation = Operation(action)
        self._operation = operation
        started = time.monotonic()
        try:
            yield operation
        finally:
            operation.seconds = time.monotonic() - started
            operation.stack_status = self.status
            self.operations.append(operation)
            self._operation = None

    # stack operations ----------------------------------------------------------

    def create(
        self, properties: Mapping[str, Any], *, later_failure: str | None = None
    ) -> Operation:
        """Create the stack with the resource declared as ``properties``.

        ``later_failure``: another resource of the new stack fails after this
        one was created, so CloudFormation rolls the stack back
        (``ROLLBACK_IN_PROGRESS``) and deletes this resource too.
        """
        if self.status not in ("NONE", "DELETE_COMPLETE", "ROLLBACK_COMPLETE"):
            raise DriverError(f"cannot create: the stack is {self.status}")
        self.stack_id = ""
        self.physical_id, self.properties, self.attributes = None, None, {}
        declared = cfn_properties(properties)
        with self._operate("Create") as operation:
            event = self.event("Create", declared)
            self._record("CREATE_IN_PROGRESS", "User Initiated", stack=True)
            self._record("CREATE_IN_PROGRESS", physical_id="")
            answer, _ = self._answer(event)
            if answer.ok and later_failure is None:
                self.physical_id, self.properties = answer.physical_id, declared
                self.attributes = dict(answer.data)
                self._record("CREATE_COMPLETE")
                self._record("CREATE_COMPLETE", stack=True)
                return operation
            failed = self.logical_id
            if answer.ok and later_failure is not None:
                self._record("CREATE_COMPLETE", physical_id=answer.physical_id)
                failed = "LaterResource"
                failure = StackEvent(
                    time.time(), failed, "AWS::SSM::Parameter", "CREATE_FAILED", "", later_failure
                )
                self.events.append(failure)
                operation.events.append(failure)
            else:
                self._record("CREATE_FAILED", answer.reason, physical_id=answer.physical_id)
            self._record(
                "ROLLBACK_IN_PROGRESS",
                f"The following resource(s) failed to create: [{failed}]. "
                "Rollback requested by user.",
                stack=True,
            )
            if self._delete_resource(answer.physical_id, declared):
                self._record("ROLLBACK_COMPLETE", stack=True)
            else:  # the stack keeps a resource CloudFormation could not delete
                self.physical_id, self.properties = answer.physical_id, declared
                self._record("ROLLBACK_FAILED", stack=True)
            return operation

    def update(
        self,
        properties: Mapping[str, Any],
        *,
        later_failure: str | None = None,
        force: bool = False,
        crash_when: Callable[[], bool] | None = None,
        crash_error: str = "Lambda.ServiceException",
        after_answer: Callable[[], None] | None = None,
    ) -> Operation:
        """Update the resource to ``properties``.

        ``later_failure``: another resource of the stack fails after this one
        was updated, so CloudFormation rolls this one back too. Unchanged
        properties send nothing (as CloudFormation) unless ``force``.
        ``crash_when``: the sandbox of the request's Work step dies once it
        holds (:meth:`deliver_crashing`, ``crash_error``). ``after_answer``
        runs once the update is answered, before anything CloudFormation
        sends next (its rollback).
        """
        if self.status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"):
            raise DriverError(f"cannot update: the stack is {self.status}")
        assert self.physical_id is not None
        assert self.properties is not None
        old, new = self.properties, cfn_properties(properties)
        with self._operate("Update") as operation:
            self._record("UPDATE_IN_PROGRESS", "User Initiated", stack=True)
            if old == new and not force:
                self._record("UPDATE_COMPLETE", stack=True)
                return operation
            before = self.physical_id
            self._record("UPDATE_IN_PROGRESS")
            event = self.event("Update", new, physical_id=before, old_properties=old)
            answer, _ = self._answer(event, crash_when, crash_error)
            if after_answer is not None:
                after_answer()
            if not answer.ok:
                self._record("UPDATE_FAILED", answer.reason)
                self._record(
                    "UPDATE_ROLLBACK_IN_PROGRESS",
                    f"The following resource(s) failed to update: [{self.logical_id}].",
                    stack=True,
                )
                self._roll_back(old, new, current=before, replaced=None)
                return operation
            replaced = answer.physical_id != before
            if replaced:
                self._record(
                    "UPDATE_IN_PROGRESS",
                    "Requested update required the provider to create a new physical resource",
                    physical_id=answer.physical_id,
                )
            self.physical_id, self.properties = answer.physical_id, new
            self.attributes = dict(answer.data)
            self._record("UPDATE_COMPLETE")
            if later_failure is not None:
                failed = StackEvent(
                    time.time(),
                    "LaterResource",
                    "AWS::SSM::Parameter",
                    "UPDATE_FAILED",
                    "",
                    later_failure,
                )
                self.events.append(failed)
                operation.events.append(failed)
                self._record(
                    "UPDATE_ROLLBACK_IN_PROGRESS",
                    "The following resource(s) failed to update: [LaterResource].",
                    stack=True,
                )
                self._roll_back(
                    old, new, current=answer.physical_id, replaced=before if replaced else None
                )
                return operation
            self._record("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", stack=True)
            if replaced:
                self._delete_resource(before, old)
            self._record("UPDATE_COMPLETE", stack=True)
            return operation

    def cancel_update(
        self,
        properties: Mapping[str, Any],
        *,
        cancel_when: Callable[[], bool],
        rollback_worker: LambdaWorker,
    ) -> Operation:
        """Update to ``properties``, cancel the update mid-way, roll back at once.

        As CloudFormation after ``cancel-update-stack``: it stops waiting for
        the forward invocation and sends the rollback Update (old and new
        swapped) while that invocation may still be running. The rollback
        goes to ``rollback_worker`` as soon as ``cancel_when()`` holds (or the
        forward invocation ended); the forward answer, whenever it comes, no
        longer decides anything, but it is still checked against the contract.
        """
        if self.status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"):
            raise DriverError(f"cannot update: the stack is {self.status}")
        assert self.physical_id is not None
        assert self.properties is not None
        old, new = self.properties, cfn_properties(properties)
        before = self.physical_id
        with self._operate("Update") as operation:
            self._record("UPDATE_IN_PROGRESS", "User Initiated", stack=True)
            self._record("UPDATE_IN_PROGRESS")
            forward = self.begin(self.event("Update", new, physical_id=before, old_properties=old))
            while forward.running() and not cancel_when():
                time.sleep(0.02)
            operation.overlapped = forward.running()
            self._record("UPDATE_ROLLBACK_IN_PROGRESS", "Stack update cancelled", stack=True)
            self._record("UPDATE_FAILED", "Resource update cancelled")
            self._record("UPDATE_IN_PROGRESS", physical_id=before)
            rollback = self.event("Update", old, physical_id=before, old_properties=new)
            answered = self.begin(rollback, workers=[rollback_worker]).finish()
            late = forward.finish()
            late.abandoned = True
            for delivery in (late, answered):
                operation.deliveries.append(delivery)
                if delivery.answer is not None:
                    operation.answers.append(delivery.answer)
            answer = answered.answer
            if answer is None and self.strict:
                raise NoResponse(["no answer to the rollback Update before the deadline"])
            if answer is None or not answer.ok:
                self._record("UPDATE_FAILED", answer.reason if answer else NO_RESPONSE_REASON)
                self._record("UPDATE_ROLLBACK_FAILED", stack=True)
                return operation
            self.physical_id, self.properties = answer.physical_id, old
            self.attributes = dict(answer.data)
            self._record("UPDATE_COMPLETE")
            self._record("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", stack=True)
            if answer.physical_id != before:
                self._delete_resource(before, new)
            self._record("UPDATE_ROLLBACK_COMPLETE", stack=True)
            return operation

    def _roll_back(
        self,
        old: dict[str, Any],
        new: dict[str, Any],
        *,
        current: str,
        replaced: str | None,
    ) -> None:
        """Update back to ``old`` (old and new swapped). A replacement (``replaced``: the
        old id) gets no rollback Update: the old resource is current again and the new one
        is deleted in the clean-up ("Custom resource request types")."""
        if replaced is not None:
            self.physical_id, self.properties = replaced, old
            self._record("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", stack=True)
            self._delete_resource(current, new)
            self._record("UPDATE_ROLLBACK_COMPLETE", stack=True)
            return
        self._record("UPDATE_IN_PROGRESS", physical_id=current)
        event = self.event("Update", old, physical_id=current, old_properties=new)
        answer, _ = self._answer(event)
        if not answer.ok:
            self._record("UPDATE_FAILED", answer.reason, physical_id=current)
            self._record("UPDATE_ROLLBACK_FAILED", stack=True)
            self._failed_rollback = (old, new, current)
            return
        self._failed_rollback = None
        self.physical_id, self.properties = answer.physical_id, old
        self.attributes = dict(answer.data)
        self._record("UPDATE_COMPLETE")
        self._record("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", stack=True)
        if answer.physical_id != current:
            self._delete_resource(current, new)
        self._record("UPDATE_ROLLBACK_COMPLETE", stack=True)

    def continue_rollback(self) -> Operation:
        """``continue-update-rollback``: send the failed rollback Update again (a new request)."""
        if self.status != "UPDATE_ROLLBACK_FAILED" or self._failed_rollback is None:
            raise DriverError(f"cannot continue the rollback: the stack is {self.status}")
        old, new, current = self._failed_rollback
        with self._operate("ContinueRollback") as operation:
            self._record("UPDATE_ROLLBACK_IN_PROGRESS", "User Initiated", stack=True)
            self._roll_back(old, new, current=current, replaced=None)
            return operation

    def delete(self) -> Operation:
        """Delete the stack (and so the resource, if the stack has one)."""
        if self.status in ("NONE", "DELETE_COMPLETE"):
            raise DriverError(f"cannot delete: the stack is {self.status}")
        with self._operate("Delete") as operation:
            self._record("DELETE_IN_PROGRESS", "User Initiated", stack=True)
            if self.physical_id is None or self.properties is None:  # after ROLLBACK_COMPLETE
                self._record("DELETE_COMPLETE", stack=True)
                return operation
            if self._delete_resource(self.physical_id, self.properties):
                self.physical_id, self.properties, self.attributes = None, None, {}
                self._record("DELETE_COMPLETE", stack=True)
            else:
                self._record("DELETE_FAILED", stack=True)
            return operation

    def _delete_resource(self, physical_id: str, properties: dict[str, Any]) -> bool:
        self._record("DELETE_IN_PROGRESS", physical_id=physical_id)
        event = self.event("Delete", properties, physical_id=physical_id)
        answer, _ = self._answer(event)
        if answer.ok:
            self._record("DELETE_COMPLETE", physical_id=physical_id)
            return True
        self._record("DELETE_FAILED", answer.reason, physical_id=physical_id)
        return False
