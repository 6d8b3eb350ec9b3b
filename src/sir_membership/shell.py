"""What carrying out a request needs from the imperative shell, besides the service.

Kept apart from ``resource`` so the shell's pieces (the table, the clock,
which Work step of the request's execution this is) are one value that tests
replace as a whole: a memory store, a simulated clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import StackStatusUnavailable
from .journal_store import Store
from .response import Answer
from .timing import TIMING

#: Seconds after a change's last call during which a read that does not show
#: it is taken as stale (the service shows account changes late) and read again.
STALE_READ_GRACE = TIMING.stale_read_grace


#: The consumer stack's statuses while the operation that created a resource
#: rolls back: a failed stack creation, and the clean-up of a failed update
#: ("Ongoing removal of new resources for the stack after a failed stack
#: update", CloudFormation's stack status documentation).
CREATE_ROLLBACK_STATUSES = frozenset(
    {"ROLLBACK_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"}
)


def stack_rolls_back(status: str) -> bool:
    """Whether a Delete sent while the stack is in ``status`` undoes a resource's creation."""
    return status in CREATE_ROLLBACK_STATUSES


def _unknown_status(_stack_id: str) -> str:
    raise StackStatusUnavailable(
        "could not read the stack's status: this function has no CloudFormation client; "
        "nothing was changed"
    )


@dataclass(frozen=True)
class Shell:
    """The table, the clocks and the place in the execution of one Work step."""

    store: Store
    #: Seconds this invocation has left.
    remaining: Callable[[], float]
    #: Hears the answer as soon as the outcome is known, before bookkeeping.
    settle: Callable[[Answer], None] = lambda _answer: None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    #: Whether a state machine runs the next step after a wait (the Work
    #: task); False: the work must fit in this invocation.
    engine: bool = False
    #: The Work step's number in the execution (0: the first).
    step: int = 0
    #: Whether this step began before and died (Step Functions retries it):
    #: a call of it may have been in flight.
    retried: bool = False
    stale_read_grace: float = STALE_READ_GRACE
    #: The consumer stack's status (``cloudformation:DescribeStacks``); raises
    #: ``StackStatusUnavailable`` when it cannot be read.
    stack_status: Callable[[str], str] = _unknown_status
