"""The provider on ministack: deployed as ``sam deploy`` does, played through change sets,
with IAM enforced on the function's own role (``AUTH=true``).

Why: every other end-to-end test plays CloudFormation with a driver this
project wrote. Here a third-party engine runs the real template (SAM
transform, parameters, ``CAPABILITY_IAM``) and the real lean package:
``make demo``'s story must end as it says, with the calls the plan CLI
predicts from ministack's change sets; and the function's role must be
exactly enough: without one of its DynamoDB actions a stack operation fails
with the README's one-line reason and writes nothing. Started once per
module (ministack, the emulator, sam build when its inputs changed, sam
deploy); each test seeds the emulator afresh and uses its own stack.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sirlocal import stack_ops
from sirlocal.fixtures import NAMES, PEOPLE, A, ous
from sirlocal.ministack import REPO_ROOT, LocalAWS, local_aws
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

pytestmark = pytest.mark.e2e

SAM = os.environ.get("SIR_SAM") or str(REPO_ROOT / ".venv-tools" / "bin" / "sam")
# One build directory per pytest-xdist worker: tests of this module may run in several.
BUILD_DIR = (
    REPO_ROOT / ".aws-sam" / f"ministack-e2e-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
)
#: The role's DynamoDB statement (template.yaml, FunctionRole, policy ``idempotency-table``).
TABLE_POLICY = "idempotency-table"
#: README, Troubleshooting: the reasons a DynamoDB denial gives.
TABLE_REASON = re.compile(
    r"^(idempotency table \S+ is unreachable|could not [\w ]+ the change journal in table \S+ "
    r"\(AccessDeniedException\))"
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
    assert parameters == {**PROVIDER_PARAMETERS, "KmsKeyArn": "", "PermissionsBoundaryArn": ""}
    # TableKeyPolicy's condition is false without a key: it is not created.
    assert [s.logical_id for s in provider.substitutions] == [
        "InvokeItselfPolicy",
        "TableKeyPolicy",
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


def _role(aws: LocalAWS, provider: Provider) -> str:
    resource = aws.client("cloudformation").describe_stack_resource(
        StackName=provider.stack_name, LogicalResourceId="FunctionRole"
    )
    return str(resource["StackResourceDetail"]["PhysicalResourceId"])


def _create(aws: LocalAWS, stack: str) -> stack_ops.Outcome:
    cfn = aws.client("cloudformation")
    described = stack_ops.create_change_set(
        cfn,
        stack_name=stack,
        change_set_name="create",
        template_body=EXAMPLE.read_text(encoding="utf-8"),
        values=example_parameters(NAMES[0], ous(1, 8)),
    )
    return stack_ops.execute_change_set(cfn, described)


def _without(aws: LocalAWS, provider: Provider, action: str, stack: str) -> stack_ops.Outcome:
    """Create ``stack`` while the role's table statement lacks ``action``; restore it after."""
    iam, role = aws.client("iam"), _role(aws, provider)
    granted = iam.get_role_policy(RoleName=role, PolicyName=TABLE_POLICY)["PolicyDocument"]
    document = granted if isinstance(granted, dict) else json.loads(granted)
    (statement,) = document["Statement"]
    assert action in statement["Action"]
    narrowed = {**statement, "Action": [a for a in statement["Action"] if a != action]}
    iam.put_role_policy(
        RoleName=role,
        PolicyName=TABLE_POLICY,
        PolicyDocument=json.dumps({**document, "Statement": [narrowed]}),
    )
    try:
        return _create(aws, stack)
    finally:
        iam.put_role_policy(
            RoleName=role, PolicyName=TABLE_POLICY, PolicyDocument=json.dumps(document)
        )
        assert iam.get_role_policy(RoleName=role, PolicyName=TABLE_POLICY)["PolicyDocument"]


@pytest.mark.parametrize("action", ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"])
def test_without_a_dynamodb_action_the_create_fails_with_the_readme_reason(
    deployed: tuple[LocalAWS, Provider], aws: LocalAWS, action: str
) -> None:
    stack = f"security-ir-denied-{action.split(':')[1].lower()}"
    before = aws.emulator.state(A)
    outcome = _without(aws, deployed[1], action, stack)
    assert outcome.stack_status == "ROLLBACK_COMPLETE"
    (reason, *_) = outcome.reasons("CREATE_FAILED")
    assert TABLE_REASON.match(reason), reason
    assert aws.emulator.calls("UpdateMembership") == []  # nothing was written
    assert aws.emulator.state(A) == before
    stack_ops.delete_stack(aws.client("cloudformation"), stack)


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
