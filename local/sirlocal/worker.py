"""One Lambda execution environment for the real handler, as a child process.

Why: the provider must be exercised the way Lambda runs it: the module is
imported once (the cold start: boto3 clients, crhelper, Powertools), then the
same process handles invocation after invocation (warm starts), each with a
context whose deadline is real. Running it in its own process also keeps the
handler's module-level state, logging setup and stdout away from the test
process, so its logs can be captured and checked.

Protocol (``python -m sirlocal.worker --result-fd N``):

* stdin: one JSON object per line, ``{"event": {...}, "deadline_ms": EPOCH_MS,
  "aws_request_id": "..."}`` (an invocation) or ``{"exit": true}``;
* file descriptor N: one JSON line per message, ``{"ready": {...}}`` once the
  handler module is imported (or ``{"init_error": "Type"}``), then
  ``{"done": {"aws_request_id", "seconds", "error", "message", "result"}}`` per
  invocation (``message``: the exception's text, as Lambda returns it to a
  synchronous caller such as Step Functions; ``result``: the handler's
  return value, when it is JSON);
* stdout and stderr are the function's logs (Lambda sends both to
  CloudWatch Logs), with Lambda's own START/END/REPORT lines around each
  invocation.

Nothing is written to the protocol descriptor but these messages, so a
chatty handler can never corrupt it. The parent (``sirlocal.driver``) enforces
the deadline by killing the process group, as Lambda does.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

DEFAULT_HANDLER = "sir_membership.app.handler"
ACCOUNT_ID = "123456789012"
DEFAULT_FUNCTION_NAME = "sir-membership-provider-MembershipFunction-LOCAL"


@dataclass
class LambdaContext:
    """The parts of Lambda's context object that handlers and Powertools use."""

    aws_request_id: str
    deadline_ms: int
    function_name: str = DEFAULT_FUNCTION_NAME
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = (
        f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{DEFAULT_FUNCTION_NAME}"
    )
    log_group_name: str = f"/aws/lambda/{DEFAULT_FUNCTION_NAME}"
    log_stream_name: str = "local/[$LATEST]worker"
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until the deadline (never negative, like Lambda's)."""
        return max(0, self.deadline_ms - int(time.time() * 1000))


def load_handler(path: str) -> Callable[[dict[str, Any], Any], Any]:
    """Import ``package.module.function`` (Lambda's ``Handler`` setting)."""
    module_name, _, function = path.rpartition(".")
    module = importlib.import_module(module_name)
    handler: Callable[[dict[str, Any], Any], Any] = getattr(module, function)
    return handler


def _emit(channel: IO[str], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def _log(line: str) -> None:
    """A Lambda platform line in the function's log (stdout)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serve(
    handler_path: str,
    requests: IO[str],
    results: IO[str],
    *,
    function_name: str = DEFAULT_FUNCTION_NAME,
    memory_mb: int = 256,
) -> int:
    """Import the handler once, then run invocations until stdin closes or ``exit``."""
    started = time.monotonic()
    try:
        handler = load_handler(handler_path)
    except Exception as init_error:  # an init error, reported as Lambda does (type only)
        _log(f"INIT_REPORT Init Duration: {(time.monotonic() - started) * 1000:.2f} ms")
        _emit(results, {"init_error": type(init_error).__name__})
        raise
    init_seconds = time.monotonic() - started
    _emit(results, {"ready": {"init_seconds": init_seconds, "pid": os.getpid()}})
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{function_name}"
    first = True
    for line in requests:
        if not line.strip():
            continue
        message = json.loads(line)
        if message.get("exit"):
            break
        request_id = str(message["aws_request_id"])
        context = LambdaContext(
            aws_request_id=request_id,
            deadline_ms=int(message["deadline_ms"]),
            function_name=function_name,
            memory_limit_in_mb=memory_mb,
            invoked_function_arn=arn,
            log_group_name=f"/aws/lambda/{function_name}",
        )
        _log(f"START RequestId: {request_id} Version: $LATEST")
        began = time.monotonic()
        error: str | None = None
        text: str | None = None
        result: Any = None
        try:
            result = handler(message["event"], context)
        except Exception as exc:  # Lambda logs the error type here; the message may hold values
            error, text = type(exc).__name__, str(exc)
            _log(f"[ERROR] {error} (RequestId: {request_id})")
        seconds = time.monotonic() - began
        _log(f"END RequestId: {request_id}")
        init = f"\tInit Duration: {init_seconds * 1000:.2f} ms" if first else ""
        _log(
            f"REPORT RequestId: {request_id}\tDuration: {seconds * 1000:.2f} ms\t"
            f"Memory Size: {memory_mb} MB{init}"
        )
        first = False
        done = {"aws_request_id": request_id, "seconds": seconds, "error": error, "message": text}
        try:
            json.dumps(result)
        except (TypeError, ValueError):
            result = None
        _emit(results, {"done": {**done, "result": result}})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sirlocal.worker --result-fd N [--handler H]``."""
    parser = argparse.ArgumentParser(prog="python -m sirlocal.worker", description=__doc__)
    parser.add_argument("--result-fd", type=int, required=True)
    parser.add_argument("--handler", default=DEFAULT_HANDLER)
    parser.add_argument("--function-name", default=DEFAULT_FUNCTION_NAME)
    parser.add_argument("--memory", type=int, default=256)
    args = parser.parse_args(argv)
    with os.fdopen(args.result_fd, "w", encoding="utf-8") as results:
        return serve(
            args.handler,
            sys.stdin,
            results,
            function_name=args.function_name,
            memory_mb=args.memory,
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
