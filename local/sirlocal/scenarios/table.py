"""The scenario table: every scenario, in the order tests and reports play them.

The sections live in ``table_lifecycle.py``, ``table_faults.py`` and
``table_rollback.py``; the duplicate deliveries, short, are here. Why one
tuple: ``tests/e2e/test_scenarios.py`` and ``make reliability`` play the same
scenarios in the same order, and a name is found in :data:`SCENARIOS_BY_NAME`.
"""

from __future__ import annotations

from sirlocal.fixtures import A, Expect, seed
from sirlocal.scenarios.custom import duplicate_at_once, duplicate_in_a_row
from sirlocal.scenarios.model import Scenario
from sirlocal.scenarios.shared import BASE_OUS, N1
from sirlocal.scenarios.table_faults import FAULTS
from sirlocal.scenarios.table_lifecycle import LIFECYCLE
from sirlocal.scenarios.table_rollback import ROLLBACK

DUPLICATES: tuple[Scenario, ...] = (
    # -- duplicates ------------------------------------------------------------------------
    Scenario(
        "duplicate-in-a-row",
        "duplicates",
        "the same Create delivered twice (warm), then again after a cold start",
        (seed(),),
        final={A: Expect(name=N1, ous=BASE_OUS)},
        calls=("Get A", "Update A +0 -0 name"),
        custom=duplicate_in_a_row,
        custom_faults="same event x3",
    ),
    Scenario(
        "duplicate-at-once",
        "duplicates",
        "the same Create delivered to two workers at the same moment: one execution, one answer",
        (seed(),),
        final={A: Expect(name=N1, ous=BASE_OUS)},
        calls=("Get A", "Update A +0 -0 name"),
        custom=duplicate_at_once,
        custom_faults="same event on 2 workers at once; GetMembership hangs 1.5 s",
    ),
)

SCENARIOS: tuple[Scenario, ...] = (*LIFECYCLE, *FAULTS, *ROLLBACK, *DUPLICATES)

SCENARIOS_BY_NAME = {s.name: s for s in SCENARIOS}
