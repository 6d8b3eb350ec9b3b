"""The provider on ministack: deployed as ``sam deploy`` does, played through change sets,
with IAM enforced on the provider's own roles (``AUTH=true``).

Why: every other end-to-end test plays CloudFormation with a driver this
project wrote. Here a third-party engine runs the real template (SAM
transform, parameters, ``CAPABILITY_IAM``) and the real lean package:
``make demo``'s story must end as it says, with the calls the plan CLI
predicts from ministack's change sets; and each of the four roles (the
dispatcher's, the Work and Answer tasks', the state machine's) must be
exactly enough: without any one of its enforced actions the scenario that
needs it fails with the README's one-line reason (the least-privilege matrix,
also written to docs/local.md; what ministack does not enforce, and grants
no code calls, are shown as such); and ``sir-membership plan`` must predict the
calls of real change sets, one per change-set fixture. Started once per
module (ministack, the emulator, sam build when its inputs changed, sam
deploy); each test seeds the emulator afresh and uses its own stack.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import pytest
from sirlocal import iam_matrix, stack_ops
from sirlocal.fixtures import NAMES, PEOPLE, A, ous
from sirlocal.ministack import REPO_ROOT, LocalAWS, local_aws
from sirlocal.ministack_changesets import CASES, NOT_PLAYED, play_all
from sirlocal.ministack_demo import (
    EXAMPLE,
    PROVIDER_PARAMETERS,
    SECRETS,
    SEED,
    STEPS,
    example_parameters,
    run_story,
)
from sirlocal.ministack_deploy import Provider, deploy_provider
from sirlocal.ministack_matrix import DOC, run_matrix
from sirlocal.services import load_template

pytestmark = pytest.mark.e2e

SAM = os.environ.get("SIR_SAM") or str(REPO_ROOT / ".venv-tools" / "bin" / "sam")
# One build directory per pytest-xdist worker: tests of this module may run in several.
BUILD_DIR = (
    REPO_ROOT / ".aws-sam" / f"ministack-e2e-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
)


@pytest.fixture(scope="module")
def deployed() -> Iterator[tuple[LocalAWS, Provider]]:
    """ministack and the emulator with the provider deployed, for this module."""
    with local_aws() as aws:
        provider = deploy_provider(
            aws, sam=SAM, parameters=PROVIDER_PARAMETERS, build_dir=BUILD_DIR
        )
        yield aws, provider


@pytest.fixture
def aws(deployed: tuple[LocalAWS, Provider]) -> LocalAWS:
    """The running pair, with only the demo's membership seeded and no fault armed."""
    local, _ = deployed
    local.emulator.reset()
    local.emulator.seed(SEED)
    return local


def test_provider_deployed_as_sam_deploy_does(deployed: tuple[LocalAWS, Provider]) -> None:
    aws, provider = deployed
    stack = aws.client("cloudformation").describe_stacks(StackName=provider.stack_name)
    assert stack["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Stacks"][0]["Parameters"]}
    # The optional enterprise parameters keep their defaults (no boundary, no key).
    assert parameters == {
        **PROVIDER_PARAMETERS,
        "KmsKeyArn": "",
        "PermissionsBoundaryArn": "",
        "AlarmTopicArn": "",
    }
    # The table key's policies' condition is false without a key: none is created.
    assert [s.logical_id for s in provider.substitutions] == [
        "AnswerTableKeyPolicy",
        "TableKeyPolicy",
        "WorkTableKeyPolicy",
    ]
    function = aws.client("lambda").get_function_configuration(FunctionName=provider.function_name)
    # The local settings come from ministack's environment, never from the template.
    assert "RESPONSE_URL_PATTERNS" not in function["Environment"]["Variables"]
    assert "AWS_ENDPOINT_URL_SECURITY_IR" not in function["Environment"]["Variables"]
    assert function["Environment"]["Variables"]["ALLOWED_STACK_NAMES"] == "security-ir-*"


def test_demo_story_through_change_sets(aws: LocalAWS) -> None:
    out = io.StringIO()
    results = run_story(aws, out)
    text = out.getvalue()
    assert [r.status for r in results] == [s.expect_status for s in STEPS]
    assert all(r.ok for r in results), "\n".join(p for r in results for p in r.problems)
    # The plan's predictions were compared with the calls made, and shown.
    assert text.count("made (all): equal") == 2
    assert "made (the forward calls up to the refused one): equal" in text
    assert "1 of 2 UpdateMembership calls were applied" in " ".join(text.split())
    leaked = [s for s in SECRETS if s.lower() in text.lower()]
    assert not leaked, f"{len(leaked)} sensitive value(s) printed"


