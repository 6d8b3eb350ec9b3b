"""``make demo``'s story and ``make reliability``'s table, on a small run.

Why: both are commands people run by hand, not in CI; without a test they
would rot silently when the driver, the scenarios or the handler change.
The story is played in full (it is quick); the report is rendered from
two scenarios and two invalid declarations, and once from made-up results
to pin the sections a failing run adds.
"""

from __future__ import annotations

import io

import pytest
from sirlocal.demo import CHAPTERS, CREATED, FAILING, SEED, UPDATED, run_story, summary
from sirlocal.driver import WorkerPool
from sirlocal.fixtures import PEOPLE, sensitive_values
from sirlocal.reliability import run_bad_inputs, run_scenarios
from sirlocal.reliability_report import Measurement, render, totals
from sirlocal.scenarios import INVALID_INPUTS, SCENARIOS_BY_NAME, ScenarioResult
from sirlocal.services import LocalServices

pytestmark = pytest.mark.e2e

COLUMNS = (
    "Scenario",
    "Played on",
    "Group",
    "Faults injected",
    "Outcome",
    "Writes made / attempts",
    "Final state correct",
    "Calls as expected",
    "Slowest answer",
)


def _no_secret_in(text: str, secrets: set[str]) -> None:
    lowered = text.lower()
    leaked = [s for s in secrets if s.lower() in lowered]
    assert not leaked, f"{len(leaked)} sensitive value(s) printed"
    assert "x-amz-" not in lowered, "a ResponseURL was printed"


def test_demo_story_ends_as_it_says(services: LocalServices, pool: WorkerPool) -> None:
    out = io.StringIO()
    results = run_story(services, pool, out)
    text = out.getvalue()
    assert [r.status for r in results[: len(CHAPTERS)]] == [c.expect_status for c in CHAPTERS]
    assert all(r.ok for r in results), "\n".join(summary(results))
    assert "Update A +5 -5 name" in text  # +12 -7 and the rename in 3 calls, rename first
    assert "!AccessDeniedException" in text  # the injected fault is shown
    assert ". 1 of 2 UpdateMembership calls were applied" in " ".join(text.split())
    _no_secret_in(text, sensitive_values(SEED, CREATED, UPDATED, FAILING))


def test_reliability_table_from_a_small_run(services: LocalServices, pool: WorkerPool) -> None:
    chosen = [SCENARIOS_BY_NAME["update-name"], SCENARIOS_BY_NAME["partial-failure-rollback"]]
    results = run_scenarios(chosen, services, pool)
    bad = run_bad_inputs(INVALID_INPUTS[:2], services, pool)
    text = render(results, bad, Measurement.here(1.0, "pytest", subset=True), {"update-name"})
    header = next(line for line in text.splitlines() if line.startswith("| Scenario "))
    assert all(f" {column} |" in header for column in COLUMNS)
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == 2
    for row, result in zip(rows, results, strict=True):
        assert row.startswith(f"| `{result.name}`")
        assert f"| {result.writes} / {result.write_attempts} |" in row
        assert result.outcome in row
    assert "not checked" not in rows[0]
    assert "| not checked |" in rows[1]
    assert f"**Totals:** {totals(results, bad)}." in text
    assert "## Bad input" in text
    assert "(a subset of the runs)" in text
    assert all(r.writes == r.write_attempts == 0 for r in bad)
    secrets = sensitive_values(
        [s.seeds for s in chosen], [t.properties for s in chosen for t in s.steps]
    )
    _no_secret_in(text, secrets | {value for person in PEOPLE for value in person})


def _result(
    name: str, problems: tuple[str, ...], known_issue: str = "", reliability_only: str = ""
) -> ScenarioResult:
    return ScenarioResult(
        name, "faults", "a | b", "x1 fault", "CREATE_COMPLETE", 1, 2, not problems, True,
        problems, 0.5, 0.25, known_issue, reliability_only,
    )  # fmt: skip


def test_report_sections_for_failures_and_known_issues() -> None:
    results = [
        _result("fine", ()),
        _result("broken", ("calls were [] | wrong",)),
        _result("known-open", ("A: OUs differ",), known_issue="the rollback misses it"),
        _result("known-fixed", (), known_issue="was broken"),
        _result("slow", (), reliability_only="30 s of waits | fine"),
    ]
    text = render(results, [], Measurement.here(2.0, "pytest"), {"fine"})
    assert "a \\| b" in text  # pipes escaped inside cells
    assert "## Problems" in text
    assert "calls were [] \\| wrong" in text
    assert "- `known-open` (still reproduced): the rollback misses it" in text
    assert "- `known-fixed` (not reproduced in this run): was broken" in text
    assert "## Not in `make test`" in text
    assert "- `slow`: 30 s of waits \\| fine" in text
    assert "- `fine`:" not in text
    assert "5 scenarios: 3 with every check held, 2 with problems (1 of them known issues)" in text
    assert "1 known issue(s) not reproduced" in text
    assert "## Bad input" not in text


def test_the_report_says_where_each_scenario_ran_and_why() -> None:
    results = [_result("on-mini", ()), _result("killed", ()), _result("put-fails", ())]
    stand_ins = {"killed": "kills a Work step | no hook", "put-fails": "fails the PUT"}
    text = render(results, [], Measurement.here(2.0, "pytest"), set(), stand_ins)
    rows = {line.split("`")[1]: line for line in text.splitlines() if line.startswith("| `")}
    assert rows["on-mini"].split(" | ")[1] == "ministack"
    assert rows["killed"].split(" | ")[1] == rows["put-fails"].split(" | ")[1] == "stand-ins"
    assert "## Where each scenario runs" in text
    assert "1 of 3 scenarios run on ministack" in text
    assert "- kills a Work step \\| no hook: `killed`" in text
    assert "- fails the PUT: `put-fails`" in text
