"""The recorded pace next to each change's calls: how long the function will take.

Why here, after the planner: the pace changes no call, only how long the
calls take and whether the function refuses the change before it writes
(``pace.doomed``, the same rule). It is read per membership from the
provider's table (``pace#<MembershipId>``) or given (``--pace SECONDS``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..pace import Pace, doomed, waits_in
from ..steps import ANSWER_MARGIN, service_timeout
from .steps import Preview, Step

#: A membership's pace and where it came from; None when none is known.
PaceLookup = Callable[[str], tuple[Pace, str] | None]


def with_paces(result: Preview, pace_for: PaceLookup) -> Preview:
    """``result`` with each changing step's membership pace attached (when known)."""
    found: dict[str, tuple[Pace, str] | None] = {}

    def paced(step: Step) -> Step:
        if step.plan is None or not step.plan.requests or step.membership_id is None:
            return step
        if step.membership_id not in found:
            found[step.membership_id] = pace_for(step.membership_id)
        known = found[step.membership_id]
        return step if known is None else replace(step, pace=known[0], pace_source=known[1])

    steps = {id(s): paced(s) for s in result.steps}
    resources = tuple(
        replace(r, steps=tuple(steps.get(id(s), s) for s in r.steps)) for r in result.resources
    )
    return replace(result, steps=tuple(steps[id(s)] for s in result.steps), resources=resources)


def pace_note(step: Step) -> str | None:
    """The estimate, and the refusal when it cannot fit (None: no pace, or no wait)."""
    pace, plan = step.pace, step.plan
    if pace is None or pace.window is None or plan is None:
        return None
    waits = waits_in(plan)
    if not waits:
        return None
    needed = waits * pace.window
    note = (
        f"at the pace {step.pace_source}, about {pace.window:.0f} s per OU or coverage change: "
        f"about {needed:.0f} s for the {waits} call{'s' if waits != 1 else ''} after the first"
    )
    timeout = service_timeout(step.request.properties)
    refusal = doomed(
        Pace(window=pace.window),  # the whole ServiceTimeout: no change before this one
        plan,
        0.0,
        time_left=timeout - ANSWER_MARGIN,
        service_timeout=timeout,
    )
    if refusal is not None:
        note += (
            ": more than the ServiceTimeout allows, so the function refuses the change before "
            "it writes; raise ServiceTimeout (up to 3600), split the change into several "
            "updates of fewer OUs, or set CoverEntireOrganization"
        )
    return note
