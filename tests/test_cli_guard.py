"""The CLI's guard, ServiceTimeout line, argument errors, warnings and offline drift.

A green preview must not be a failed deploy: ``plan`` refuses a request the
provider's guard will refuse, with the function's own reason (the account
and region always; AllowedStackNames when read from the function or given).
Argument mistakes are named first, flags that do nothing say so, and a state
file nobody uses is a warning instead of a silent assumption.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from test_cli import (
    ACCOUNT,
    CHANGESETS,
    MID,
    REGION,
    STACK,
    RecordingSecurityIR,
    as_response,
    live,
    pages_of,
    plan_argv,
    run,
    state_argv,
    state_documents,
    stub_change_set,
)

from sir_membership import cli
from sir_membership.commands.drift import TAGS_OFFLINE
from sir_membership.guard import Accepted, Policy, Refused, screen
from sir_membership.response_bucket import ResponseBucket

TOKEN = (
    f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sir-membership-provider-MembershipFunction-"
    "Ab12Cd34Ef56"
)
URL = "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?X-Amz-Signature=s"


def function_reason(stack_id: str, patterns: tuple[str, ...]) -> str | None:
    """What the deployed function's guard answers for a request of this stack (None: served)."""
    event = {
        "RequestType": "Update",
        "ResponseURL": URL,
        "StackId": stack_id,
        "RequestId": "11111111-2222-3333-4444-555555555555",
        "LogicalResourceId": "Membership",
        "PhysicalResourceId": MID,
        "ResourceType": "Custom::SecurityIRMembership",
        "ResourceProperties": {"ServiceToken": TOKEN, "MembershipId": MID},
        "OldResourceProperties": {"ServiceToken": TOKEN, "MembershipId": MID},
    }
    policy = Policy(response_bucket=ResponseBucket.for_region(REGION), stack_patterns=patterns)
    verdict = screen(event, TOKEN, policy)
    if isinstance(verdict, Accepted):
        return None
    assert isinstance(verdict, Refused)
    return verdict.error.reason


def change_set_file(tmp_path: Path, name: str, **top: Any) -> str:
    pages = copy.deepcopy(pages_of(name))
    for page in pages:
        page.update(top)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(pages))
    return str(path)


# -- plan applies the provider's guard ----------------------------------------------------


def test_plan_fails_as_the_function_would_for_a_stack_allowed_stack_names_leaves_out() -> None:
    narrow = ["--allowed-stack-names", "security-ir-*"]
    code, out, err = run([*plan_argv("modify"), *state_argv("modify"), "--json", *narrow])
    printed = json.loads(out)
    assert code == cli.EXIT_ERROR
    (step,) = [s for r in printed["resources"] for s in r["steps"]]
    expected = function_reason(printed["changeSet"]["stackId"], ("security-ir-*",))
    assert expected is not None
    assert expected.startswith(f"Stack {STACK} may not use this provider")
    assert (step["status"], step["reason"], step["requests"]) == ("fail", expected, [])
    assert printed["updateMembershipRequests"] == []
    assert err.endswith(f"{cli.PROG}: Membership: {expected}\n")
    assert any(
        "AllowedStackNames security-ir-*, from --allowed-stack-names)" in n
        for n in printed["notes"]
    )


def test_plan_of_an_allowed_stack_is_unchanged_and_says_what_it_checked() -> None:
    base = run([*plan_argv("modify"), *state_argv("modify"), "--json"])
    code, out, _ = run(
        [*plan_argv("modify"), *state_argv("modify"), "--json", "--allowed-stack-names", "sir-*"]
    )
    assert function_reason(json.loads(out)["changeSet"]["stackId"], ("sir-*",)) is None
    assert (code, json.loads(out)["updateMembershipRequests"]) == (
        base[0],
        json.loads(base[1])["updateMembershipRequests"],
    )
    assert code == cli.EXIT_CHANGES
    (note,) = [n for n in json.loads(out)["notes"] if n.startswith("provider ")]
    assert "(same account and region, AllowedStackNames sir-*, from --allowed" in note
    # Without a value, offline: the account and region are checked, the names are not, and it says so.
    (note,) = [n for n in json.loads(base[1])["notes"] if n.startswith("provider ")]
    assert "AllowedStackNames not checked (offline)" in note


def test_plan_refuses_a_stack_in_another_account_even_offline(tmp_path: Path) -> None:
    other = f"arn:aws:cloudformation:{REGION}:210987654321:stack/{STACK}/5b6f1c20-3e4d"
    path = change_set_file(tmp_path, "modify", StackId=other)
    code, out, _ = run(["plan", "--change-set-file", path, *state_argv("modify"), "--json"])
    (step,) = [s for r in json.loads(out)["resources"] for s in r["steps"]]
    assert code == cli.EXIT_ERROR
    assert step["reason"] == function_reason(other, ("*",))
    assert step["reason"].startswith(f"Stack {STACK} is in account 210987654321")


