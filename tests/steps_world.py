"""The provider's state machine, played in process on a simulated clock.

Why: the promises (one answer per request, the deadline counted from the
first delivery, no write after a newer request took the fence, nothing
applied twice) are about sequences of events, steps, waits, crashes and
retries that take minutes to hours of real time. Here they take
milliseconds: CloudFormation's events go in through the dispatcher's own
code (``dispatch.dispatch``), each Work step is ``work_task.run_step`` and
each Answer ``answer_task.answer_request``, with the table's in-memory twins
(``memory_store``), and the transitions between them are played as
statemachine/membership.asl.json defines them:

* Work, then Route on the step's ``next``: ``wait`` advances the simulated
  clock by the step's seconds (a Wait state) and runs the next Work;
  ``answer`` runs Answer; ``stop`` ends the execution (Superseded).
* A Work that dies of a function error (the sandbox crashed: ``Crash``; a
  bug; Lambda's own timeout) is caught into AnswerFailure with that error,
  as the definition's Catch does. One that dies of a Lambda service error
  (``LambdaServiceError``: the Invoke failed, though the function may have
  run) is retried after 2, 4 and 8 s, as the definition's Retry does; the
  retry finds its step begun (``retried``).
* Answer and AnswerFailure are retried on any error (2 s, then doubling,
  6 times), then the execution fails (Unanswered).
* ``stop`` (the dispatcher's StopExecution), a failed execution and the
  top-level timeout (3,900 s) end the execution, and the EventBridge rule's
  event runs the safety net (``answer_task.safety_net``) at once.

The service is the stateful test's fake (the emulator's own rules) behind a
propagation model: after each accepted OU change, UpdateMembership is
refused with ConflictException for P seconds (with or without
``retryAfterSeconds``), and under ``stale`` GetMembership shows the change
only after P. Every answer PUT is kept per ResponseURL, so a test sees all
of them, the repeats included.
"""

from __future__ import annotations

import copy
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from fake_security_ir import MEMBERSHIP_ID, STACK, TEAMS, FakeSecurityIR
from memory_store import MemoryPaces, MemoryRequestStore, MemoryStore
from sirlocal.emulator import new_membership

from sir_membership import resource
from sir_membership.answer_task import STATUS_CHANGE, answer_request, safety_net
from sir_membership.dispatch import Dispatched, dispatch
from sir_membership.engine import execution_input
from sir_membership.errors import MembershipError, StackStatusUnavailable
from sir_membership.journal import Entry
from sir_membership.request import Request
from sir_membership.request_record import RequestKeys
from sir_membership.response import Answer
from sir_membership.service import MembershipService, RetryPolicy
from sir_membership.shell import Shell
from sir_membership.timing import TIMING
from sir_membership.work_task import StepResult, run_step

