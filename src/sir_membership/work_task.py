"""One Work step of a request's execution: do what fits, then say what comes next.

Why this shape: Step Functions carries the waiting (a Wait state between
steps costs no compute), the retries of a step that died, and the timeouts;
each step re-reads the request's record, checks its generation fence, and
runs ``resource.handle`` as one invocation would. The step's answer goes
into the request's record, never into the execution's history: only the
next state's name and the seconds to wait do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from . import resource
from .errors import MalformedRequest, Superseded
from .outcome import Continue, Stopped
from .request_record import RequestKeys
from .request_store import RequestStore
from .response import Answer
from .service import MembershipService
from .shell import Shell

logger = logging.getLogger(__name__)

Next = Literal["wait", "answer", "stop"]


@dataclass(frozen=True)
class StepResult:
    """What the state machine reads from a Work step (``Route`` and ``Wait``)."""

    step: int
    next: Next
    seconds: int = 0

    def to_payload(self) -> dict[str, Any]:
        """The task's result, as the state machine's ResultSelector picks it."""
        return {"step": self.step, "next": self.next, "seconds": self.seconds}


def step_input(event: Mapping[str, Any]) -> tuple[RequestKeys, int]:
    """The request's keys and the step's number from the task's input."""
    step = event.get("step")
    if type(step) is not int or step < 0:
        raise MalformedRequest("Malformed task input: step must be a whole number")
    return RequestKeys.from_input(event.get("request")), step


def fence_check(store: RequestStore, keys: RequestKeys) -> Callable[[], None]:
    """What the service runs immediately before every write: stop if superseded."""

    def check() -> None:
        if not store.holds(keys):
            raise Superseded(
                "A newer request of this resource took over before this request's next "
                "write: it stops without writing"
            )

    return check


def run_step(
    keys: RequestKeys,
    step: int,
    store: RequestStore,
    service: Callable[[Callable[[], None]], MembershipService],
    shell: Callable[[int, bool], Shell],
    *,
    tag: Callable[[str], None] = lambda _request_type: None,
) -> StepResult:
    """Carry the request on for one step (``service`` and ``shell`` are made for it).

    ``tag`` hears the request's type once it is read, for the log lines.
    """
    following = step + 1
    record = store.read(keys)
    if record is None or record.keys.attempt != keys.attempt:
        logger.warning("the request's record is gone or belongs to a newer attempt: stopping")
        return StepResult(following, "stop")
    tag(str(record.event.get("RequestType", "")))
    if record.answer is not None or record.outcome is not None:
        logger.info("the request already has its answer")
        return StepResult(following, "answer")
    if not store.holds(keys):
        logger.info("a newer request of the resource took over: stopping")
        return StepResult(following, "stop")
    retried = store.begin_step(keys, following)
    if retried:
        logger.warning("this step began before and died: a call of it may have been in flight")
    request = resource.Request.from_event(record.event)
    outcome = resource.handle(request, service(fence_check(store, keys)), shell(step, retried))
    if isinstance(outcome, Answer):
        store.record_outcome(keys, outcome)
        return StepResult(following, "answer")
    if isinstance(outcome, Continue):
        logger.info("continuing after a wait", extra={"seconds": outcome.wait, "why": outcome.why})
        return StepResult(following, "wait", outcome.wait)
    assert isinstance(outcome, Stopped)
    logger.info("stopped", extra={"why": outcome.why})
    return StepResult(following, "stop")
