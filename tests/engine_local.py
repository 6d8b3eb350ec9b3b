"""The provider's state machine, played in process for the unit tests.

Why: the dispatcher (``app.handler``) starts an execution and the tasks
(``tasks.work``, ``tasks.answer``) do the work; the unit tests drive all
three with stubbed clients and moto's DynamoDB, so something must run the
execution between them. This plays the definition's states as the
definition says (statemachine/membership.asl.json, read here and checked
against the states played): Work, then Route on its ``next``: Wait its
seconds and Work again, Answer, or stop; a Work that raises goes to
AnswerFailure with the error, as the definition's Catch does. The
definition itself runs on moto's ASL executor in tests/test_state_machine.py,
and the whole path on ministack in tests/e2e.

``InlineEngine`` replaces ``app.ENGINE``: ``start`` runs the execution at
once (or keeps it for ``run_pending``, to play overlaps), ``stop`` marks it
aborted so it ends before its next task, as StopExecution does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sir_membership.request_record import RequestKeys

DEFINITION = Path(__file__).parent.parent / "statemachine" / "membership.asl.json"
STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:sir-membership"


def definition_states() -> set[str]:
    """The states of the shipped definition (played here: any other is a failure)."""
    return set(json.loads(DEFINITION.read_text())["States"])


@dataclass
class Execution:
    """One execution: its keys, where it is, and the history of the states it went through."""

    keys: RequestKeys
    status: str = "RUNNING"
    history: list[str] = field(default_factory=list)
    waited: float = 0.0


@dataclass
class InlineEngine:
    """A stand-in for ``engine.Engine`` whose executions run in this process."""

    context: Callable[[], Any]
    run_now: bool = True
    sleep: Callable[[float], None] = time.sleep
    state_machine_arn: str = STATE_MACHINE_ARN
    executions: dict[str, Execution] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    #: Raised by ``start`` instead of starting (a refused or failed StartExecution).
    start_error: Exception | None = None
    #: Called before each task with (state, execution): a test's fault injection.
    before_task: Callable[[str, Execution], None] | None = None

    def execution_arn(self, keys: RequestKeys) -> str:
        return (
            self.state_machine_arn.replace(":stateMachine:", ":execution:")
            + ":"
            + (keys.execution_name)
        )

    def start(self, keys: RequestKeys) -> bool:
        if self.start_error is not None:
            raise self.start_error
        name = keys.execution_name
        if name in self.executions:
            return False
        self.executions[name] = Execution(keys)
        if self.run_now:
            self.run(name)
        else:
            self.pending.append(name)
        return True

    def stop(self, keys: RequestKeys) -> None:
        execution = self.executions.get(keys.execution_name)
        if execution is not None and execution.status == "RUNNING":
            execution.status = "ABORTED"

    def run_pending(self) -> None:
        while self.pending:
            self.run(self.pending.pop(0))

    def _task(self, state: str, execution: Execution, call: Callable[[], Any]) -> Any:
        assert state in definition_states(), f"{state} is not a state of the definition"
        execution.history.append(state)
        if self.before_task is not None:
            self.before_task(state, execution)
        return call()

    def run(self, name: str) -> Execution:
        """Play the execution to its end (the definition's states, in order)."""
        from sir_membership import tasks  # noqa: PLC0415 - after the test set the clients

        execution = self.executions[name]
        request = execution.keys.to_input()
        step = 0
        while execution.status == "RUNNING":
            try:
                result = self._task(
                    "Work",
                    execution,
                    lambda step=step: tasks.work(
                        {"request": request, "step": step}, self.context()
                    ),
                )
            except Exception as error:
                # As Lambda reports a function error to the Catch.
                cause = {"errorMessage": str(error), "errorType": type(error).__name__}
                failure = {"Error": type(error).__name__, "Cause": json.dumps(cause)}
                self._task(
                    "AnswerFailure",
                    execution,
                    lambda failure=failure: tasks.answer(  # type: ignore[misc]
                        {"request": request, "failure": failure}, self.context()
                    ),
                )
                execution.status = "SUCCEEDED"
                break
            step = int(result["step"])
            if result["next"] == "wait":
                execution.history.append("Wait")
                execution.waited += result["seconds"]
                self.sleep(float(result["seconds"]))
                continue
            if result["next"] == "stop":
                execution.history.append("Superseded")
                execution.status = "SUCCEEDED"
                break
            if execution.status == "RUNNING":
                self._task(
                    "Answer", execution, lambda: tasks.answer({"request": request}, self.context())
                )
                execution.status = "SUCCEEDED"
        return execution