BASE = [f"ou-ct01-{i:08d}" for i in range(2)]
MORE = [f"ou-ct02-{i:08d}" for i in range(1000)]
#: As the Work task builds it (``tasks.work``): waits longer than 5 s end the step.
POLICY = RetryPolicy(call_timeout=13.0, answer_reserve=6.0, longest_sleep=TIMING.longest_sleep)
STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:sir-membership"
#: The definition's top-level TimeoutSeconds.
EXECUTION_TIMEOUT = 3900.0
#: The definition's Retry of Work (Lambda's own errors): 3 retries, 2 s doubling.
WORK_RETRIES = (2.0, 4.0, 8.0)
#: The definition's Retry of Answer and AnswerFailure (States.ALL): 6 retries, 2 s doubling.
ANSWER_RETRIES = (2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
#: The Work function's timeout (template.yaml).
WORK_TIMEOUT = 300.0
#: A Work invocation's start: a new sandbox's (Lambda bills its init), and a
#: warm one's (a sandbox idle for less than ``World.warm_for`` is reused).
COLD_START, WARM_START = 0.5, 0.05


class Crash(BaseException):
    """The Work sandbox dies here (out of memory, a runtime crash): a function error.

    A BaseException, so the code under test cannot catch it, as it cannot
    catch its own sandbox's death.
    """


class LambdaServiceError(BaseException):
    """The Invoke fails on Lambda's side after the function ran to here (Lambda.ServiceException).

    Step Functions retries the step; the function may well have run (and
    written), so the retry must carry on from what it left.
    """


class Clock:
    """Simulated time: sleeping advances it, nothing else does (calls take 0.1 s)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


class PropagatingIR(FakeSecurityIR):
    """The fake service under one propagation model (``none``, ``conflict``, ``stale``)."""

    def __init__(
        self, clock: Clock, model: str, seconds: float, *, retry_after: bool = False
    ) -> None:
        super().__init__(
            new_membership(
                {
                    "membershipId": MEMBERSHIP_ID,
                    "incidentResponseTeam": TEAMS[0],
                    "membershipAccountsConfigurations": {"organizationalUnits": BASE},
                }
            )
        )
        self.clock, self.model, self.seconds, self.retry_after = clock, model, seconds, retry_after
        self.until = 0.0
        self.previous: dict[str, Any] | None = None
        self.accepted = 0
        self.refused = 0

    def get_membership(self, membershipId: str) -> dict[str, Any]:
        self.clock.now += 0.1
        shown = super().get_membership(membershipId)
        if self.model == "stale" and self.clock.now < self.until and self.previous is not None:
            shown["membershipAccountsConfigurations"] = copy.deepcopy(self.previous)
        return shown

    def update_membership(self, **params: Any) -> dict[str, Any]:
        self.clock.now += 0.1
        if self.model != "none" and self.clock.now < self.until:
            self.refused += 1
            response: dict[str, Any] = {
                "Error": {"Code": "ConflictException", "Message": "propagating"},
                "ResponseMetadata": {"HTTPStatusCode": 409},
            }
            if self.retry_after:
                response["ResponseMetadata"]["HTTPHeaders"] = {
                    "retry-after": str(int(self.until - self.clock.now) + 1)
                }
            raise ClientError(response, "UpdateMembership")  # type: ignore[arg-type]
        before = copy.deepcopy(self.membership["membershipAccountsConfigurations"])
        result = super().update_membership(**params)
        self.accepted += 1
        if "membershipAccountsConfigurationsUpdate" in params and self.model != "none":
            self.until, self.previous = self.clock.now + self.seconds, before
        return result

    @property
    def ous(self) -> set[str]:
        return set(self.membership["membershipAccountsConfigurations"]["organizationalUnits"])


def declared(ous: list[str], timeout: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ServiceToken": "t", "MembershipId": MEMBERSHIP_ID}
    out["OrganizationalUnits"] = ous
    if timeout is not None:
        out["ServiceTimeout"] = str(timeout)
    return out


def request(
    kind: str,
    new: dict[str, Any],
    old: dict[str, Any] | None = None,
    *,
    physical: str | None = None,
    stack: str = STACK,
    logical: str = "Membership",
) -> Request:
    """CloudFormation's request (a new RequestId) of the stack's resource."""
    if physical is None:
        physical = MEMBERSHIP_ID if kind != "Create" else ""
    return Request(kind, stack, str(uuid.uuid4()), logical, physical, new, old)  # type: ignore[arg-type]


def response_url(request_id: str, attempt: int = 1) -> str:
    return (
        "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/"
        f"{request_id}?sig={attempt}"
    )


def event_of(req: Request, url: str | None = None) -> dict[str, Any]:
    """The event CloudFormation sends for ``req`` (the dispatcher's input)."""
    event: dict[str, Any] = {
        "RequestType": req.request_type,
        "ResponseURL": url or response_url(req.request_id),
        "StackId": req.stack_id,
        "RequestId": req.request_id,
        "ResourceType": "Custom::SecurityIRMembership",
        "LogicalResourceId": req.logical_id,
        "ResourceProperties": copy.deepcopy(dict(req.properties)),
    }
    if req.physical_id:
        event["PhysicalResourceId"] = req.physical_id
    if req.old_properties is not None:
        event["OldResourceProperties"] = copy.deepcopy(dict(req.old_properties))
    return event


@dataclass
class Execution:
    """One execution of the state machine: where it is, and what its Work steps said."""

    keys: RequestKeys
    started: float
    #: When its next state runs (simulated time).
    at: float
    status: str = "RUNNING"
    #: The next state to run: Work, Answer or AnswerFailure.
    state: str = "Work"
    #: The next Work step's number (the definition's ``$.work.step``).
    step: int = 0
    failure: dict[str, Any] | None = None
    #: Retries of the current task so far (reset when the state is entered anew).
    retries: int = 0
    #: Every state entered, in order (Work, Wait, Answer, ...).
    history: list[str] = field(default_factory=list)
    #: What each Work step that returned said.
    results: list[StepResult] = field(default_factory=list)
    #: The Work invocation whose result the state machine waits for (0: none in flight);
    #: one it gave up on (a task timeout, an Invoke error while it ran) goes on unheard.
    awaited: int = 0


@dataclass
class Chain:
    """One request (one attempt's ResponseURL) and everything that answered it."""

    world: World
    request: Request
    url: str
    started: float
    execution: Execution | None = None

    @property
    def answers(self) -> list[Answer]:
        """Every answer PUT to the request's ResponseURL, repeats included."""
        return [answer for _at, answer in self.world.puts.get(self.url, [])]

    @property
    def answered_at(self) -> list[float]:
        return [at for at, _answer in self.world.puts.get(self.url, [])]

    @property
    def steps(self) -> list[StepResult]:
        """What the request's Work steps returned (none: answered by the dispatcher)."""
        return self.execution.results if self.execution is not None else []

    @property
    def keys(self) -> RequestKeys:
        assert self.execution is not None
        return self.execution.keys


@dataclass
class World:
    clock: Clock
    sir: Any
    store: MemoryStore
    requests: MemoryRequestStore
    #: The Work function's timeout: each Work step has this long.
    timeout: float = WORK_TIMEOUT
    #: The service client's retry policy, as the Work task builds it.
    policy: RetryPolicy = POLICY
    #: Hears each Work step's answer as soon as it is known (``Shell.settle``).
    settle: Callable[[Answer], None] = lambda _answer: None
    #: The consumer stack's status as DescribeStacks shows it ("": unreadable).
    status: str = "UPDATE_COMPLETE"
    executions: dict[str, Execution] = field(default_factory=dict)
    #: Per ResponseURL: every answer PUT to it, with when.
    puts: dict[str, list[tuple[float, Answer]]] = field(default_factory=dict)
    #: PUTs that fail from now on (the Answer task then raises, and is retried).
    failing_puts: int = 0
    #: Raised by StartExecution instead of starting.
    start_error: MembershipError | None = None
    #: The next this many StartExecution calls crash the dispatcher's sandbox first.
    crashing_starts: int = 0
    #: The next this many Work results are lost after the function returned (the Invoke
    #: fails with Lambda.ServiceException): Step Functions retries those steps.
    lost_results: int = 0
    #: The execution whose Work step is running (for a test's hooks).
    running: Execution | None = None
    #: Work invocations, in all executions.
    work_invocations: int = 0
    #: Work steps that outlived the Work function's timeout (Lambda killed them).
    killed: int = 0
    #: Each membership's pace, as the Work task keeps it in the table.
    paces: MemoryPaces = field(default_factory=MemoryPaces)
    #: A sandbox idle for less than this is reused (0: every invocation starts cold).
    warm_for: float = 0.0
    #: When the last Work invocation ended (simulated time).
    idle_since: float = -1e18
    #: Seconds spent inside Work invocations, their starts included: what Lambda bills.
    billed: float = 0.0
    #: States a single execution may go through before the harness calls it endless.
    limit: int = 5000
    #: Told before each task runs (its execution and state) and after (state ""): a
    #: test's fault points.
    on_task: Callable[[Execution, str], None] = lambda _execution, _state: None
    #: The backoff's jitter, as ``random.uniform`` is called (default: the longest wait).
    jitter: Callable[[float, float], float] = lambda _low, high: high
    #: Seconds a Work invocation takes to start, given the seconds since its execution's
    #: previous Work invocation ended (``inf`` for the first); default: a cold start each time.
    start_cost: Callable[[float], float] = lambda _idle: 0.5
    #: When each execution's last Work invocation ended (by execution name).
    work_ended: dict[str, float] = field(default_factory=dict)

    # -- the dispatcher (``app.handler``'s ``_answer``) --------------------------------

    def deliver(self, req: Request, *, url: str | None = None) -> Chain:
        """One delivery of ``req``'s event to the dispatcher."""
        event = event_of(req, url)
        chain = Chain(self, req, event["ResponseURL"], self.clock.now)
        self.clock.now += 0.1
        at_once = resource.answer_without_writes(Request.from_event(event))
        if at_once is not None:
            self._put(event, at_once)
            return chain
        try:
            outcome = dispatch(event, self.requests, self, lambda _started: None)  # type: ignore[arg-type]
        except MembershipError as error:
            outcome = Answer.failed(req.failed_physical_id(), error.reason)
        if isinstance(outcome, Answer):
            self._put(event, outcome)
        else:
            assert isinstance(outcome, Dispatched)
            chain.execution = self.executions[outcome.execution_name]
        return chain

    def run(self, req: Request, *, url: str | None = None) -> Chain:
        """Deliver ``req``, then run its execution to its end (others wait meanwhile)."""
        chain = self.deliver(req, url=url)
        if chain.execution is not None:
            self.finish(chain.execution)
        return chain

    # -- Step Functions, as the dispatcher uses it (``engine.Engine``) ---------------

    def start(self, keys: RequestKeys) -> bool:
        if self.crashing_starts > 0:
            self.crashing_starts -= 1
            raise Crash("the dispatcher's sandbox died before StartExecution")
        if self.start_error is not None:
            raise self.start_error
        name = keys.execution_name
        if name in self.executions:
            return False  # the same name and input: the running execution is the one
        self.executions[name] = Execution(keys, self.clock.now, self.clock.now + 0.05)
        return True

    def stop(self, keys: RequestKeys) -> None:
        execution = self.executions.get(keys.execution_name)
        if execution is not None and execution.status == "RUNNING":
            self._end(execution, "ABORTED")

    # -- the state machine -------------------------------------------------------------

    def finish(self, execution: Execution) -> Execution:
        """Run ``execution``'s states until it ends."""
        for _ in range(self.limit):
            if execution.status != "RUNNING":
                return execution
            self.advance(execution)
        raise AssertionError(f"an execution that never ends: {execution.history[-20:]}")

    def run_all(self) -> None:
        """Run every running execution, the one whose next state is due first each time."""
        for _ in range(self.limit * 4):
            running = [e for e in self.executions.values() if e.status == "RUNNING"]
            if not running:
                return
            self.advance(min(running, key=lambda e: e.at))
        raise AssertionError("executions that never end")

    def advance(self, execution: Execution) -> None:
        """Run ``execution``'s next state (and the Wait or retry interval before it)."""
        self.clock.now = max(self.clock.now, execution.at)
        if self.clock.now - execution.started > EXECUTION_TIMEOUT:
            self._end(execution, "TIMED_OUT")
            return
        execution.history.append(execution.state)
        self.on_task(execution, execution.state)
        try:
            if execution.state == "Work":
                self._work(execution)
            else:
                self._answer(execution)
        finally:
            self.on_task(execution, "")

    def _work(self, execution: Execution) -> None:
        self.work_invocations += 1
        deadline = self.clock.now + self.timeout
        remaining: Callable[[], float] = lambda: deadline - self.clock.now  # noqa: E731

        def service(before_write: Callable[[], None]) -> MembershipService:
            return MembershipService(
                self.sir,
                remaining,
                policy=self.policy,
                sleep=self.clock.sleep,
                jitter=self.jitter,
                before_write=before_write,
                paces=self.paces,
                clock=self.clock,
            )

        def shell(step: int, retried: bool) -> Shell:
            return Shell(
                self.store,
                remaining,
                settle=self.settle,
                sleep=self.clock.sleep,
                clock=self.clock,
                engine=True,
                step=step,
                retried=retried,
                stack_status=self.stack_status,
            )

        began = self.clock.now
        name = execution.keys.execution_name
        if self.clock.now - self.idle_since < self.warm_for:  # a sandbox is still warm
            self.clock.now += WARM_START
        else:
            self.clock.now += self.start_cost(self.clock.now - self.work_ended.get(name, -math.inf))
        outer, self.running = self.running, execution
        invocation = execution.awaited = self.work_invocations
        try:
            result = run_step(execution.keys, execution.step, self.requests, service, shell)
            if self.lost_results > 0 and execution.awaited == invocation:
                self.lost_results -= 1
                raise LambdaServiceError("the function returned; its result was lost")
        except AssertionError:
            raise  # a fake's check failed: the test's finding, not the function's error
        except LambdaServiceError:
            if execution.awaited == invocation:
                self._retry_or_catch(execution, WORK_RETRIES, "Lambda.ServiceException")
            return
        except Crash:
            if execution.awaited == invocation:
                self._caught(execution, "Runtime.ExitError", "Runtime.ExitError")
            return
        except Exception as error:  # the Catch (States.ALL), as tasks.work names it
            if execution.awaited == invocation:
                self._caught(execution, "TaskFailed", type(error).__name__)
            return
        finally:
            self.running = outer
            self.billed += self.clock.now - began
            self.idle_since = self.clock.now
            self.work_ended[name] = self.clock.now
        if execution.awaited != invocation or execution.status != "RUNNING":
            return  # the state machine has moved on (a task timeout, a retry, a stop)
        if self.clock.now > deadline:  # Lambda ended it at its timeout: the result never came
            self.killed += 1
            self._caught(execution, "Sandbox.Timedout", "Sandbox.Timedout")
            return
        execution.awaited = 0
        execution.results.append(result)
        execution.retries, execution.step = 0, result.step
        if result.next == "wait":
            execution.history.append("Wait")
            execution.at = self.clock.now + result.seconds
        elif result.next == "stop":
            execution.history.append("Superseded")
            self._end(execution, "SUCCEEDED")
        else:
            execution.state, execution.at = "Answer", self.clock.now

    def _caught(self, execution: Execution, error: str, message: str) -> None:
        """The definition's Catch on Work: AnswerFailure, with the error as Lambda names it."""
        if execution.status != "RUNNING":
            return
        cause = json.dumps({"errorMessage": message, "errorType": error})
        execution.failure = {"Error": error, "Cause": cause}
        execution.awaited = 0
        execution.state, execution.retries, execution.at = "AnswerFailure", 0, self.clock.now

    def time_out_task(self, execution: Execution) -> None:
        """The Work task's TimeoutSeconds fires while its Lambda still runs: Catch, and go on.

        Called from a test's hook inside the step, the execution then runs to
        its end; the step goes on afterwards (nothing kills a running Lambda),
        and its result is ignored.
        """
        self._caught(execution, "States.Timeout", "States.Timeout")
        self.finish(execution)

    def retry_while_running(self, execution: Execution) -> None:
        """The Work task's Invoke fails (Lambda.SdkClientException) while its Lambda still runs.

        Called from a test's hook inside the step: Step Functions retries the
        step, and the execution runs to its end; the first invocation goes
        on afterwards, and its result is ignored.
        """
        self._retry_or_catch(execution, WORK_RETRIES, "Lambda.SdkClientException")
        execution.awaited = 0
        self.finish(execution)

    def _retry_or_catch(
        self, execution: Execution, intervals: tuple[float, ...], error: str
    ) -> None:
        if execution.retries < len(intervals):
            execution.at = self.clock.now + intervals[execution.retries]
            execution.retries += 1
            return
        if execution.state == "Work":
            self._caught(execution, error, error)
        else:
            execution.history.append("Unanswered")
            self._end(execution, "FAILED")

    def _answer(self, execution: Execution) -> None:
        failure = execution.failure if execution.state == "AnswerFailure" else None
        try:
            answer_request(execution.keys, failure, self.requests, self._journal, self._send)
        except AssertionError:
            raise
        except (Exception, Crash, LambdaServiceError):  # Retry: States.ALL
            self._retry_or_catch(execution, ANSWER_RETRIES, "States.TaskFailed")
            return
        execution.history.append("Done")
        self._end(execution, "SUCCEEDED")

    def _end(self, execution: Execution, status: str) -> None:
        execution.status = status
        if status in ("FAILED", "TIMED_OUT", "ABORTED"):
            self.safety_net(execution, status)

    def safety_net(self, execution: Execution, status: str) -> None:
        """The EventBridge rule's event for an execution that ended badly, to the Answer function."""
        event = {
            "detail-type": STATUS_CHANGE,
            "source": "aws.states",
            "detail": {
                "status": status,
                "stateMachineArn": STATE_MACHINE_ARN,
                "name": execution.keys.execution_name,
                "input": execution_input(execution.keys),
            },
        }
        safety_net(event, self.requests, self._journal, self._send)

    # -- the Answer function's and the Work function's other dependencies -------------

    def _journal(self, stack_id: str, logical_id: str) -> Entry | None:
        return self.store.read(stack_id, logical_id)

    def _send(self, event: dict[str, Any] | Any, answer: Answer) -> bool:
        if self.failing_puts > 0:
            self.failing_puts -= 1
            return False
        self._put(event, answer)
        return True

    def _put(self, event: Any, answer: Answer) -> None:
        self.puts.setdefault(str(event["ResponseURL"]), []).append((self.clock.now, answer))

    def stack_status(self, _stack_id: str) -> str:
        if not self.status:
            raise StackStatusUnavailable("DescribeStacks denied (injected)")
        return self.status

    # -- what a test looks at ----------------------------------------------------------

    def answers_to(self, req: Request) -> list[Answer]:
        """Every answer PUT for ``req`` (all its ResponseURLs)."""
        prefix = response_url(req.request_id).split("?")[0]
        return [a for url, puts in self.puts.items() if url.startswith(prefix) for _t, a in puts]


def world(model: str = "conflict", seconds: float = 20.0, **options: Any) -> World:
    clock = Clock()
    sir = PropagatingIR(clock, model, seconds, retry_after=options.pop("retry_after", False))
    return with_service(clock, sir, **options)


def with_service(clock: Clock, sir: Any, **options: Any) -> World:
    """A world around ``sir``, its table's two parts sharing the requests' first sight."""
    store = MemoryStore(clock=clock)
    requests = MemoryRequestStore(clock=clock, seen=store.seen)
    return World(clock, sir, store, requests, **options)


def created(w: World, timeout: int | None = None) -> dict[str, Any]:
    old = declared(BASE, timeout)
    chain = w.run(request("Create", old))
    assert [a.status for a in chain.answers] == ["SUCCESS"]
    return old


def fail_after_calls(w: World, calls: int, error: BaseException) -> None:
    """Arm ``error`` right after ``calls`` more UpdateMembership calls are applied."""
    original = w.sir.update_membership
    left = [calls]

    def failing(**params: Any) -> dict[str, Any]:
        result = original(**params)
        left[0] -= 1
        if left[0] == 0:
            w.sir.update_membership = original
            raise error
        return result

    w.sir.update_membership = failing
