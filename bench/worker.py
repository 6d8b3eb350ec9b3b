"""A handler process for the benchmarks: Lambda's role, driven over a pipe.

Ours is the provider as deployed: the dispatcher (``sir_membership.app``)
starts an execution of the state machine, whose Work and Answer tasks
(``sir_membership.tasks``) make the calls and send the answer. Here the
execution runs in this process as soon as it starts (``engine_local``, the
unit tests' in-process engine: the definition's states, checked against
statemachine/membership.asl.json), so one ``invoke`` is the dispatcher's
invocation plus every task invocation of its execution, Wait states slept.

The parent (``calls.Worker``) starts it with the environment of
``local_services().child_env()`` (emulator, moto DynamoDB, the receiver's
CA, dummy credentials) and sends one JSON command per line on stdin; the
answer is one JSON line on the original stdout. Everything the handlers
print (Powertools' JSON logs) goes to stderr, as in Lambda it would go to
CloudWatch, so it costs what it costs there and cannot corrupt the pipe.

Commands (``op``):

* ``import`` ``handler``: import a handler module, answer the seconds taken;
* ``invoke`` ``handler`` ``event``: one invocation, timed;
* ``warm`` ``handler`` ``events``: invocations in a row, each timed, with the
  seconds spent inside security-ir and DynamoDB calls (botocore events);
* ``put`` ``url`` ``n``: deliver a CloudFormation-sized answer ``n`` times
  with the project's ``ResponseSender`` (the cost of answering alone);
* ``rusage``: this process's peak and current RSS (VmHWM, VmRSS, ru_maxrss);
* ``quit``.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from common import context

MODULES = {"ours": "sir_membership.app", "naive": "naive", "bare": "bare_handler"}


class CallTimer:
    """Seconds spent inside boto3 clients' API calls (before-call to after-call)."""

    def __init__(self, clients: Any, kind: str | None = None) -> None:
        self.total = 0.0
        self.calls = 0
        self.kind = kind
        self._local = threading.local()
        for client in clients if isinstance(clients, list | tuple) else (clients,):
            client.meta.events.register("before-call", self._start)
            client.meta.events.register("after-call", self._stop)
            client.meta.events.register("after-call-error", self._stop)

    def _start(self, params: Any = None, **_: Any) -> None:
        if self.kind is not None and not _is_kind(params, self.kind):
            return
        self._local.started = time.perf_counter()

    def _stop(self, **_: Any) -> None:
        started = getattr(self._local, "started", None)
        if started is not None:
            self.total += time.perf_counter() - started
            self.calls += 1
            self._local.started = None

    def take(self) -> tuple[float, int]:
        out = (self.total, self.calls)
        self.total, self.calls = 0.0, 0
        return out


def _is_kind(params: Any, kind: str) -> bool:
    """Whether a DynamoDB request is about an item whose id starts with ``kind#``."""
    body = (params or {}).get("body") or b""
    if isinstance(body, str):
        body = body.encode()
    return f'"{kind}#'.encode() in body


def memory() -> dict[str, int]:
    """Peak and current RSS of this process image, in KiB.

    ``getrusage``'s ru_maxrss is reported too, but on Linux it survives
    fork + exec: a child started by a large parent reports at least the
    parent's RSS at the fork. VmHWM (/proc/self/status) starts afresh at exec.
    """
    out = {"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key.lower() + "_kb"] = int(value.split()[0])
    return out


def run_executions_here(app: Any) -> Any:
    """Point the dispatcher at an in-process engine that runs the tasks here; the tasks module.

    Each task invocation gets a fresh 300 s context (the Work function's Timeout).
    """
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.append(tests)
    from engine_local import InlineEngine  # noqa: PLC0415 - the tests' engine, by path

    from sir_membership import tasks  # noqa: PLC0415

    app.ENGINE = InlineEngine(lambda: context(300.0, request_id="bench-task"))
    return tasks


class Worker:
    def __init__(self) -> None:
        self.modules: dict[str, Any] = {}
        self.timers: dict[str, dict[str, CallTimer]] = {}

    def module(self, name: str) -> Any:
        if name not in self.modules:
            module = importlib.import_module(MODULES[name])
            self.modules[name] = module
            if name == "ours":
                tasks = run_executions_here(module)
                # The dispatcher's table client and the tasks' (one per function).
                tables = [module.REQUESTS.client, tasks.REQUESTS.client]
                self.timers[name] = {
                    "security_ir": CallTimer(tasks.security_ir()),
                    "dynamodb": CallTimer(tables),
                    # The change journal's and the leases' share of those calls.
                    "journal": CallTimer(tables, "journal"),
                    "lease": CallTimer(tables, "lease"),
                }
            else:
                self.timers[name] = {"security_ir": CallTimer(module.CLIENT)}
        return self.modules[name]

    def invoke(self, name: str, event: dict[str, Any]) -> dict[str, Any]:
        handler = self.module(name).handler
        for timer in self.timers[name].values():
            timer.take()
        ctx = context(300.0, request_id=str(event.get("RequestId", "bench")))
        started = time.perf_counter()
        handler(event, ctx)
        seconds = time.perf_counter() - started
        out: dict[str, Any] = {"seconds": seconds}
        for key, timer in self.timers[name].items():
            spent, calls = timer.take()
            out[f"{key}_seconds"] = spent
            out[f"{key}_calls"] = calls
        return out

    def put(self, url: str, n: int) -> list[float]:
        from sir_membership.response import Answer, ResponseSender, build_body  # noqa: PLC0415

        event = {
            "StackId": "arn:aws:cloudformation:stack/bench",
            "RequestId": "r",
            "LogicalResourceId": "M",
        }
        data = {"MembershipId": "m-benchmark01", "MembershipArn": "arn:" + "x" * 80}
        body = build_body(event, Answer.success("m-benchmark01", data))
        sender = ResponseSender()
        out = []
        for _ in range(n):
            started = time.perf_counter()
            if not sender.send(url, body):
                raise RuntimeError("the answer was not delivered")
            out.append(time.perf_counter() - started)
        return out

    def run(self, command: dict[str, Any]) -> Any:
        op = command["op"]
        if op == "import":
            started = time.perf_counter()
            self.module(command["handler"])
            return {"seconds": time.perf_counter() - started}
        if op == "invoke":
            return self.invoke(command["handler"], command["event"])
        if op == "warm":
            return [self.invoke(command["handler"], e) for e in command["events"]]
        if op == "put":
            return self.put(command["url"], int(command.get("n", 1)))
        if op == "rusage":
            return memory()
        raise ValueError(f"unknown op {op!r}")


def main() -> None:
    # The pipe is the original stdout; fd 1 (and sys.stdout) become stderr.
    pipe = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    worker = Worker()
    pipe.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("op") == "quit":
            break
        try:
            answer = {"ok": True, "result": worker.run(command)}
        except Exception as error:
            traceback.print_exc()
            answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        pipe.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
