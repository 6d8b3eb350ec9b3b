"""Every end-to-end scenario: the general ones and issue 16's numbered cases.

Why apart: ``sirlocal.nothing_lost`` builds on ``sirlocal.scenarios``; the
tests and ``make reliability`` play them all from this one list.
"""

from __future__ import annotations

from sirlocal.nothing_lost import NOTHING_LOST
from sirlocal.scenarios import SCENARIOS, Scenario

EVERY_SCENARIO: tuple[Scenario, ...] = (*SCENARIOS, *NOTHING_LOST)
EVERY_SCENARIO_BY_NAME = {s.name: s for s in EVERY_SCENARIO}
