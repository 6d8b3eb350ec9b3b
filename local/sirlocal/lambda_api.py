"""A fake Lambda ``Invoke`` endpoint: asynchronous invocations of the one local function.

Why: when a plan does not fit in one invocation, the function saves its
progress and invokes itself again (``InvocationType="Event"``, its own ARN
from ``context.invoked_function_arn``, the endpoint from
``AWS_ENDPOINT_URL_LAMBDA``), and only the last invocation of the chain
answers CloudFormation. To exercise that offline, this endpoint accepts the
call as the real service does (``POST /2015-03-31/functions/{FunctionName}/
invocations``, the ``X-Amz-Invocation-Type`` header, REST-JSON errors with an
``x-amzn-ErrorType`` header so botocore raises the right ``ClientError``
code), answers 202, and runs the event in the background on a fresh
:class:`~sirlocal.driver.LambdaWorker` (a cold start in its own process,
killed at the function timeout), as Lambda's asynchronous queue would.

As Lambda does for asynchronous events, an attempt that ends in a function
error or is killed (timeout) is run again, up to ``max_retries`` (Lambda's
default ``MaximumRetryAttempts`` is 2) after ``retry_delays`` (Lambda waits
about 1 then 2 minutes; here seconds), with the same request id. Every
attempt is recorded (:class:`AsyncInvocation`), so tests, scenarios and the
bench can count them; faults (:meth:`LambdaAPI.fail_next`,
:meth:`LambdaAPI.kill_next_after`, :meth:`LambdaAPI.drop_next`) break the
chain on purpose.

Only ``Event`` is served: the function never calls itself synchronously, and
a synchronous call here would only hide that mistake.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sirlocal import JSONRequestHandler, LoopbackHTTPServer
from sirlocal.driver import KILL_GRACE, DriverError, Invocation, LambdaWorker
from sirlocal.worker import ACCOUNT_ID, DEFAULT_FUNCTION_NAME, DEFAULT_HANDLER

DEFAULT_REGION = "us-east-1"
#: Lambda's long-standing limit on an asynchronous invocation's payload.
EVENT_PAYLOAD_LIMIT = 256 * 1024
#: Lambda's default ``MaximumRetryAttempts`` for asynchronous invocations.
DEFAULT_MAX_RETRIES = 2
#: Seconds before each retry (Lambda: about 1 minute, then about 2).
DEFAULT_RETRY_DELAYS = (1.0, 2.0)
_ROUTE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")
_PARTIAL_ARN = re.compile(r"^(?P<account>\d{12}):function:(?P<rest>.+)$")
#: Error codes the real service sends that botocore's model does not list.
_UNMODELLED = {"RequestEntityTooLargeException": 413, "UnknownOperationException": 404}


@dataclass(frozen=True)
class AsyncInvocation:
    """One attempt at one asynchronous event, as recorded (a snapshot)."""

    number: int  # the accepted Invoke call, counted from 1 since the last reset
    attempt: int  # 1 for the first run, 2.. for Lambda's retries
    request_id: str  # Lambda's request id: the same for every attempt of an event
    event: Any
    accepted: float  # epoch seconds when the Invoke call was accepted
    started: float | None = None  # when the attempt began (None while queued or dropped)
    ended: float | None = None
    cold: bool = True
    #: None while queued or running; then "ok", "killed" (kill_next_after),
    #: "timeout" (killed at the function timeout), "dropped" (drop_next), or
    #: the error type (e.g. "RuntimeError", "Runtime.ExitError", "Runtime.InitError").
    outcome: str | None = None
    worker: str = ""

    @property
    def done(self) -> bool:
        """True once the attempt ended (or was dropped)."""
        return self.outcome is not None

    @property
    def ok(self) -> bool:
        """True when the handler returned without an error."""
        return self.outcome == "ok"

    @property
    def ran(self) -> bool:
        """True when a worker ran (or is running) the attempt."""
        return self.started is not None


@dataclass(frozen=True)
class FunctionConfig:
    """What Lambda would take from the function's configuration for each attempt."""

    env: Mapping[str, str] | None = None  # None: not configured, Invoke is refused
    timeout: float = 30.0
    handler: str = DEFAULT_HANDLER
    python: tuple[str, ...] = ()
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed ``attempt`` (1-based) before the next one."""
        if not self.retry_delays:
            return 0.0
        return self.retry_delays[min(attempt, len(self.retry_delays)) - 1]


class ApiError(Exception):
    """An error answer: HTTP status, error code (``x-amzn-ErrorType``), message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@functools.cache
