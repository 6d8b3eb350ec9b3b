"""How long the service takes to apply an account change, learned per membership (pure).

Why: after each UpdateMembership that changes OUs or coverage, the service
refuses the next UpdateMembership for a while (P seconds) as accounts
propagate, and mostly does not say for how long. A call sent too early
costs a Work step and a refusal; one sent too late costs wall time. The
calls themselves bound P: a call refused ``e`` seconds after the last
accepted change says P > e (the ``floor``); one accepted ``e`` seconds
after it, sent when pacing said it was due, says P <= e (the ``window``); a
Retry-After ``r`` says P <= e + r. The Work task keeps this per membership
in the table (``pace#<MembershipId>``, ``pace_store``), so the next change
starts from the window, and a change that cannot fit its ServiceTimeout is
refused before it writes (``doomed``).

When the next call is due, counted from the last accepted change (``target``):

* nothing known, or a window of at most ``NEGLIGIBLE`` not refused past: at once,
  so a service that does not propagate is never waited for (a window learned
  from two calls accepted back to back is only the first call's latency);
* only a floor: ``GROWTH`` times the floor, at least ``PROBE_FLOOR`` (a search
  for the window that overshoots it by at most half);
* a window more than ``TIGHT`` of itself (and half a second) above the
  floor: halfway (the window tightens);
* otherwise the window; after a refusal at or past it (the window grew, or
  the service throttles), the refusal plus ``STEP`` of the window: a small
  step, not an exponential backoff.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .errors import NO_CHANGE, with_outcome
from .plan import Plan, UpdateRequest

#: A window this short, with no refusal since, is the calls' own latency: no wait.
NEGLIGIBLE = 1.0
#: The first wait of a search for an unknown window (seconds).
PROBE_FLOOR = 4.0
#: Each further wait of that search: the floor times this.
GROWTH = 1.5
#: The small step past the window after a refusal: a share of the window.
STEP = 0.1
#: How close floor and window must be to stop halving: a share of the window.
TIGHT = 0.05
#: A call counts as sent when due if it was sent at most this long after its
#: target (a Wait state's whole seconds, the next step's start and read):
#: only then does its answer bound the window.
LATE = 3.0
#: The time from the end of a Wait state to the next step's call (its start
#: and its read), taken off the wait so the call lands on its target; the
#: Wait state's whole seconds are rounded up unless the call would then come
#: less than ``EARLY`` seconds early, which its step sleeps.
LEAD = 0.25
#: A wait shorter than this is slept in the Work step (a Wait state takes a
#: whole second and a new step); a longer one ends the step for a Wait state.
SLEEP_AT_MOST = 0.5
#: How early a Wait state may end a call's wait: its step sleeps the rest.
EARLY = 0.25
#: A refusal later than this after the last change is not about that change
#: (another writer, throttling): it teaches nothing about the window.
LONGEST_WINDOW = 900.0


def wait_state(wait: float) -> float:
    """The Wait state's seconds for a paced ``wait``: whole, the next call's lead taken off."""
    return float(max(1, math.ceil(wait - LEAD - EARLY)))


def propagates(request: UpdateRequest) -> bool:
    """Whether the call changes OUs or coverage: the service then propagates accounts."""
    return "membershipAccountsConfigurationsUpdate" in request.to_api()


def waits_in(plan: Plan) -> int:
    """How many of the plan's calls follow a call that propagates (each waits for a window)."""
    first = next((i for i, r in enumerate(plan.requests) if propagates(r)), None)
    return 0 if first is None else len(plan.requests) - first - 1