@pytest.fixture
def lambda_stub() -> Any:
    client = boto3.client("lambda", region_name=REGION)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def online(lambda_client: Any, name: str = "modify", *extra: str) -> tuple[int, str, str]:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with Stubber(cloudformation) as stub:
        stub_change_set(stub, pages_of(name))
        reader = RecordingSecurityIR(state_documents(name))
        clients = cli.Clients(
            lambda region: cloudformation,
            lambda region: reader.client,
            lambda region: lambda_client,
        )
        argv = ["plan", "--stack-name", STACK, "--change-set-name", "cs", "--json", *extra]
        result = run(argv, clients)
        assert reader.updates == []
        return result


def test_online_plan_reads_allowed_stack_names_from_the_provider_function(
    lambda_stub: tuple[Any, Stubber],
) -> None:
    client, stub = lambda_stub
    stub.add_response(
        "get_function_configuration",
        {"Environment": {"Variables": {"ALLOWED_STACK_NAMES": "security-ir-*", "X": "y"}}},
        {"FunctionName": TOKEN},
    )
    code, out, _ = online(client)
    printed = json.loads(out)
    (step,) = [s for r in printed["resources"] for s in r["steps"]]
    assert code == cli.EXIT_ERROR
    assert step["reason"] == function_reason(printed["changeSet"]["stackId"], ("security-ir-*",))
    assert any("read from the function's configuration" in n for n in printed["notes"])
    assert "X" not in json.dumps(printed["notes"])


def test_online_plan_says_when_it_may_not_read_the_function(
    lambda_stub: tuple[Any, Stubber],
) -> None:
    client, stub = lambda_stub
    stub.add_client_error(
        "get_function_configuration",
        "AccessDeniedException",
        expected_params={"FunctionName": TOKEN},
    )
    code, out, _ = online(client)
    assert code == cli.EXIT_CHANGES
    (note,) = [n for n in json.loads(out)["notes"] if n.startswith("provider ")]
    assert "AllowedStackNames not checked (lambda:GetFunctionConfiguration" in note
    assert "AccessDeniedException" in note
    assert "--allowed-stack-names" in note


def test_a_given_value_is_used_instead_of_reading_the_function(
    lambda_stub: tuple[Any, Stubber],
) -> None:
    client, _ = lambda_stub  # no response queued: reading it would fail the stub
    code, _, err = online(client, "modify", "--allowed-stack-names", "nothing-*")
    assert code == cli.EXIT_ERROR
    assert "AllowedStackNames=nothing-*,sir-demo" in err


# -- ServiceTimeout ---------------------------------------------------------------------


def test_plan_prints_the_calls_against_the_resources_service_timeout() -> None:
    code, out, _ = run([*plan_argv("modify"), *state_argv("modify")])
    assert code == cli.EXIT_CHANGES
    assert (
        "    Time: 1 UpdateMembership call within the resource's ServiceTimeout of 600 s "
        "(declared)\n" in out
    )


# -- argument errors, warnings -------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["plan", "--chnage-set-file", "cs.json"],
            "unknown argument: --chnage-set-file (did you mean --change-set-file?)",
        ),
        (
            ["plan", "--change-set-name", "cs", "--stack-nmae=s"],
            "unknown argument: --stack-nmae (did you mean --stack-name?)",
        ),
        (
            ["drift", "--stak-name", "s", "--zzz"],
            "unknown arguments: --stak-name (did you mean --stack-name?), --zzz",
        ),
        (["plan", "--change-set-file", "cs.json", "extra"], "unknown argument: extra"),
    ],
)
def test_unknown_arguments_are_named_first_with_a_suggestion(argv: list[str], message: str) -> None:
    code, out, err = run(argv)
    assert (code, out) == (cli.EXIT_ERROR, "")
    assert err == f"{cli.PROG}: error: {message} (see {cli.PROG} --help)\n"
    assert "required" not in err


def test_a_state_file_no_resource_uses_is_a_warning(tmp_path: Path) -> None:
    other = live(membershipId="m-zzzzzzzzzz")
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    code, out, err = run([*plan_argv("modify"), "--state-file", str(path)])
    assert code == cli.EXIT_CHANGES
    assert err.splitlines()[:2] == [
        f"{cli.PROG}: warning: --state-file ({path}) holds membership m-zzzzzzzzzz, which no "
        "previewed resource uses: check the file is for this stack",
        f"{cli.PROG}: warning: membership {MID} is in no --state-file: the plan assumes its "
        "state (see [state: ...])",
    ]
    assert "[state: assumed" in out
    _, _, quiet = run([*plan_argv("modify"), *state_argv("modify")])
    assert "warning" not in quiet


