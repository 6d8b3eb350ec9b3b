"""Every scenario of ``sirlocal.scenarios`` that needs the project's stand-ins, played
through the real handler on the project's driver (the others run on ministack:
``tests/e2e/test_scenarios_ministack.py``; ``stand_in_reason`` says why each of these
cannot).

Each one asserts the stack statuses, the membership's final state, the exact
security-ir calls, answers within the contract and before the deadline, and
function logs free of names, emails, job titles, membership names and the
ResponseURL's query. Scenarios with a ``known_issue`` state the intended
behaviour and are expected to fail until the handler is fixed. Scenarios
that wait real seconds by design (``reliability_only``, with the reason) run
in ``make reliability`` only; the reason names the faster scenario or test
that plays the same behaviour here.
"""

from __future__ import annotations

import re

import pytest
from sirlocal.catalog import EVERY_SCENARIO as SCENARIOS
from sirlocal.driver import WorkerPool
from sirlocal.ministack_scenarios import stand_in_reason
from sirlocal.scenarios import Scenario, run_scenario
from sirlocal.services import LocalServices

pytestmark = pytest.mark.e2e


def _params() -> list[object]:
    params: list[object] = []
    for scenario in SCENARIOS:
        if scenario.reliability_only or not stand_in_reason(scenario):
            continue
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


def test_every_case_of_the_change_journal_issue_has_a_scenario() -> None:
    """Issue 8's numbered cases, one scenario each (none of them passes on the code before it)."""
    names = {s.name for s in SCENARIOS}
    issue_8 = {
        "rollback-restores-newly-declared",  # 1
        "later-failure-restores-newly-declared",  # 2
        "failed-before-first-write-keeps-foreign-ou",  # 3
        "create-undo-without-features",  # 4
        "create-unknown-outcome",  # 5
        "cancelled-update-overlap",  # 6
        "cancelled-update-before-first-write",  # 6, cancelled before the first journal entry
        "long-non-ascii-reason",  # 7
        "slow-table-after-last-write",  # 8
    }
    assert issue_8 <= names
    assert not [s.name for s in SCENARIOS if s.name in issue_8 and s.known_issue]


def test_scenarios_left_to_make_reliability_name_what_plays_them_here() -> None:
    """Each reason names a scenario that runs here (or a test file); every group keeps
    scenarios here, and most of them stay."""
    here = {s.name for s in SCENARIOS if not s.reliability_only}
    moved = {s.name: s.reliability_only for s in SCENARIOS if s.reliability_only}
    assert moved, "no scenario is left to make reliability"
    for name, reason in moved.items():
        named = set(re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)+", reason)) & (here | set(moved))
        assert named & here or "tests/" in reason, f"{name}: the reason names nothing run here"
        assert not named & set(moved), f"{name}: the reason names a scenario not run here"
    assert {s.group for s in SCENARIOS} == {s.group for s in SCENARIOS if s.name in here}
    assert len(here) >= 0.85 * len(SCENARIOS)


def test_every_case_of_the_nothing_lost_issue_has_a_scenario() -> None:
    """Issue 16's numbered cases 1-5, each played end to end (none is a known issue)."""
    cases = {
        int(s.name.split("-")[2])
        for s in SCENARIOS
        if s.group == "nothing-lost" and not s.known_issue
    }
    assert cases == {1, 2, 3, 4, 5}