@dataclass(frozen=True)
class Pace:
    """What is known of one membership's propagation window. Times in seconds."""

    #: P is longer than this: the latest refusal, as long after the change it followed.
    floor: float = 0.0
    #: P is at most this (None: not known yet).
    window: float | None = None
    #: When the last accepted call that changed OUs or coverage was sent (epoch; 0: none).
    last: float = 0.0
    #: Refusals since then.
    refused: int = 0

    @property
    def known(self) -> bool:
        """Whether a window has been learned: the estimate of a change's duration."""
        return self.window is not None

    def target(self) -> float:
        """Seconds after the last change at which the next call is due (the rules above)."""
        window, floor = self.window, self.floor
        if window is None:
            return 0.0 if floor <= 0 else max(PROBE_FLOOR, GROWTH * floor)
        if window <= NEGLIGIBLE and floor < window:
            return 0.0
        if floor >= window:
            return floor + STEP * window
        if self.refused or window - floor <= max(TIGHT * window, 0.5):
            return window
        return (floor + window) / 2

    def wait(self, now: float) -> float:
        """Seconds to wait before the next call (0: it is due)."""
        if self.last <= 0:
            return 0.0
        return max(0.0, self.last + self.target() - now)

    def accepted(self, now: float, *, propagating: bool) -> Pace:
        """An UpdateMembership was accepted at ``now``."""
        elapsed = now - self.last
        window, floor = self.window, self.floor
        # Sent when due, with a window to learn: P <= elapsed. Without a refusal
        # since the last change (floor 0) and no window yet, nothing says the
        # service propagates at all: the gap is the calls' own time (a retry's
        # backoff included), not a window.
        evidence = window is not None or floor > 0
        if self.last > 0 and evidence and elapsed <= self.target() + LATE:
            window = elapsed if window is None or floor >= window else min(window, elapsed)
            if floor >= window:  # the window shrank: the old floor no longer holds
                floor = 0.0
        if not propagating:
            return replace(self, window=window, floor=floor)
        return Pace(floor=floor, window=window, last=now, refused=0)

    def refusal(self, now: float, retry_after: float | None) -> Pace:
        """An UpdateMembership was refused at ``now`` (propagation or throttling)."""
        elapsed = now - self.last
        counted = replace(self, refused=self.refused + 1)
        if self.last <= 0 or elapsed > LONGEST_WINDOW:
            return counted
        window = self.window
        floor = max(self.floor, elapsed)
        if retry_after is not None:  # the service's own word, in whole seconds
            bound = elapsed + retry_after
            window = bound if window is None or elapsed >= window else min(window, bound)
            floor = max(floor, bound - 1.0)
        return replace(counted, floor=floor, window=window)

    def estimate(self, waits: int, now: float) -> float:
        """Seconds ``waits`` windows take from ``now`` (the first after the last change's)."""
        assert self.window is not None
        return self.wait(now) + waits * self.window

    # -- the table item -------------------------------------------------------

    def to_item(self) -> dict[str, str]:
        """The fields as the table keeps them (numbers as text)."""
        item = {
            "floor": f"{self.floor:.3f}",
            "last": f"{self.last:.3f}",
            "refused": str(self.refused),
        }
        if self.window is not None:
            item["window"] = f"{self.window:.3f}"
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Pace:
        """The pace from ``to_item``'s fields; anything unreadable counts as not known."""
        try:
            window = item.get("window")
            pace = cls(
                floor=float(item.get("floor", 0.0)),
                window=float(window) if window is not None else None,
                last=float(item.get("last", 0.0)),
                refused=int(item.get("refused", 0)),
            )
        except (TypeError, ValueError):
            return cls()
        numbers = (pace.floor, pace.last, pace.window or 0.0)
        return pace if all(math.isfinite(n) and n >= 0 for n in numbers) else cls()


def doomed(
    pace: Pace | None,
    plan: Plan,
    now: float,
    *,
    time_left: float,
    service_timeout: int,
) -> str | None:
    """The reason to refuse ``plan`` before its first write, or None when it may fit.

    Only a recorded window says how long a change takes: with none (a
    membership's first change) nothing is refused.
    """
    waits = waits_in(plan)
    if pace is None or not pace.known or not waits:
        return None
    assert pace.window is not None
    needed = pace.estimate(waits, now)
    if needed <= time_left:
        return None
    calls = len(plan.requests)
    return with_outcome(
        f"The change needs {calls} UpdateMembership calls, {waits} of them after an OU or "
        f"coverage change the service takes about {pace.window:.0f} s to apply (the pace "
        f"recorded for membership {plan.membership_id}): about {needed:.0f} s, more than the "
        f"{max(time_left, 0.0):.0f} s left of the resource's ServiceTimeout of "
        f"{service_timeout} s: raise ServiceTimeout (up to 3600), split the change into "
        "several updates of fewer OUs, or set CoverEntireOrganization",
        NO_CHANGE,
    )