def test_least_privilege_matrix(deployed: tuple[LocalAWS, Provider]) -> None:
    """Every statement of the four roles: removed, its scenario fails with the README's reason.

    One test, not one per row: with pytest-xdist's worksteal each test may run
    in another worker, which would start ministack and deploy again.
    """
    aws, provider = deployed
    matrix = run_matrix(aws, provider, load_template())
    rows = {r.statement.key: r for r in matrix.rows}
    # Every action the template grants each role has a row (a new one shows up here).
    assert sorted(rows) == sorted(s.key for s in iam_matrix.role_statements(load_template()))
    assert {s.role for s in iam_matrix.role_statements(load_template())} == set(iam_matrix.ROLES)
    assert [k for k, r in rows.items() if not r.held] == [], "\n".join(
        f"{k}: {r.observed}" for k, r in rows.items() if not r.held
    )
    # With the action put back, the same operation succeeds (the scenario's control).
    describe = rows[(iam_matrix.WORK_ROLE, "cloudformation:DescribeStacks")]
    assert describe.observed.endswith("DELETE_COMPLETE")
    stop = rows[(iam_matrix.ROLE, "states:StopExecution")]
    assert "with it put back, the same update's execution: ABORTED" in stop.observed
    # The state machine's role is not checked by ministack: said so, never passed as enforced.
    invoke = rows[(iam_matrix.MACHINE_ROLE, "lambda:InvokeFunction")]
    assert invoke.observed.startswith("not enforced by ministack")
    # Grants no code calls: listed in the matrix as ones to drop (a finding for template.yaml).
    assert sorted(k for k, r in rows.items() if r.unused) == sorted(UNUSED)
    # security-ir (the emulator, no IAM): every grant called, every call granted.
    assert matrix.ungranted == ()
    # docs/local.md holds what this run gives (`make iam-matrix` writes it).
    assert iam_matrix.section(DOC.read_text(encoding="utf-8")) == matrix.markdown()


#: The grants the matrix finds no code calling (removed, every scenario still succeeds);
#: template.yaml dropped the five it found (the dispatcher's PutItem, DeleteItem and
#: DescribeExecution, the Answer task's PutItem and DeleteItem).
UNUSED: list[tuple[str, str]] = []


#: Per fixture: the plan's exit code, the UpdateMembership calls, the stack's status after.
EXPECTED = {
    "add": (2, 1, "CREATE_COMPLETE"),
    "modify": (2, 3, "UPDATE_COMPLETE"),
    "no-change": (0, 0, "UPDATE_COMPLETE"),
    "replacement": (2, 4, "UPDATE_COMPLETE"),  # 2 on the new membership, 2 on the old one
    "remove": (2, 2, "UPDATE_COMPLETE"),
    "invalid": (1, 0, "UPDATE_ROLLBACK_COMPLETE"),
}


def test_plan_predicts_the_calls_of_real_change_sets(deployed: tuple[LocalAWS, Provider]) -> None:
    """Each change-set fixture's kind of change, made on ministack: plan, execute, compare.

    One test for all cases (as the matrix): one ministack per pytest-xdist worker.
    """
    aws, _ = deployed
    fixtures = {p.stem for p in (REPO_ROOT / "tests" / "fixtures" / "changesets").glob("*.json")}
    played = {c.fixture for c in CASES}
    assert sorted(played | set(NOT_PLAYED)) == sorted(fixtures)  # each one played or said why
    results = play_all(aws)
    observed = {r.case.fixture: (r.plan_code, len(r.made), r.stack_status) for r in results}
    assert observed == EXPECTED
    differing = [r.case.fixture for r in results if not r.equal]
    assert differing == [], f"calls made differ from the plan's for {differing}"


#: Another resource of the new stack, created after the membership, that fails.
FAILING_RESOURCE = """  Breaks:
    Type: Custom::Fails
    DependsOn: Membership
    Properties:
      ServiceToken: arn:aws:lambda:us-east-1:000000000000:function:does-not-exist
"""


def _as_declared(state: dict[str, Any]) -> dict[str, Any]:
    """The membership without what the service adds to a team it was sent."""
    team = [{k: p[k] for k in ("name", "jobTitle", "email")} for p in state["incidentResponseTeam"]]
    return {**state, "incidentResponseTeam": team}


def test_a_succeeded_create_undone_by_the_stack_rollback_restores_the_membership(
    aws: LocalAWS,
) -> None:
    """Issue 16, case 3, on a third-party engine: the shipped example (DeletionPolicy
    RetainExceptOnCreate) adopts A with another name, team, Triage and OUs; a later
    resource fails, so ministack deletes the created resource while the stack is
    ROLLBACK_IN_PROGRESS, and that Delete puts A back as it was before the stack."""
    template = EXAMPLE.read_text(encoding="utf-8")
    template = template.replace("\nOutputs:\n", f"\n{FAILING_RESOURCE}\nOutputs:\n", 1)
    assert "DeletionPolicy: RetainExceptOnCreate" in template
    assert "Breaks:" in template
    before = aws.emulator.state(A)
    (name, title, email) = PEOPLE[2]
    values = {
        **example_parameters(NAMES[1], ous(1, 9)),
        "EnableTriage": "false",
        "PrimaryResponderName": name,
        "PrimaryResponderJobTitle": title,
        "PrimaryResponderEmail": email,
    }
    cfn = aws.client("cloudformation")
    described = stack_ops.create_change_set(
        cfn,
        stack_name="security-ir-create-rolled-back",
        change_set_name="create",
        template_body=template,
        values=values,
    )
    outcome = stack_ops.execute_change_set(cfn, described)
    assert outcome.stack_status == "ROLLBACK_COMPLETE"
    assert [e.status for e in outcome.events if e.logical_id == "Membership"] == [
        "CREATE_IN_PROGRESS",
        "CREATE_COMPLETE",
        "DELETE_IN_PROGRESS",
        "DELETE_COMPLETE",
    ]
    applied = [c for c in aws.emulator.calls("UpdateMembership") if c.status == 200]
    assert len(applied) == 2  # the Create's change, and the rollback Delete's restore
    assert applied[0].request["membershipName"] == NAMES[1]
    assert _as_declared(aws.emulator.state(A)) == _as_declared(before)
