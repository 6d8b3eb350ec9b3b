"""What the stand-in records: executions, task attempts, function configurations, faults.

Why: the API answers from these records and the runner writes them; they live
apart from both so each reads them the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sirlocal.states_api.definition import STATE_MACHINE_ARN


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
class Execution:
    """One execution as it runs: its status, its states so far, and the event that wakes
    its Wait states when it is stopped."""

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
class Fault:
    """A fault armed for the next invocation of a state (see ``StatesAPI.fail_next``)."""

    kind: str  # "refuse", "kill", "lose"
    state: str
    error: str = "Lambda.ServiceException"
    seconds: float = 0.0


def epoch(seconds: float | None) -> float | None:
    """A date as the JSON protocol sends it: epoch seconds, to the millisecond."""
    return None if seconds is None else round(seconds, 3)


def describe(execution: Execution) -> dict[str, Any]:
    """The execution as DescribeExecution shows it (the safety net's event carries it too)."""
    out: dict[str, Any] = {
        "executionArn": execution.arn,
        "stateMachineArn": STATE_MACHINE_ARN,
        "name": execution.name,
        "status": execution.status,
        "startDate": epoch(execution.started),
        "input": execution.input,
    }
    optional = {
        "stopDate": epoch(execution.stopped),
        "output": execution.output,
        "error": execution.error,
        "cause": execution.cause,
    }
    return out | {k: v for k, v in optional.items() if v is not None}
