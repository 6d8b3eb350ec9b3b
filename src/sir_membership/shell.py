"""What carrying out a request needs from the imperative shell, besides the service.

Kept apart from ``resource`` so the shell's pieces (the table, the clock,
the way to start the next invocation) are one value that tests replace as a
whole: a memory store, a simulated clock, a hand-off that only records.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from .continuation import Continuation
from .errors import StackStatusUnavailable
from .journal_store import Store
from .response import Answer

#: Seconds after a change's last call during which a read that does not show
#: it is taken as stale (the service shows account changes late) and read again.
STALE_READ_GRACE = 120.0


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


def _new_token() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Shell:
    """The table, the clocks and the hand-off of one invocation."""

    store: Store
    #: Seconds this invocation has left.
    remaining: Callable[[], float]
    #: Hears the answer as soon as the outcome is known, before bookkeeping.
    settle: Callable[[Answer], None] = lambda _answer: None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    #: Starts the next invocation of the function with the request's event and
    #: this marker (raises ``ContinuationFailed``); None: work must fit in one.
    hand_off: Callable[[Continuation], None] | None = None
    token: Callable[[], str] = _new_token
    stale_read_grace: float = STALE_READ_GRACE
    #: The consumer stack's status (``cloudformation:DescribeStacks``); raises
    #: ``StackStatusUnavailable`` when it cannot be read.
    stack_status: Callable[[str], str] = _unknown_status
