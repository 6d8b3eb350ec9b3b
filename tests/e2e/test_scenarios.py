"""Every scenario of ``sirlocal.scenarios``, played through the real handler.

Each one asserts the stack statuses, the membership's final state, the exact
security-ir calls, answers within the contract and before the deadline, and
function logs free of names, emails, job titles, membership names and the
ResponseURL's query. Scenarios with a ``known_issue`` state the intended
behaviour and are expected to fail until the handler is fixed.
"""

from __future__ import annotations

import pytest
from sirlocal.driver import WorkerPool
from sirlocal.scenarios import SCENARIOS, Scenario, run_scenario
from sirlocal.services import LocalServices

pytestmark = pytest.mark.e2e


def _params() -> list[object]:
    params: list[object] = []
    for scenario in SCENARIOS:
        marks = []
        if scenario.known_issue:
            marks.append(pytest.mark.xfail(strict=True, reason=scenario.known_issue))
        params.append(pytest.param(scenario, id=scenario.name, marks=marks))
    return params


@pytest.mark.parametrize("scenario", _params())
def test_scenario(scenario: Scenario, services: LocalServices, pool: WorkerPool) -> None:
    result = run_scenario(scenario, services, pool)
    assert result.problems == (), "\n".join(result.problems)
    assert result.final_ok
    assert result.calls_ok


def test_the_scenarios_cover_the_required_groups() -> None:
    groups = {s.group for s in SCENARIOS}
    assert {"lifecycle", "faults", "rollback", "duplicates"} <= groups
    names = {s.name for s in SCENARIOS}
    assert len(names) == len(SCENARIOS), "scenario names must be unique"
    every_property = {
        "update-name",
        "update-team",
        "update-features",
        "update-cover-entire-org",
        "update-ous",
        "undo-cancellation",
        "replacement",
        "delete-retain",
        "delete-remove-ous",
    }
    assert every_property <= names
