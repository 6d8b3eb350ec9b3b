"""What one Work step gives the state machine (pure).

Why a type of its own: a step either knows the request's answer, or needs
the engine to wait and run it again (the service asked to wait, reads are
stale, another request holds the membership), or must stop because a newer
request of the resource took over. Step Functions carries the waiting, so
the function never sleeps through it in a billed invocation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .response import Answer


@dataclass(frozen=True)
class Continue:
    """Run the next Work step after ``seconds`` (a Wait state: no compute meanwhile)."""

    seconds: float
    why: str

    @property
    def wait(self) -> int:
        """The Wait state's seconds: whole, at least one."""
        return max(1, math.ceil(self.seconds))


@dataclass(frozen=True)
class Stopped:
    """The request stops without an answer: a newer request of its resource took over."""

    why: str


#: What carrying out one step of a request gives.
Outcome = Answer | Continue | Stopped
