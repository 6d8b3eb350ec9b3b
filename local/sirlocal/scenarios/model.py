"""The scenario model: what a scenario says, and what playing it found.

Why apart: the table (``table*.py``), the checks and the player all build on
these few values; this module imports no other module of the package, so
each of them can import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sirlocal.driver import StackDriver, WorkerPool
from sirlocal.emulator import CallRecord, SecurityIREmulator
from sirlocal.fixtures import Expect, call_summary
from sirlocal.services import LocalServices


@dataclass(frozen=True)
class Fault:
    """One fault armed right before a step (emulator, receiver or Step Functions side).

    On the request's execution (``sirlocal.states_api``): ``invoke_error``:
    the next ``times`` Invokes of the Work task are refused with ``error``
    (default ``Lambda.TooManyRequestsException``; the definition's Retry
    decides); ``invoke_kill``: the sandbox of each of the next ``times`` Work
    steps is killed ``seconds`` after it began (``error``, default
    ``Lambda.ServiceException``: retried); ``invoke_drop``: the next
    ``times`` Work steps run, but their result is lost (retried).
    """

    kind: Literal[
        "error",
        "reset",
        "hang",
        "lost",
        "block",
        "propagation",
        "model",
        "put_status",
        "put_reset",
        "put_hang",
        "invoke_error",
        "invoke_kill",
        "invoke_drop",
    ]
    operation: str = "*"
    on_call: int = 1
    times: int | None = 1
    error: str | None = None
    seconds: float = 0.0
    status: int = 500
    #: For ``kind="model"``: the emulator's propagation model, P = ``seconds``.
    model: str = ""
    retry_after: bool = False

    @property
    def on_emulator(self) -> bool:
        """Whether the emulator plays it (the others: the receiver or Step Functions)."""
        return not self.kind.startswith(("put_", "invoke_"))

    def arm(self, services: LocalServices) -> None:
        """Arm it."""
        receiver = services.receiver
        if self.on_emulator:
            self.arm_emulator(services.emulator)
        elif self.kind == "put_status":
            receiver.fail_next(self.status, self.times or 1)
        elif self.kind == "put_reset":
            receiver.reset_next(self.times or 1)
        elif self.kind == "put_hang":
            receiver.hang_next(self.seconds, self.times or 1)
        elif self.kind == "invoke_error":
            services.states.fail_next(
                self.times or 1, self.error or "Lambda.TooManyRequestsException"
            )
        elif self.kind == "invoke_kill":
            services.states.kill_next_after(
                self.seconds, self.times or 1, error=self.error or "Lambda.ServiceException"
            )
        else:
            services.states.lose_next(self.times or 1)

    def arm_emulator(self, emulator: SecurityIREmulator) -> None:
        """Arm an emulator fault (whichever engine plays the stack)."""
        if not self.on_emulator:
            raise ValueError(f"{self.describe()}: not a fault the emulator plays")
        if self.kind == "propagation":
            emulator.set_propagation(calls=self.times)
        elif self.kind == "model":
            emulator.set_propagation_model(self.model, self.seconds, retry_after=self.retry_after)
        else:
            emulator.add_fault(
                self.kind,
                self.operation,
                on_call=self.on_call,
                times=self.times,
                seconds=self.seconds,
                error=self.error,
            )

    def describe(self) -> str:
        """A short human description."""
        op = self.operation.replace("Membership", "") if self.operation != "*" else "any call"
        nth = "" if self.on_call == 1 else f" from call #{self.on_call}"
        times = "always" if self.times is None else f"x{self.times}"
        if self.kind == "error":
            return f"{self.error} on {op}{nth} {times}"
        if self.kind == "reset":
            return f"TCP reset on {op}{nth} {times}"
        if self.kind == "hang":
            return f"{op}{nth} hangs {self.seconds:g} s"
        if self.kind == "lost":
            return f"{op}{nth} applied but answered {self.error or 'InternalServerException'}"
        if self.kind == "block":
            return f"{op}{nth} held in flight, never applied"
        if self.kind == "propagation":
            return f"Conflict x{self.times} after each OU change"
        if self.kind == "model":
            after = ", with Retry-After" if self.retry_after else ""
            return f"propagation model {self.model}, P = {self.seconds:g} s{after}"
        if self.kind == "put_status":
            return f"response PUT answered {self.status} {times}"
        if self.kind == "put_hang":
            return f"response PUT unanswered for {self.seconds:g} s {times}"
        if self.kind == "invoke_error":
            error = self.error or "Lambda.TooManyRequestsException"
            return f"Work's Invoke refused ({error}) {times}"
        if self.kind == "invoke_kill":
            return f"Work's sandbox killed after {self.seconds:g} s {times}"
        if self.kind == "invoke_drop":
            return f"Work's result lost {times}"
        return f"response PUT reset {times}"


@dataclass(frozen=True)
class Step:
    """One stack operation (or ``cold``: the next invocation starts a new worker).

    ``cancel_update``: the update is cancelled once ``cancel_after_writes``
    UpdateMembership calls were answered and ``cancel_after_seconds`` passed,
    and its rollback is delivered to a second worker while the forward
    invocation still runs.
    """

    action: Literal["create", "update", "cancel_update", "continue_rollback", "delete", "cold"]
    properties: Mapping[str, Any] | None = None
    expect: str = ""  # the stack status afterwards
    faults: tuple[Fault, ...] = ()
    later_failure: str | None = None
    answer_status: str = ""  # the status of the operation's first answer (SUCCESS, FAILED)
    reason_has: tuple[str, ...] = ()  # in the reason of the operation's first answer
    reason_lacks: tuple[str, ...] = ()  # never in that reason
    reason_starts: str = ""  # that reason starts with this
    reason_ends: str = ""  # and ends with this
    physical_has: str = ""  # in the physical id of the operation's first answer
    answer_within: float | None = None  # seconds, for every answer of this step
    #: The Work steps (with their retries) the operation's own request took; it must
    #: also have been answered exactly once.
    work_steps: int | None = None
    #: At least this many Work steps (a change the engine carries over several).
    min_work_steps: int = 0
    cancel_after_writes: int = 1
    cancel_after_seconds: float = 0.0
    #: An update's Work sandbox dies once this many UpdateMembership calls were
    #: answered: the next one is held in flight (a ``block`` fault, never applied) and
    #: the sandbox killed; the task sees ``crash_error`` (a Lambda service error is
    #: retried by the definition: the step runs again).
    crash_after_writes: int = 0
    crash_error: str = "Lambda.ServiceException"
    #: Runs once the operation's own request is answered, before anything CloudFormation
    #: sends next (its rollback): e.g. the step's faults end, another request finishes.
    after_answer: Callable[[LocalServices], None] | None = None
    #: Runs right before the step (state a fault cannot express, e.g. in the table).
    before: Callable[[LocalServices], None] | None = None


@dataclass
class Run:
    """A scenario being played: the services, the stack, and the problems found."""

    scenario: Scenario
    services: LocalServices
    pool: WorkerPool
    stack: StackDriver
    started: float
    problems: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    extra_logs: list[str] = field(default_factory=list)  # from workers outside the pool
    extra_urls: list[str] = field(default_factory=list)  # ResponseURLs of other stacks

    def expect(self, condition: bool, message: str) -> None:
        """Record ``message`` as a problem unless ``condition``."""
        if not condition:
            self.problems.append(message)

    def calls(self) -> list[CallRecord]:
        """The security-ir calls made since the scenario started."""
        return [c for c in self.services.emulator.calls() if c.timestamp >= self.started]


@dataclass(frozen=True)
class Scenario:
    """A named stack story with its faults and expectations."""

    name: str
    group: str
    title: str
    seeds: tuple[Mapping[str, Any], ...]
    steps: tuple[Step, ...] = ()
    final: Mapping[str, Expect] = field(default_factory=dict)
    calls: tuple[str, ...] | None = None
    timeout: float = 30.0
    strict: bool = True
    custom: Callable[[Run], None] | None = None
    custom_faults: str = ""
    #: Runs right after the seeds are loaded (state the seed format cannot express).
    prepare: Callable[[LocalServices], None] | None = None
    #: Set when the expectations describe the intended behaviour that the handler
    #: does not have yet (see the text); tests mark the scenario xfail(strict).
    known_issue: str = ""
    #: Set (to the reason) when the scenario waits real seconds by design: it runs in
    #: ``make reliability`` only, not in ``make test`` (tests/e2e), which keeps a faster
    #: scenario of the same behaviour (the reason names it).
    reliability_only: str = ""
    #: The function's reserves and client timeouts at this scale (``scaled_timing``), on a
    #: worker of its own with ``timeout``: the same decisions in fewer real seconds.
    timing_scale: float = 1.0
    #: Instead of ``calls``: the calls are exactly one of these (where a jittered wait
    #: decides whether a Work step sleeps it or a Wait state carries it to a new step).
    calls_one_of: tuple[tuple[str, ...], ...] = ()
    #: Exactly this many UpdateMembership calls applied: under a propagation model the
    #: refused attempts depend on the backoff's jitter, so the call list is not pinned.
    applied_writes: int | None = None

    @property
    def calls_checked(self) -> bool:
        """Whether the calls are compared (``calls`` or ``calls_one_of``)."""
        return self.calls is not None or bool(self.calls_one_of)

    def call_problems(self, calls: Sequence[CallRecord]) -> list[str]:
        """How ``calls`` (the security-ir calls the scenario caused) differ from what it
        expects, whichever engine played it (pure)."""
        summary = [call_summary(c) for c in calls]
        problems = []
        if self.calls is not None and tuple(summary) != self.calls:
            problems.append(f"calls were {summary}, expected {list(self.calls)}")
        if self.calls_one_of and tuple(summary) not in self.calls_one_of:
            options = [list(a) for a in self.calls_one_of]
            problems.append(f"calls were {summary}, expected one of {options}")
        applied = [
            c for c in calls if c.operation == "UpdateMembership" and c.error is None
            and c.status is not None
        ]  # fmt: skip
        if self.applied_writes is not None and len(applied) != self.applied_writes:
            problems.append(
                f"{len(applied)} UpdateMembership calls were applied, "
                f"expected {self.applied_writes}"
            )
        return problems

    @property
    def faults(self) -> str:
        """Every fault injected, described."""
        described = [f.describe() for s in self.steps for f in s.faults]
        for step in self.steps:
            if step.crash_after_writes:
                described.append(
                    f"Work's sandbox killed after {step.crash_after_writes} UpdateMembership "
                    f"call(s) ({step.crash_error})"
                )
            if step.action == "cancel_update":
                described.append(
                    f"update cancelled after {step.cancel_after_writes} write(s)"
                    + (f" and {step.cancel_after_seconds:g} s" if step.cancel_after_seconds else "")
                    + ", rollback on a 2nd worker at once"
                )
        if self.custom_faults:
            described.append(self.custom_faults)
        return "; ".join(described) or "none"


@dataclass(frozen=True)
class ScenarioResult:
    """How a scenario went."""

    name: str
    group: str
    title: str
    faults: str
    outcome: str
    writes: int
    write_attempts: int
    final_ok: bool
    calls_ok: bool
    problems: tuple[str, ...]
    seconds: float
    slowest_answer: float
    known_issue: str = ""
    reliability_only: str = ""

    @property
    def ok(self) -> bool:
        """True when every expectation held."""
        return not self.problems
