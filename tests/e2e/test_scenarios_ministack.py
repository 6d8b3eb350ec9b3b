"""The scenarios ministack can play, played on ministack (IAM enforced).

Why: the project's driver stays only for what a third-party engine cannot
play. Every scenario of the catalog that ministack can play runs here, not
on the driver (``tests/e2e/test_scenarios.py`` leaves it out): ministack's
CloudFormation sends the requests to the deployed provider, and the same
expectations as on the driver are checked from its stack events, its
ResponseURL, its Step Functions executions, its CloudWatch logs and the
emulator. One provider for the module: each scenario seeds the emulator
afresh and uses a stack of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from sirlocal.catalog import EVERY_SCENARIO
from sirlocal.fixtures import declare
from sirlocal.ministack import REPO_ROOT, LocalAWS, local_aws
from sirlocal.ministack_demo import PROVIDER_PARAMETERS
from sirlocal.ministack_deploy import Provider, deploy_provider
from sirlocal.ministack_scenarios import (
    LATER_FAILURE_TOKEN,
    SERVICE_TIMEOUT,
    on_ministack,
    run_on_ministack,
    stack_template,
    stand_in_reason,
)
from sirlocal.scenarios import SCENARIOS_BY_NAME, Fault, Scenario, Step

pytestmark = pytest.mark.e2e

SAM = os.environ.get("SIR_SAM") or str(REPO_ROOT / ".venv-tools" / "bin" / "sam")
BUILD_DIR = (
    REPO_ROOT / ".aws-sam" / f"ministack-scenarios-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
)


@pytest.fixture(autouse=True)
def clean_services() -> None:
    """Overrides tests/e2e/conftest.py's: no stand-in runs here, only ministack and the
    emulator."""


@pytest.fixture(scope="module")
def deployed() -> Iterator[tuple[LocalAWS, Provider]]:
    """ministack and the emulator with the provider deployed, for this module."""
    with local_aws() as aws:
        yield (
            aws,
            deploy_provider(aws, sam=SAM, parameters=PROVIDER_PARAMETERS, build_dir=BUILD_DIR),
        )


def test_every_scenario_ministack_can_play_holds_on_ministack(
    deployed: tuple[LocalAWS, Provider],
) -> None:
    """One test for all of them: a provider deployed once, the scenarios one after the
    other (each from a fresh emulator and no learned pace), every problem reported."""
    aws, provider = deployed
    chosen = on_ministack(EVERY_SCENARIO)
    problems = {}
    for scenario in chosen:
        result = run_on_ministack(scenario, aws, provider)
        if result.problems:
            problems[scenario.name] = list(result.problems)
    assert problems == {}, json.dumps(problems, indent=1)


def test_most_of_the_lifecycle_and_rollback_scenarios_run_on_ministack() -> None:
    """What ministack can play, it plays: every lifecycle and rollback scenario but those
    whose reason says what ministack lacks, and a scenario of every fault group too."""
    on = {s.name for s in on_ministack(EVERY_SCENARIO)}
    assert len(on) >= 20
    assert {"update-name", "replacement", "later-failure-rollback", "5xx-then-replan"} <= on
    assert "propagation-conflicts" in on
    for scenario in EVERY_SCENARIO:
        reason = stand_in_reason(scenario)
        assert (scenario.name in on) == (reason == ""), scenario.name
        assert "\n" not in reason, scenario.name
        assert len(reason) < 140, scenario.name


def _one_step(step: Step, **options: object) -> Scenario:
    return Scenario("x", "lifecycle", "x", (), (step,), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scenario", "says"),
    [
        (_one_step(Step("cold")), "recycle a Lambda process"),
        (_one_step(Step("update", declare(), faults=(Fault("put_status"),))), "response PUT"),
        (_one_step(Step("update", declare(), faults=(Fault("invoke_kill"),))), "running task"),
        (_one_step(Step("update", declare(), crash_after_writes=1)), "running task"),
        (_one_step(Step("create", declare(), "ROLLBACK_COMPLETE")), "no Delete"),
        (_one_step(Step("create", declare()), timeout=25.0), "function timeout of its own"),
        (_one_step(Step("create", declare()), custom=lambda run: None), "only the driver"),
        (_one_step(Step("update", declare(), work_steps=2)), "Work steps"),
    ],
)
def test_a_scenario_stays_on_the_stand_ins_with_the_reason(scenario: Scenario, says: str) -> None:
    assert says in stand_in_reason(scenario)


def test_what_ministack_plays_needs_only_the_emulators_faults() -> None:
    """A failed Create rolled back because a LATER resource failed is played (ministack
    deletes the created resource); an emulator fault is played."""
    later = _one_step(Step("create", declare(), "ROLLBACK_COMPLETE", later_failure="boom"))
    assert stand_in_reason(later) == ""
    assert stand_in_reason(SCENARIOS_BY_NAME["connection-resets"]) == ""


def test_the_stack_declares_the_scenarios_properties_and_a_later_failure() -> None:
    template = json.loads(stack_template(declare(), service_token="arn:token", later_failure="x"))
    membership = template["Resources"]["Membership"]
    assert membership["Type"] == "Custom::SecurityIRMembership"
    assert membership["Properties"] == {
        "ServiceTimeout": SERVICE_TIMEOUT,
        **declare(),
        "ServiceToken": "arn:token",
    }
    later = template["Resources"]["LaterResource"]
    assert later["DependsOn"] == "Membership"
    assert later["Properties"] == {"ServiceToken": LATER_FAILURE_TOKEN}
    plain = json.loads(stack_template(declare(ServiceTimeout=60), service_token="t"))
    assert set(plain["Resources"]) == {"Membership"}
    assert plain["Resources"]["Membership"]["Properties"]["ServiceTimeout"] == 60
