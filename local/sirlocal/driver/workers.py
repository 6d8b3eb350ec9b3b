"""Lambda execution environments: worker processes, their invocations, a pool of them.

Why: an invocation must run with Lambda's cold start, real deadline and kill
at the deadline, so the handler runs in a child process (``python -m
sirlocal.worker``) in its own process group, killed as Lambda would.
"""

from __future__ import annotations

import atexit
import contextlib
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from sirlocal.driver.errors import DriverError
from sirlocal.worker import DEFAULT_FUNCTION_NAME, DEFAULT_HANDLER

REPO_ROOT = Path(__file__).resolve().parents[3]
#: Seconds after the deadline before a still-running invocation is killed.
KILL_GRACE = 0.5

_LIVE_WORKERS: set[LambdaWorker] = set()
_LIVE_LOCK = threading.Lock()


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