def _error_shapes() -> dict[str, dict[str, Any]]:
    """botocore's Lambda error shapes, by code (status and the message member's case)."""
    import botocore.loaders  # noqa: PLC0415 - only when an error is first answered

    model = botocore.loaders.create_loader().load_service_model("lambda", "service-2")
    return {
        name: shape
        for name, shape in model["shapes"].items()
        if shape.get("exception") or "error" in shape
    }


def error_reply(code: str, message: str, status: int | None = None) -> _Reply:
    """The REST-JSON error Lambda sends: ``{"Type", "message"}`` and ``x-amzn-ErrorType``.

    The status is botocore's (``httpStatusCode``) unless given; ``Type`` is
    ``User`` for a sender fault, ``Service`` otherwise, as the service says.
    """
    shape = _error_shapes().get(code, {})
    if status is None:
        status = int(shape.get("error", {}).get("httpStatusCode", _UNMODELLED.get(code, 400)))
    key = "Message" if "Message" in shape.get("members", {}) else "message"
    body = {"Type": "User" if status < 500 else "Service", key: message}
    if code == "TooManyRequestsException":
        body["Reason"] = "ReservedFunctionConcurrentInvocationLimitExceeded"
    data = json.dumps(body).encode()
    return _Reply(status, data, {"Content-Type": "application/json", "x-amzn-ErrorType": code})


def request_id_of(payload: Any) -> str | None:
    """The CloudFormation ``RequestId`` an event (or a continuation payload) belongs to.

    Top level first (the event itself, plus progress keys); else a nested
    object that looks like the CloudFormation event (has ``ResponseURL``).
    """
    if not isinstance(payload, Mapping):
        return None
    if isinstance(payload.get("RequestId"), str):
        return str(payload["RequestId"])
    for value in payload.values():
        if isinstance(value, Mapping) and "ResponseURL" in value and "RequestId" in value:
            return str(value["RequestId"])
    return None


# --------------------------------------------------------------------------- state


@dataclass
class _Attempt:
    """The mutable record behind an :class:`AsyncInvocation` snapshot."""

    snapshot: AsyncInvocation
    worker: LambdaWorker | None = None
    log: str = ""


@dataclass
class _Chain:
    """One accepted event: its attempts run one after the other on a background thread."""

    number: int
    request_id: str
    event: Any
    accepted: float
    config: FunctionConfig
    cancel: threading.Event
    key: str | None  # the CloudFormation RequestId of the event, for busy()/invocations()
    thread: threading.Thread | None = None