@pytest.mark.parametrize(
    ("extra", "warning"),
    [
        (
            ["--stack-name", STACK],
            "--stack-name has no effect with --change-set-file: the file names its stack",
        ),
        (["--region", "eu-west-1"], "--region has no effect offline: no AWS call is made"),
        (
            ["--logical-id", "Membership", "--service-token", TOKEN],
            "--service-token has no effect with --logical-id, which picks the resource",
        ),
    ],
)
def test_flags_without_effect_in_a_mode_say_so(extra: list[str], warning: str) -> None:
    code, _, err = run([*plan_argv("modify"), *state_argv("modify"), *extra])
    assert code == cli.EXIT_CHANGES
    assert f"{cli.PROG}: warning: {warning}\n" in err


# -- drift offline -------------------------------------------------------------------------


def write(tmp_path: Path, name: str, document: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def test_drift_works_offline_from_properties_and_state_files(tmp_path: Path) -> None:
    properties = write(
        tmp_path,
        "props.json",
        {"Membership": {"MembershipId": MID, "OrganizationalUnits": ["ou-ab12-abcdef12"]}},
    )
    state = write(tmp_path, "state.json", live(membershipName="renamed"))
    argv = ["drift", "--properties-file", properties, "--state-file", state]
    code, out, err = run([*argv, "--json"])  # run's clients refuse to be created
    assert (code, err) == (cli.EXIT_OK, "")
    (report,) = json.loads(out)["resources"]
    assert report["status"] == "in-sync"
    assert report["organizationalUnitsOutsideStack"] == ["ou-ab12-bcdef123"]
    drifted = write(tmp_path, "drifted.json", {"MembershipId": MID, "MembershipName": "declared"})
    code, out, _ = run(["drift", "--properties-file", drifted, "--state-file", state])
    assert code == cli.EXIT_CHANGES
    assert f"Stack {drifted} (offline: saved GetMembership output): 1 membership" in out
    assert "\n  MembershipName  changed\n" in out
    assert "1. membershipId=m-abcdef0123 membershipName=***" in out


def test_drift_offline_without_a_saved_state_cannot_check_and_tags_are_not_guessed(
    tmp_path: Path,
) -> None:
    properties = write(
        tmp_path,
        "props.json",
        {
            "A": {"MembershipId": MID, "Tags": [{"Key": "env", "Value": "prod"}]},
            "B": {"MembershipId": "m-bbbbbbbbbb"},
        },
    )
    state = write(tmp_path, "state.json", [live(), live(membershipId="m-cccccccccc")])
    code, out, err = run(
        ["drift", "--properties-file", properties, "--state-file", state, "--json"]
    )
    assert code == cli.EXIT_ERROR
    a, b = json.loads(out)["resources"]
    assert TAGS_OFFLINE in a["notes"]
    assert b["status"] == "fail"
    assert b["reason"].startswith("no saved state for membership m-bbbbbbbbbb")
    assert (
        f"{cli.PROG}: warning: --state-file ({state}) holds membership m-cccccccccc, which no "
        f"resource in {properties} declares"
    ) in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["drift", "--state-file", "s.json"],
            "drift offline (--state-file) needs --properties-file",
        ),
        (["drift"], "drift needs --stack-name (online), or --properties-file and --state-file"),
    ],
)
def test_drift_says_what_each_mode_needs(argv: list[str], message: str) -> None:
    code, _, err = run(argv)
    assert code == cli.EXIT_ERROR
    assert message in err


def test_drift_offline_warns_that_stack_name_and_region_do_nothing(tmp_path: Path) -> None:
    properties = write(tmp_path, "p.json", {"MembershipId": MID})
    state = write(tmp_path, "s.json", live())
    argv = ["drift", "--properties-file", properties, "--state-file", state]
    code, out, err = run([*argv, "--stack-name", "security-ir-prod", "--region", "eu-west-1"])
    assert code == cli.EXIT_OK
    assert "Stack security-ir-prod (offline: saved GetMembership output)" in out
    assert "--stack-name has no effect offline (--state-file): it only names the report" in err
    assert "--region has no effect offline: no AWS call is made" in err


def test_the_fixtures_are_what_these_tests_assume() -> None:
    document = json.loads((CHANGESETS / "modify.json").read_text())
    pages = document if isinstance(document, list) else [document]
    assert STACK in pages[0]["StackId"]
    assert TOKEN in json.dumps(pages)
    assert as_response(pages[0])["StackName"] == STACK