class LambdaAPI:
    """The endpoint: an in-process HTTP server on 127.0.0.1 (see the module docstring).

    Call :meth:`configure` with the workers' environment before the
    function invokes itself; until then Invoke is answered
    ``ResourceNotReadyException``. Thread-safe.
    """

    def __init__(
        self,
        *,
        function_name: str = DEFAULT_FUNCTION_NAME,
        account_id: str = ACCOUNT_ID,
        region: str = DEFAULT_REGION,
        event_payload_limit: int = EVENT_PAYLOAD_LIMIT,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.function_name = function_name
        self.account_id = account_id
        self.region = region
        self.event_payload_limit = event_payload_limit
        self.host, self.requested_port = host, port
        self.config = FunctionConfig()
        self._changed = threading.Condition()
        self._attempts: list[_Attempt] = []
        self._chains: list[_Chain] = []
        self._accepted = 0
        self._cancel = threading.Event()
        self._failures: deque[ApiError] = deque()
        self._kills: deque[float] = deque()
        self._drops = 0
        self._server: LoopbackHTTPServer | None = None

    # lifecycle -----------------------------------------------------------------

    def start(self) -> LambdaAPI:
        """Listen (0 = an ephemeral port) and serve in a background thread."""
        if self._server is None:
            self._server = LoopbackHTTPServer((self.host, self.requested_port), _LambdaHandler)
            self._server.app = self
            self._server.start_background("lambda-api")
        return self

    def close(self) -> None:
        """Cancel every queued or waiting event, kill every worker, stop serving."""
        self.reset()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> LambdaAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the Lambda endpoint was never started")
        return self._server.port

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT`` (``AWS_ENDPOINT_URL_LAMBDA``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def function_arn(self) -> str:
        """The one function this endpoint knows."""
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    def env(self) -> dict[str, str]:
        """Point the SDK's Lambda client at this endpoint."""
        return {"AWS_ENDPOINT_URL_LAMBDA": self.endpoint_url}

    def configure(
        self,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        handler: str | None = None,
        python: Sequence[str] | None = None,
        max_retries: int | None = None,
        retry_delays: Sequence[float] | None = None,
    ) -> FunctionConfig:
        """Change the function's configuration (only what is given) for later Invoke calls.

        ``env``: the workers' environment (``worker_env(services.child_env())``);
        ``timeout``: the function timeout, seconds. Events already accepted
        keep the configuration they were accepted with, as on Lambda.
        """
        changes: dict[str, Any] = {}
        if env is not None:
            changes["env"] = dict(env)
        if timeout is not None:
            changes["timeout"] = float(timeout)
        if handler is not None:
            changes["handler"] = handler
        if python is not None:
            changes["python"] = tuple(python)
        if max_retries is not None:
            changes["max_retries"] = max_retries
        if retry_delays is not None:
            changes["retry_delays"] = tuple(float(d) for d in retry_delays)
        with self._changed:
            self.config = replace(self.config, **changes)
            return self.config

    def reset(self) -> None:
        """Cancel queued events and pending retries, kill running workers, forget records,
        logs and faults (the configuration stays)."""
        with self._changed:
            self._cancel.set()
            self._cancel = threading.Event()
            chains, self._chains = list(self._chains), []
            workers = [a.worker for a in self._attempts if a.worker is not None]
            self._attempts = []
            self._accepted = 0
            self._changed.notify_all()
        self.clear_faults()
        for worker in workers:
            worker.kill()
        for chain in chains:
            if chain.thread is not None:
                chain.thread.join(timeout=10)

    # faults --------------------------------------------------------------------

    def fail_next(
        self,
        times: int = 1,
        error: str = "TooManyRequestsException",
        *,
        status: int | None = None,
        message: str = "Rate Exceeded.",
    ) -> None:
        """Answer the next ``times`` Invoke calls with ``error`` (nothing runs).

        The status defaults to the one botocore's model gives the code (429
        for TooManyRequestsException, 500 for ServiceException, ...).
        """
        reply = error_reply(error, message, status)
        with self._changed:
            self._failures.extend(ApiError(reply.status, error, message) for _ in range(times))

    def kill_next_after(self, seconds: float, times: int = 1) -> None:
        """Kill the worker of each of the next ``times`` attempts ``seconds`` after it began.

        Lambda would see an environment that died mid-way: a failed
        attempt, so the event is retried.
        """
        with self._changed:
            self._kills.extend(seconds for _ in range(times))

    def drop_next(self, times: int = 1) -> None:
        """Accept the next ``times`` events (202) and never run them (a lost event)."""
        with self._changed:
            self._drops += times

    def clear_faults(self) -> None:
        """Disarm every fault."""
        with self._changed:
            self._failures.clear()
            self._kills.clear()
            self._drops = 0

    # records -------------------------------------------------------------------

    def invocations(
        self, request_id: str | None = None, *, since: float | None = None
    ) -> list[AsyncInvocation]:
        """Every attempt since the last reset, in the order they were queued or began.

        ``request_id``: only the events of that CloudFormation request
        (:func:`request_id_of`); ``since``: only events accepted at or after it.
        """
        with self._changed:
            snapshots = [a.snapshot for a in self._attempts]
        return [
            s
            for s in snapshots
            if (request_id is None or request_id_of(s.event) == request_id)
            and (since is None or s.accepted >= since)
        ]

    def busy(self, request_id: str | None = None) -> bool:
        """True while an event (of ``request_id``, if given) is queued, running or waiting
        to be retried."""
        with self._changed:
            return any(request_id is None or c.key == request_id for c in self._chains)

    def wait_idle(self, timeout: float = 30.0, request_id: str | None = None) -> bool:
        """Block until :meth:`busy` is False; False if it still is after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while any(request_id is None or c.key == request_id for c in self._chains):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def log_mark(self) -> int:
        """The number of attempts recorded so far, for :meth:`logs` ``since``."""
        with self._changed:
            return len(self._attempts)

    def logs(self, since: int = 0) -> str:
        """The function logs of the workers started since the last reset (from attempt
        ``since``, a :meth:`log_mark`), oldest first; kept after each worker closed."""
        with self._changed:  # a worker's log file is read before its attempt closes it
            return "".join(
                a.worker.logs() if a.worker is not None else a.log for a in self._attempts[since:]
            )

    # the Invoke call -----------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        """Answer one HTTP request (``headers`` with lower-case names)."""
        parts = urlsplit(target)
        route = _ROUTE.match(parts.path)
        if method != "POST" or route is None:
            return error_reply("UnknownOperationException", "Unknown operation", 404)
        try:
            self._check_function(unquote(route["name"]), parse_qs(parts.query).get("Qualifier"))
            event = self._check_request(headers, body)
        except ApiError as error:
            return error_reply(error.code, error.message, error.status)
        with self._changed:
            if self._failures:
                failure = self._failures.popleft()
                return error_reply(failure.code, failure.message, failure.status)
            if self.config.env is None:
                return error_reply(
                    "ResourceNotReadyException",
                    "the local Lambda endpoint has no worker environment (LambdaAPI.configure)",
                )
            request_id = str(uuid.uuid4())
            self._accepted += 1
            chain = _Chain(
                self._accepted,
                request_id,
                event,
                time.time(),
                self.config,
                self._cancel,
                request_id_of(event),
            )
            first = _Attempt(AsyncInvocation(chain.number, 1, request_id, event, chain.accepted))
            self._attempts.append(first)
            if self._drops:
                self._drops -= 1
                first.snapshot = replace(first.snapshot, outcome="dropped", ended=time.time())
            else:
                self._chains.append(chain)
                chain.thread = threading.Thread(
                    target=self._run_chain,
                    args=(chain, first),
                    name=f"lambda-async-{chain.number}",
                    daemon=True,
                )
                chain.thread.start()
        return _Reply(202, b"", {"x-amzn-RequestId": request_id})

    def _check_function(self, name: str, query_qualifier: list[str] | None) -> None:
        """Resolve a name, a full ARN or a partial ARN (with an optional qualifier)."""
        region, account = self.region, self.account_id
        if name.startswith("arn:"):
            fields = name.split(":")
            if len(fields) not in (7, 8) or fields[2] != "lambda" or fields[5] != "function":
                raise ApiError(400, "InvalidParameterValueException", f"invalid ARN: {name}")
            region, account, rest = fields[3], fields[4], ":".join(fields[6:])
        elif partial := _PARTIAL_ARN.match(name):
            account, rest = partial["account"], partial["rest"]
        else:
            rest = name
        function, _, qualifier = rest.partition(":")
        if query_qualifier and qualifier and query_qualifier[0] != qualifier:
            raise ApiError(
                400,
                "InvalidParameterValueException",
                "The derived qualifier from the function name does not match the specified "
                "qualifier.",
            )
        qualifier = qualifier or (query_qualifier[0] if query_qualifier else "")
        if (
            (region, account, function) != (self.region, self.account_id, self.function_name)
        ) or qualifier not in ("", "$LATEST"):
            arn = f"arn:aws:lambda:{region}:{account}:function:{function}"
            raise ApiError(
                404,
                "ResourceNotFoundException",
                f"Function not found: {arn}" + (f":{qualifier}" if qualifier else ""),
            )

    def _check_request(self, headers: Mapping[str, str], body: bytes) -> Any:
        kind = headers.get("x-amz-invocation-type", "RequestResponse")
        if kind != "Event":
            raise ApiError(
                400,
                "InvalidRequestContentException",
                f"this local Lambda endpoint serves only InvocationType Event, not {kind}",
            )
        if len(body) > self.event_payload_limit:
            raise ApiError(
                413,
                "RequestEntityTooLargeException",
                f"{len(body)} byte payload is too large for the Event invocation type "
                f"(limit {self.event_payload_limit} bytes)",
            )
        try:
            return json.loads(body) if body else {}
        except ValueError as error:
            raise ApiError(
                400,
                "InvalidRequestContentException",
                f"Could not parse request body into json: {type(error).__name__}",
            ) from None

    # running events ------------------------------------------------------------

    def _run_chain(self, chain: _Chain, attempt: _Attempt) -> None:
        try:
            number = 1
            while not chain.cancel.is_set():
                outcome = self._run_attempt(chain, attempt)
                if outcome == "ok" or number > chain.config.max_retries:
                    return
                if chain.cancel.wait(chain.config.delay(number)):
                    return
                number += 1
                with self._changed:
                    if chain.cancel.is_set():
                        return
                    snapshot = AsyncInvocation(
                        chain.number, number, chain.request_id, chain.event, chain.accepted
                    )
                    attempt = _Attempt(snapshot)
                    self._attempts.append(attempt)
        finally:
            with self._changed:
                if chain in self._chains:
                    self._chains.remove(chain)
                self._changed.notify_all()

    def _run_attempt(self, chain: _Chain, attempt: _Attempt) -> str:
        config = chain.config
        assert config.env is not None
        snapshot = attempt.snapshot
        worker = LambdaWorker(
            config.env,
            timeout=config.timeout,
            name=f"lambda-async-{chain.number}-{snapshot.attempt}",
            handler=config.handler,
            function_name=self.function_name,
            python=config.python,
        )
        with self._changed:
            if chain.cancel.is_set():
                return "cancelled"
            attempt.worker = worker
            kill_after = self._kills.popleft() if self._kills else None
            attempt.snapshot = snapshot = replace(snapshot, started=time.time(), worker=worker.name)
        outcome, cold = "Runtime.InitError", True
        try:
            try:
                invocation = worker.invoke(chain.event, request_id=chain.request_id)
            except DriverError:  # the handler module failed to import (or start timed out)
                pass
            else:
                cold = invocation.cold
                outcome = self._outcome(invocation, kill_after, chain.cancel)
        finally:
            worker.stop()
            with self._changed:
                attempt.worker, attempt.log = None, worker.logs()
                attempt.snapshot = replace(snapshot, ended=time.time(), cold=cold, outcome=outcome)
                self._changed.notify_all()
            worker.close()
        return outcome

    @staticmethod
    def _outcome(invocation: Invocation, kill_after: float | None, cancel: threading.Event) -> str:
        """Wait for the attempt; kill it when a fault or a reset says so, or at its deadline."""
        kill_at = None if kill_after is None else time.monotonic() + kill_after
        while not invocation.done() and time.time() < invocation.deadline + KILL_GRACE:
            stop = "cancelled" if cancel.is_set() else None
            if kill_at is not None and time.monotonic() >= kill_at:
                stop = "killed"
            if stop is not None:
                invocation.worker.kill()
                invocation.wait()
                return stop
            time.sleep(0.02)
        result = invocation.wait()
        if result.timed_out:
            return "timeout"
        return result.error or "ok"


class _LambdaHandler(JSONRequestHandler):
    server: LoopbackHTTPServer

    def _dispatch(self) -> None:
        api: LambdaAPI = self.server.app
        reply = api.handle(self.command, self.path, self.header_dict(), self.read_body())
        self.send_response(reply.status)
        headers = {"x-amzn-RequestId": str(uuid.uuid4()), **reply.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        with contextlib.suppress(ConnectionError):
            self.wfile.write(reply.body)

    do_GET = do_PUT = do_POST = do_DELETE = _dispatch
