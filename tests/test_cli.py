"""The command line: plan and drift, online (stubbed AWS) and offline, and agreement.

The agreement tests are the point of the preview: for every change-set
fixture, the UpdateMembership requests ``plan --json --show-sensitive``
prints must equal the calls ``resource.handle`` (the function) makes for the
requests CloudFormation will send, from the same membership state.
"""

from __future__ import annotations

import copy
import io
import json
import os
import runpy
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber
from changeset_execution import Sent, execute_change_set, lambda_function, through_resource
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sir_membership import cli, tasks
from sir_membership.membership import MembershipState
from sir_membership.preview import (
    Observed,
    load_change_set,
    offline_lookup,
    preview,
    select,
)
from sir_membership.service import MembershipService

FIXTURES = Path(__file__).parent / "fixtures"
CHANGESETS = FIXTURES / "changesets"
STATES = FIXTURES / "states"
REGION, ACCOUNT = "us-east-1", "123456789012"
STACK = "sir-demo"
STACK_ID = (
    f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/5b6f1c20-3e4d-11ef-9a1b-0e7c3f2a9d41"
)
MID = "m-abcdef0123"
A, B, C, D = "ou-ab12-abcdef12", "ou-ab12-bcdef123", "ou-cd34-cdef1234", "ou-cd34-def12345"
OUTSIDE = "ou-9z9z-outside1"
#: Every change-set fixture; each has a saved GetMembership state of the same name.
FIXTURES_ALL = (
    "add",
    "invalid",
    "modify",
    "no-change",
    "paginated",
    "remove",
    "replacement",
    "unresolved",
)


# -- a security-ir client answered from state --------------------------------------


def _apply(document: dict[str, Any], params: Mapping[str, Any]) -> None:
    """The service's UpdateMembership semantics, on a GetMembership document."""
    for key in ("membershipName", "incidentResponseTeam"):
        if key in params:
            document[key] = copy.deepcopy(params[key])
    if "optInFeatures" in params:
        merged = {f["featureName"]: f["isEnabled"] for f in document.get("optInFeatures", [])}
        merged |= {f["featureName"]: f["isEnabled"] for f in params["optInFeatures"]}
        document["optInFeatures"] = [{"featureName": k, "isEnabled": v} for k, v in merged.items()]
    update = params.get("membershipAccountsConfigurationsUpdate", {})
    accounts = document.setdefault("membershipAccountsConfigurations", {})
    if "coverEntireOrganization" in update:
        accounts["coverEntireOrganization"] = update["coverEntireOrganization"]
    ous = set(accounts.get("organizationalUnits", []))
    ous |= set(update.get("organizationalUnitsToAdd", []))
    ous -= set(update.get("organizationalUnitsToRemove", []))
    accounts["organizationalUnits"] = sorted(ous)
    if params.get("undoMembershipCancellation"):
        document["membershipStatus"] = "Active"


class RecordingSecurityIR:
    """A real boto3 security-ir client whose calls are answered from GetMembership documents.

    It hooks the same events as botocore's Stubber, but answers from state,
    so the handler and the CLI make whatever calls they decide on; botocore
    still validates every parameter, and each UpdateMembership is recorded
    and applied.
    """

    def __init__(self, documents: Iterable[Mapping[str, Any]]) -> None:
        self.documents = {d["membershipId"]: copy.deepcopy(dict(d)) for d in documents}
        self.updates: list[dict[str, Any]] = []
        self.reads: list[str] = []
        self.client = boto3.client("security-ir", region_name=REGION)
        self._params: dict[str, Any] = {}
        events = self.client.meta.events
        events.register_first("before-parameter-build.security-ir.*", self._remember)
        events.register_first("before-call.security-ir.*", self._answer)

    def _remember(self, params: dict[str, Any], **_: Any) -> None:
        self._params = copy.deepcopy(params)

    def _answer(self, model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        params = self._params
        mid = params["membershipId"]
        if mid not in self.documents:
            error = {"Code": "ResourceNotFoundException", "Message": "Membership not found"}
            return AWSResponse(None, 404, {}, None), {
                "Error": error,
                "ResponseMetadata": {"HTTPStatusCode": 404},
            }
        if model.name == "GetMembership":
            self.reads.append(mid)
            return AWSResponse(None, 200, {}, None), copy.deepcopy(self.documents[mid])
        assert model.name == "UpdateMembership"
        self.updates.append(copy.deepcopy(params))
        _apply(self.documents[mid], params)
        return AWSResponse(None, 200, {}, None), {}


def api_document(state: MembershipState) -> dict[str, Any]:
    """A GetMembership document for a state (the offline assumption, served to the handler)."""
    document: dict[str, Any] = {
        "membershipId": state.membership_id,
        "accountId": ACCOUNT,
        "region": REGION,
        "membershipStatus": state.status,
        "incidentResponseTeam": [r.to_api() for r in state.team],
        "optInFeatures": [f.to_api() for f in state.features],
        "membershipAccountsConfigurations": {
            "coverEntireOrganization": state.cover_entire_organization,
            "organizationalUnits": sorted(state.organizational_units),
        },
    }
    if state.name is not None:
        document["membershipName"] = state.name
    return document


# -- running the CLI ------------------------------------------------------------------


def run(argv: list[str], clients: cli.Clients | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, clients=clients or unusable_clients(), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def unusable_clients() -> cli.Clients:
    def refuse(region: str | None) -> Any:
        raise AssertionError("offline commands must not create AWS clients")

    return cli.Clients(refuse, refuse)


def clients_for(cloudformation: Any, security_ir: RecordingSecurityIR | None = None) -> cli.Clients:
    fake = security_ir or RecordingSecurityIR([])
    return cli.Clients(lambda region: cloudformation, lambda region: fake.client)


def pages_of(name: str) -> list[dict[str, Any]]:
    document = json.loads((CHANGESETS / f"{name}.json").read_text())
    return document if isinstance(document, list) else [document]


def state_documents(name: str) -> list[dict[str, Any]]:
    path = STATES / f"{name}.json"
    if not path.exists():
        return []
    document = json.loads(path.read_text())
    return document if isinstance(document, list) else [document]


def as_response(page: Mapping[str, Any]) -> dict[str, Any]:
    """A saved CLI page as boto3 returns it (timestamps are datetimes)."""
    out = copy.deepcopy(dict(page))
    out["CreationTime"] = datetime.fromisoformat(out["CreationTime"])
    return out


@pytest.fixture
def cloudformation() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("cloudformation", region_name=REGION)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def stub_change_set(stub: Stubber, pages: list[dict[str, Any]], name: str = "cs") -> None:
    token = None
    for page in pages:
        expected = {"StackName": STACK, "ChangeSetName": name, "IncludePropertyValues": True}
        if token:
            expected["NextToken"] = token
        stub.add_response("describe_change_set", as_response(page), expected)
        token = page.get("NextToken")


def plan_argv(name: str, *extra: str) -> list[str]:
    return ["plan", "--change-set-file", str(CHANGESETS / f"{name}.json"), *extra]


def state_argv(name: str) -> list[str]:
    path = STATES / f"{name}.json"
    return ["--state-file", str(path)] if path.exists() else []


# -- agreement -------------------------------------------------------------------------
#
# The function's side runs through ``changeset_execution`` (CloudFormation's contract,
# written without the preview's code) into ``app.handler``, the deployed
# entry point: the preview and the function share only the state they start from.

#: What CloudFormation fills in when the change set executes (the fixtures'
#: placeholders): the function never sees a placeholder.
FILLED_IN_AT_EXECUTION = {"{{changeSetDependencyDetails}}": "ou-ab12-5a4db0c1"}


def executed_pages(name: str) -> list[dict[str, Any]]:
    """The change set as it is when it executes: every placeholder filled in.

    For a change set with placeholders this is the one to preview again once
    the values exist, as the preview itself advises.
    """
    text = (CHANGESETS / f"{name}.json").read_text()
    for placeholder, value in FILLED_IN_AT_EXECUTION.items():
        text = text.replace(placeholder, value)
    document = json.loads(text)
    return document if isinstance(document, list) else [document]


def executed_file(name: str, tmp_path: Path) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(executed_pages(name)))
    return str(path)


def function_calls(
    name: str, documents: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> list[Sent]:
    """Execute the fixture's change set against the Lambda handler, from ``documents``."""
    fake = RecordingSecurityIR(documents)
    with lambda_function(fake.client, monkeypatch) as invoke:
        return execute_change_set(executed_pages(name), invoke, lambda: fake.updates)


def check_agreement(printed: dict[str, Any], sent: list[Sent]) -> None:
    """The preview printed exactly the function's calls, request by request, and its failures."""
    assert printed["updateMembershipRequests"] == [call for s in sent for call in s.calls]
    steps = {
        (step["requestType"], resource["logicalId"], step["physicalResourceId"]): step
        for resource in printed["resources"]
        for step in resource["steps"]
    }
    for s in sent:
        step = steps.pop(s.key)  # every request CloudFormation sends is previewed
        assert step["requests"] == s.calls, s.key
        if s.answer["Status"] == "FAILED":
            assert (step["status"], step["reason"]) == ("fail", s.answer["Reason"]), s.key
            continue
        assert step["status"] != "fail", s.key
        if s.event["RequestType"] == "Update":  # the id answered decides a replacement
            answered = s.answer["PhysicalResourceId"]
            assert step["membershipId"] == answered
            assert step["replacement"] == (answered != s.event["PhysicalResourceId"])
    for key, step in steps.items():  # what CloudFormation never sends
        assert (step["status"], step["requests"]) == ("skip", []), key
        assert step["reason"], key


def test_every_fixture_is_compared_with_the_function() -> None:
    assert sorted(p.stem for p in CHANGESETS.glob("*.json")) == sorted(FIXTURES_ALL)
    assert all((STATES / f"{name}.json").exists() for name in FIXTURES_ALL)


@pytest.mark.parametrize("name", FIXTURES_ALL)
def test_offline_preview_with_saved_state_agrees_with_the_function(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["plan", "--change-set-file", executed_file(name, tmp_path), *state_argv(name)]
    code, out, _ = run([*argv, "--json", "--show-sensitive"])
    printed = json.loads(out)
    check_agreement(printed, function_calls(name, state_documents(name), monkeypatch))
    assert code == cli.EXIT_CODES[printed["status"]]


@pytest.mark.parametrize("name", FIXTURES_ALL)
def test_offline_preview_with_assumed_state_agrees_with_the_function(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a state file the function is given the state the preview says it assumed."""
    argv = ["plan", "--change-set-file", executed_file(name, tmp_path)]
    code, out, _ = run([*argv, "--json", "--show-sensitive"])
    printed = json.loads(out)
    assert "assumed" in printed["stateSource"]
    change_set = load_change_set(executed_pages(name))
    assumed = offline_lookup(select(change_set), {})
    ids = {
        str(json.loads(change[key])["Properties"].get("MembershipId"))
        for page in executed_pages(name)
        for c in page["Changes"]
        if (change := c["ResourceChange"])["ResourceType"] == "Custom::SecurityIRMembership"
        for key in ("BeforeContext", "AfterContext")
        if key in change
    }
    documents = [api_document(assumed(i).state) for i in sorted(ids)]
    check_agreement(printed, function_calls(name, documents, monkeypatch))
    assert code == cli.EXIT_CODES[printed["status"]]


@pytest.mark.parametrize("name", FIXTURES_ALL)
def test_online_preview_agrees_with_the_function_and_never_writes(
    name: str, cloudformation: tuple[Any, Stubber], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, stub = cloudformation
    stub_change_set(stub, executed_pages(name))
    reader = RecordingSecurityIR(state_documents(name))
    argv = ["plan", "--stack-name", STACK, "--change-set-name", "cs", "--json", "--show-sensitive"]
    code, out, _ = run(argv, clients_for(client, reader))
    printed = json.loads(out)
    assert reader.updates == []
    check_agreement(printed, function_calls(name, state_documents(name), monkeypatch))
    assert code == cli.EXIT_CODES[printed["status"]]
    assert printed["stateSource"] == f"read with GetMembership in {REGION}"


def test_the_agreement_check_is_not_vacuous(monkeypatch: pytest.MonkeyPatch) -> None:
    """A preview with a call too many, a different OU or a cleanup never sent fails it."""
    sent = function_calls("replacement", state_documents("replacement"), monkeypatch)
    assert [s.key[0] for s in sent] == ["Update", "Delete"]
    assert all(s.calls for s in sent)
    argv = plan_argv("replacement", *state_argv("replacement"), "--json", "--show-sensitive")
    printed = json.loads(run(argv)[1])
    check_agreement(printed, sent)
    with pytest.raises(AssertionError):
        check_agreement(printed, sent[:1])
    extra = copy.deepcopy(printed)
    extra["updateMembershipRequests"].append(sent[0].calls[0])
    with pytest.raises(AssertionError):
        check_agreement(extra, sent)
    other = copy.deepcopy(printed)
    step = other["resources"][0]["steps"][1]
    step["requests"][0]["membershipAccountsConfigurationsUpdate"]["organizationalUnitsToRemove"][
        0
    ] = OUTSIDE
    with pytest.raises(AssertionError):
        check_agreement(other, sent)


OU_SETS = st.frozensets(
    st.sampled_from([A, B, C, D, OUTSIDE, *[f"ou-ab12-{i:08d}" for i in range(7)]])
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    old=OU_SETS,
    new=OU_SETS,
    actual=OU_SETS,
    action=st.sampled_from(["Add", "Modify", "Remove", "Replace"]),
    on_delete=st.sampled_from(["Retain", "RemoveOrganizationalUnits"]),
    renamed=st.booleans(),
)
def test_any_change_previews_exactly_the_functions_calls(
    old: frozenset[str],
    new: frozenset[str],
    actual: frozenset[str],
    action: str,
    on_delete: str,
    renamed: bool,
) -> None:
    other = "m-0123456789ab"
    base = json.loads((CHANGESETS / "modify.json").read_text())
    before = json.loads(base["Changes"][0]["ResourceChange"]["BeforeContext"])["Properties"]
    before |= {"OrganizationalUnits": sorted(old), "OnDelete": on_delete}
    after = before | {"OrganizationalUnits": sorted(new)}
    if renamed:
        after["MembershipName"] = "renamed-membership"
    if action == "Replace":
        after["MembershipId"] = other
    change: dict[str, Any] = {
        "Action": "Remove" if action == "Remove" else "Modify" if action != "Add" else "Add",
        "LogicalResourceId": "Membership",
        "ResourceType": "Custom::SecurityIRMembership",
    }
    if action != "Add":
        change |= {"PhysicalResourceId": MID, "BeforeContext": json.dumps({"Properties": before})}
    if action != "Remove":
        change["AfterContext"] = json.dumps({"Properties": after})
    document = {
        "ChangeSetName": "cs",
        "StackId": STACK_ID,
        "Status": "CREATE_COMPLETE",
        "Changes": [{"Type": "Resource", "ResourceChange": change}],
    }
    change_set = load_change_set(document)
    documents = [
        api_document(MembershipState(MID, organizational_units=actual)),
        api_document(MembershipState(other, organizational_units=actual - {A})),
    ]
    reader = RecordingSecurityIR(documents)
    service = MembershipService(reader.client, lambda: 300.0, account_id=ACCOUNT, region=REGION)
    result = preview(
        change_set, select(change_set), lambda mid: Observed(service.get(mid), "GetMembership")
    )
    fake = RecordingSecurityIR(documents)
    invoke = through_resource(fake.client, account_id=ACCOUNT, region=REGION)
    execute_change_set([document], invoke)
    assert reader.updates == []
    assert [r.to_api() for r in result.requests] == fake.updates


@pytest.mark.e2e
@pytest.mark.parametrize("name", FIXTURES_ALL)
def test_end_to_end_against_the_security_ir_emulator(
    name: str, cloudformation: tuple[Any, Stubber], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``plan`` against the emulator, then the change set executed through the Lambda
    handler against it: the same calls.

    The emulator applies the service's strict rules (an OU added twice or
    removed when absent is an error), so a wrong plan would also fail there.
    """
    emulator_module = pytest.importorskip("sirlocal.emulator")
    client, stub = cloudformation
    stub_change_set(stub, executed_pages(name))
    with emulator_module.SecurityIREmulator() as emulator:
        emulator.seed_many(state_documents(name))
        security_ir = boto3.client(
            "security-ir",
            region_name=REGION,
            endpoint_url=emulator.endpoint_url,
            config=cli.FUNCTION_CONFIG,
        )
        argv = ["plan", "--stack-name", STACK, "--change-set-name", "cs", "--json"]
        code, out, _ = run(
            [*argv, "--show-sensitive"], cli.Clients(lambda r: client, lambda r: security_ir)
        )
        assert emulator.calls("UpdateMembership") == []

        def calls() -> list[dict[str, Any]]:
            return [c.request for c in emulator.calls("UpdateMembership")]

        with lambda_function(security_ir, monkeypatch) as invoke:
            sent = execute_change_set(executed_pages(name), invoke, calls)
        records = emulator.calls("UpdateMembership")
    printed = json.loads(out)
    assert code == cli.EXIT_CODES[printed["status"]]
    assert all(c.status == 200 for c in records)
    check_agreement(printed, sent)


# -- plan: online --------------------------------------------------------------------------


def test_plan_follows_next_token_across_pages(cloudformation: tuple[Any, Stubber]) -> None:
    client, stub = cloudformation
    pages = pages_of("paginated")
    assert len(pages) == 2
    assert pages[0]["NextToken"]
    stub_change_set(stub, pages)
    reader = RecordingSecurityIR(state_documents("paginated"))
    code, out, _ = run(
        ["plan", "--stack-name", STACK, "--change-set-name", "cs", "--json"],
        clients_for(client, reader),
    )
    printed = json.loads(out)
    assert code == cli.EXIT_CHANGES
    assert [r["logicalId"] for r in printed["resources"]] == ["Membership"]
    assert len(printed["updateMembershipRequests"]) == 2
    assert reader.reads == [MID]


def test_plan_shows_the_estimate_at_a_given_pace_and_the_refusal_past_service_timeout() -> None:
    argv = plan_argv("paginated", *state_argv("paginated"))
    code, out, _ = run([*argv, "--pace", "400"])
    assert code == cli.EXIT_CHANGES
    assert (
        "ServiceTimeout of 600 s (declared): the service may take minutes per call while "
        "accounts propagate; the state machine waits between Work steps until then (no function "
        "runs while it waits); at the pace given with --pace, about 400 s per OU or coverage change: about 400 s for the 1 call "
        "after the first"
    ) in out
    assert "refuses" not in out
    _, out, _ = run([*argv, "--pace", "700"])
    assert (
        "about 700 s for the 1 call after the first: more than the ServiceTimeout allows, so the "
        "function refuses the change before it writes; raise ServiceTimeout (up to 3600), split "
        "the change into several updates of fewer OUs, or set CoverEntireOrganization"
    ) in out
    _, out, _ = run([*argv, "--pace", "700", "--json"])
    (step,) = json.loads(out)["resources"][0]["steps"]
    assert step["pace"] == {"seconds": 700.0, "source": "given with --pace"}
    _, out, _ = run([*argv, "--json"])
    assert "pace" not in json.loads(out)["resources"][0]["steps"][0], "no pace: no estimate"
    code, _, err = run([*argv, "--table-name", "sir-table"])
    assert code == cli.EXIT_ERROR
    assert "--table-name reads the provider's table: online only (offline, pass --pace" in err
    code, _, err = run([*argv, "--pace", "0"])
    assert (code, err) == (
        cli.EXIT_ERROR,
        "sir-membership: error: --pace must be a number of seconds between 0 and 3600\n",
    )


def test_plan_reads_the_recorded_pace_online_from_the_providers_table(
    cloudformation: tuple[Any, Stubber],
) -> None:
    client, stub = cloudformation
    stub_change_set(stub, pages_of("paginated"))
    reader = RecordingSecurityIR(state_documents("paginated"))
    item = {"window": "61.25", "floor": "57.25", "last": "1", "refused": "0"}
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    with Stubber(dynamodb) as table:
        table.add_response(
            "get_item",
            {
                "Item": {
                    "id": {"S": f"pace#{MID}"},
                    **{k: {"N": v} for k, v in item.items()},
                    "expiration": {"N": "99999999999"},
                }
            },
            {"TableName": "sir-table", "Key": {"id": {"S": f"pace#{MID}"}}},
        )
        clients = replace(clients_for(client, reader), dynamodb=lambda _r: dynamodb)
        argv = ["plan", "--stack-name", STACK, "--change-set-name", "cs"]
        code, out, _ = run([*argv, "--table-name", "sir-table"], clients)
        table.assert_no_pending_responses()
    assert code == cli.EXIT_CHANGES
    assert (
        "at the pace recorded in table sir-table, about 61 s per OU or coverage change: about "
        "61 s for the 1 call after the first"
    ) in out
    assert reader.updates == [], "plan never writes"


@pytest.mark.parametrize("status", ["CREATE_PENDING", "CREATE_IN_PROGRESS"])
def test_plan_refuses_a_change_set_not_created_yet(
    status: str, cloudformation: tuple[Any, Stubber]
) -> None:
    client, stub = cloudformation
    page = pages_of("modify")[0] | {"Status": status, "Changes": []}
    stub_change_set(stub, [page])
    code, out, err = run(
        ["plan", "--stack-name", STACK, "--change-set-name", "cs"], clients_for(client)
    )
    assert code == cli.EXIT_ERROR
    assert out == ""
    assert f"is not created yet (Status {status})" in err
    assert err.count("\n") == 1


def test_plan_reports_why_a_change_set_failed(cloudformation: tuple[Any, Stubber]) -> None:
    client, stub = cloudformation
    reason = "The submitted information didn't contain changes."
    page = pages_of("modify")[0] | {"Status": "FAILED", "StatusReason": reason, "Changes": []}
    stub_change_set(stub, [page])
    code, _, err = run(
        ["plan", "--stack-name", STACK, "--change-set-name", "cs"], clients_for(client)
    )
    assert code == cli.EXIT_ERROR
    assert err == f"{cli.PROG}: error: change set sir-modify FAILED: {reason}\n"


def test_plan_says_when_the_change_set_does_not_exist(cloudformation: tuple[Any, Stubber]) -> None:
    client, stub = cloudformation
    stub.add_client_error(
        "describe_change_set",
        service_error_code="ChangeSetNotFound",
        service_message="ChangeSet [nope] does not exist",
        http_status_code=404,
    )
    code, _, err = run(
        ["plan", "--stack-name", STACK, "--change-set-name", "nope"], clients_for(client)
    )
    assert code == cli.EXIT_ERROR
    assert "change set nope was not found for stack sir-demo in us-east-1" in err
    assert err.count("\n") == 1


def test_plan_passes_other_cloudformation_errors_on_in_one_line(
    cloudformation: tuple[Any, Stubber],
) -> None:
    client, stub = cloudformation
    message = "1 validation error detected: Value 'c s' at 'changeSetName' failed to satisfy"
    stub.add_client_error(
        "describe_change_set", service_error_code="ValidationError", service_message=message
    )
    code, _, err = run(
        ["plan", "--stack-name", STACK, "--change-set-name", "cs"], clients_for(client)
    )
    assert code == cli.EXIT_ERROR
    assert err == f"{cli.PROG}: error: DescribeChangeSet failed: ValidationError: {message}\n"


def test_plan_of_a_stack_not_in_the_region_names_the_region(
    cloudformation: tuple[Any, Stubber],
) -> None:
    """A stack in another region is "Stack [x] does not exist" to CloudFormation."""
    client, stub = cloudformation
    stub.add_client_error(
        "describe_change_set",
        service_error_code="ValidationError",
        service_message="Stack [sir-demo] does not exist",
    )
    code, out, err = run(
        ["plan", "--stack-name", STACK, "--change-set-name", "cs"], clients_for(client)
    )
    assert (code, out) == (cli.EXIT_ERROR, "")
    assert err == (
        f"{cli.PROG}: error: stack {STACK} does not exist in {REGION}: check --stack-name and "
        "--region (the stack's region, where its change sets live)\n"
    )


def test_plan_accepts_a_change_set_arn_without_a_stack(cloudformation: tuple[Any, Stubber]) -> None:
    client, stub = cloudformation
    arn = pages_of("no-change")[0]["ChangeSetId"]
    stub.add_response(
        "describe_change_set",
        as_response(pages_of("no-change")[0]),
        {"ChangeSetName": arn, "IncludePropertyValues": True},
    )
    reader = RecordingSecurityIR(state_documents("no-change"))
    code, out, _ = run(["plan", "--change-set-name", arn], clients_for(client, reader))
    assert code == cli.EXIT_OK
    assert "Result: no change to any membership (exit 0)" in out


def test_plan_in_the_wrong_region_fails_with_the_functions_reason(
    cloudformation: tuple[Any, Stubber],
) -> None:
    client, stub = cloudformation
    stub_change_set(stub, pages_of("modify"))
    code, out, err = run(
        ["plan", "--stack-name", STACK, "--change-set-name", "cs", "--json"],
        clients_for(client, RecordingSecurityIR([])),
    )
    assert code == cli.EXIT_ERROR
    step = json.loads(out)["resources"][0]["steps"][0]
    expected = (
        f"Membership {MID} was not found in account {ACCOUNT} region {REGION}: deploy this stack "
        "in the membership's account and region, and check MembershipId"
    )
    assert step["status"] == "fail"
    assert step["reason"] == expected
    assert err == f"{cli.PROG}: Membership: {expected}\n"
    invoke = through_resource(RecordingSecurityIR([]).client, account_id=ACCOUNT, region=REGION)
    sent = execute_change_set(pages_of("modify"), invoke)
    assert [s.answer["Reason"] for s in sent] == [expected]


def test_a_denied_read_is_blamed_on_the_previewer_not_the_function(
    cloudformation: tuple[Any, Stubber],
) -> None:
    client, stub = cloudformation
    stub_change_set(stub, pages_of("modify"))
    security_ir = boto3.client("security-ir", region_name=REGION)
    with Stubber(security_ir) as denied:
        denied.add_client_error(
            "get_membership", service_error_code="AccessDeniedException", http_status_code=403
        )
        code, _, err = run(
            ["plan", "--stack-name", STACK, "--change-set-name", "cs"],
            cli.Clients(lambda r: client, lambda r: security_ir),
        )
    assert code == cli.EXIT_ERROR
    assert err == (
        f"{cli.PROG}: Membership: Access denied for security-ir:GetMembership on membership "
        f"{MID} to the credentials running this preview: allow it, or preview offline with "
        "--change-set-file and --state-file\n"
    )


def test_plan_without_credentials_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_") and name not in ("AWS_DEFAULT_REGION", "AWS_REGION"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches credentials
    out, err = io.StringIO(), io.StringIO()
    argv = ["plan", "--stack-name", STACK, "--change-set-name", "cs", "--region", REGION]
    assert cli.main(argv, stdout=out, stderr=err) == cli.EXIT_ERROR
    assert err.getvalue() == (
        f"{cli.PROG}: error: no AWS credentials found: set AWS_PROFILE or credentials in the "
        "environment\n"
    )


def test_plan_without_a_region_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    err = io.StringIO()
    argv = ["plan", "--stack-name", STACK, "--change-set-name", "cs"]
    assert cli.main(argv, stdout=io.StringIO(), stderr=err) == cli.EXIT_ERROR
    assert "no AWS region: pass --region or set AWS_REGION" in err.getvalue()


def test_reads_use_the_functions_client_configuration() -> None:
    mine, theirs = cli.FUNCTION_CONFIG, tasks.security_ir().meta.config
    for name in ("connect_timeout", "read_timeout", "retries", "user_agent_extra"):
        assert getattr(mine, name) == getattr(theirs, name)
    assert cli._security_ir(REGION).meta.config.read_timeout == 10
    assert cli._cloudformation(REGION).meta.region_name == REGION


# -- plan: offline ------------------------------------------------------------------------------


def test_modify_json_spells_out_ous_and_masks_by_default() -> None:
    code, out, _ = run(plan_argv("modify", *state_argv("modify"), "--json"))
    printed = json.loads(out)
    assert code == cli.EXIT_CHANGES
    membership = printed["resources"][0]
    assert membership["action"] == "Modify"
    assert membership["replacement"] is False
    step = membership["steps"][0]
    assert step["organizationalUnitsToAdd"] == [D, "ou-ef56-ef123456"]
    assert step["organizationalUnitsToRemove"] == [B]
    assert {c["property"] for c in step["changes"]} == {
        "MembershipName",
        "IncidentResponseTeam",
        "OptInFeatures",
        "OrganizationalUnits",
    }
    request = printed["updateMembershipRequests"][0]
    assert request["membershipName"] == "***"
    assert request["incidentResponseTeam"][2] == {"name": "***", "jobTitle": "***", "email": "***"}
    ous = next(c for c in membership["declaredChanges"] if c["property"] == "OrganizationalUnits")
    assert ous["added"] == [D, "ou-ef56-ef123456"]
    assert ous["removed"] == [B, C]
    assert printed["ignored"] == [
        {
            "logicalId": "ProviderLogGroup",
            "resourceType": "AWS::Logs::LogGroup",
            "action": "Modify",
            "customResource": False,
        }
    ]


def _secrets() -> set[str]:
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "Details":  # Target.Name there is a property's name
                    continue
                if key in ("Name", "JobTitle", "Email", "MembershipName") and isinstance(item, str):
                    found.add(item)
                if key in ("name", "jobTitle", "email", "membershipName") and isinstance(item, str):
                    found.add(item)
                if key in ("BeforeContext", "AfterContext") and isinstance(item, str):
                    walk(json.loads(item))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for path in [*CHANGESETS.glob("*.json"), *STATES.glob("*.json")]:
        walk(json.loads(path.read_text()))
    found.discard("sandbox")  # an OU's name, not a person or a membership
    return found


@pytest.mark.parametrize("name", sorted(p.stem for p in CHANGESETS.glob("*.json")))
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_nothing_sensitive_is_printed_unless_asked(name: str, as_json: bool) -> None:
    secrets = _secrets()
    assert "jane.doe@example.com" in secrets
    assert "demo-membership-prod" in secrets
    argv = plan_argv(name, *state_argv(name), *(["--json"] if as_json else []))
    _, out, err = run(argv)
    assert [s for s in secrets if s in out + err] == []
    _, shown, _ = run([*argv, "--show-sensitive"])
    if name in ("modify", "add"):
        assert "jane.doe@example.com" in shown


def test_text_output_is_a_readable_table() -> None:
    code, out, _ = run(plan_argv("replacement", *state_argv("replacement")))
    assert code == cli.EXIT_CHANGES
    lines = out.splitlines()
    header = lines.index("LOGICAL ID  ACTION                MEMBERSHIP                     RESULT")
    assert lines[header + 1].split() == [
        "Membership",
        "Modify",
        "(replacement)",
        "m-0123456789ab",
        "/",
        MID,
        "2",
        "UpdateMembership",
        "calls",
    ]
    assert "CloudFormation Replacement: Conditional" in out
    assert f"  Delete (cleanup) {MID} [state: state file]" in out
    assert f"      OUs to remove: {A}, {B}" in out
    assert f"      1. membershipId={MID} organizationalUnitsToRemove=[{A}, {B}]" in out
    assert "incidentResponseTeam" not in out
    assert out.rstrip().endswith("Result: changes planned (exit 2)")


def test_text_output_counts_a_masked_team_and_shows_it_when_asked() -> None:
    _, out, _ = run(plan_argv("modify", *state_argv("modify")))
    assert "incidentResponseTeam=[3 responders, masked]" in out
    assert "2 -> 3 responders: 1 added, 0 removed, 0 changed (values hidden)" in out
    _, shown, _ = run(plan_argv("modify", *state_argv("modify"), "--show-sensitive"))
    assert '"email":"ana.poe@example.com"' in shown
    assert "demo-membership -> demo-membership-prod" in shown


def test_without_state_the_assumption_is_stated() -> None:
    code, out, _ = run(plan_argv("add"))
    assert code == cli.EXIT_CHANGES
    assert "no --state-file: each membership is assumed to be as the old declaration" in out
    assert "[state: assumed: an empty membership with no OUs" in out
    _, out, _ = run(plan_argv("modify"))
    assert "[state: assumed: the old declaration (BeforeContext) is the actual state]" in out


def test_invalid_properties_show_the_functions_reason_before_anything_runs() -> None:
    code, out, err = run(plan_argv("invalid", *state_argv("invalid"), "--json"))
    printed = json.loads(out)
    assert code == cli.EXIT_ERROR
    update, cleanup = [s for r in printed["resources"] for s in r["steps"]]
    assert update["status"] == "fail"
    assert update["reason"].startswith(
        "Invalid properties: unknown property OrganisationalUnits (did you mean "
        "OrganizationalUnits?)"
    )
    assert update["stateSource"] == ""
    assert cleanup["status"] == "skip"
    assert "rolls back before the cleanup phase" in cleanup["reason"]
    assert err == f"{cli.PROG}: Membership: {update['reason']}\n"


def test_unresolved_values_are_named_not_guessed() -> None:
    code, out, _ = run(plan_argv("unresolved"))
    assert code == cli.EXIT_CHANGES
    assert "UNRESOLVED: OrganizationalUnits[2] only known when the change set executes" in out
    assert "CloudFormation evaluates OrganizationalUnits again at execution" in out
    assert "unknown until the change set executes" in out
    code, out, _ = run(plan_argv("unresolved", *state_argv("unresolved"), "--json"))
    printed = json.loads(out)
    assert (code, printed["status"]) == (cli.EXIT_CHANGES, "unresolved")
    (step,) = printed["resources"][0]["steps"]
    assert (step["status"], step["requests"], step["stateSource"]) == ("unresolved", [], "")
    assert printed["updateMembershipRequests"] == []


def test_removed_resources_respect_the_deletion_policy() -> None:
    _, out, _ = run(plan_argv("remove", *state_argv("remove"), "--json"))
    printed = json.loads(out)
    legacy, kept = printed["resources"]
    assert legacy["steps"][0]["requests"] == [
        {
            "membershipId": "m-legacy00001",
            "membershipAccountsConfigurationsUpdate": {"organizationalUnitsToRemove": [A, C]},
        }
    ]
    assert kept["status"] == "skip"
    assert kept["steps"][0]["reason"].startswith("DeletionPolicy is Retain")


def test_logical_id_and_service_token_choose_resources() -> None:
    code, out, err = run(plan_argv("remove", *state_argv("remove"), "--logical-id", "Nope"))
    assert code == cli.EXIT_ERROR
    assert out == ""
    assert "has no change for logical id Nope; it changes: LegacyMembership" in err
    code, out, _ = run(plan_argv("remove", *state_argv("remove"), "--logical-id", "KeptMembership"))
    assert code == cli.EXIT_OK
    assert "LegacyMembership" not in out.split("Not memberships")[0]
    code, out, err = run(plan_argv("paginated", "--service-token", "arn:aws:lambda:x"))
    assert code == cli.EXIT_CHANGES
    token = "arn:aws:lambda:us-east-1:123456789012:function:slack-notifier"
    code, out, err = run(plan_argv("paginated", "--service-token", token, "--json"))
    assert code == cli.EXIT_ERROR
    slack = json.loads(out)["resources"][0]
    assert slack["logicalId"] == "SlackNotifier"
    assert "MembershipId is required" in slack["steps"][0]["reason"]


def test_a_change_set_without_a_membership_is_an_error(tmp_path: Path) -> None:
    page = pages_of("modify")[0]
    page["Changes"] = page["Changes"][1:]
    path = tmp_path / "cs.json"
    path.write_text(json.dumps(page))
    code, out, err = run(["plan", "--change-set-file", str(path)])
    assert code == cli.EXIT_ERROR
    assert out == ""
    assert err == (
        f"{cli.PROG}: error: change set sir-modify has no change for "
        "Custom::SecurityIRMembership resource; it changes: ProviderLogGroup "
        "(AWS::Logs::LogGroup Modify)\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read change set file"),
        ("{not json", "is not JSON"),
        ('{"membershipId": "m-abcdef0123"}', "not a DescribeChangeSet document"),
    ],
)
def test_bad_change_set_files_are_one_line_errors(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "cs.json"
    if content is not None:
        path.write_text(content)
    code, _, err = run(["plan", "--change-set-file", str(path)])
    assert code == cli.EXIT_ERROR
    assert message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"nothing": 1}', "expected GetMembership output"),
        ('[{"membershipId": "m-abcdef0123", "incidentResponseTeam": [{}]}]', "lacks a field"),
    ],
)
def test_bad_state_files_are_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    code, _, err = run(plan_argv("modify", "--state-file", str(path)))
    assert code == cli.EXIT_ERROR
    assert message in err


def test_state_files_may_be_given_one_membership_each(tmp_path: Path) -> None:
    paths = []
    for document in state_documents("replacement"):
        paths += ["--state-file", str(tmp_path / f"{document['membershipId']}.json")]
        Path(paths[-1]).write_text(json.dumps(document))
    _, split, _ = run(plan_argv("replacement", *paths, "--json", "--show-sensitive"))
    _, whole, _ = run(
        plan_argv("replacement", *state_argv("replacement"), "--json", "--show-sensitive")
    )
    assert (
        json.loads(split)["updateMembershipRequests"]
        == json.loads(whole)["updateMembershipRequests"]
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plan"], "one of the arguments --change-set-name --change-set-file is required"),
        (["plan", "--change-set-name", "cs", "--state-file", "x.json"], "--state-file is for"),
        (["plan", "--change-set-name", "cs"], "--stack-name is needed unless --change-set-name"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_1_not_2(argv: list[str], message: str) -> None:
    code, _, err = run(argv)
    assert code == cli.EXIT_ERROR
    assert message in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--help"]) == 0
    assert "--change-set-file" in capsys.readouterr().out


def test_the_module_entry_point_calls_main(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        sys, "argv", ["sir_membership", *plan_argv("no-change", *state_argv("no-change"))]
    )
    with pytest.raises(SystemExit) as done:
        runpy.run_module("sir_membership", run_name="__main__")
    assert done.value.code == cli.EXIT_OK


def test_network_failures_are_one_line_errors() -> None:
    def unreachable(region: str | None) -> Any:
        raise EndpointConnectionError(
            endpoint_url="https://cloudformation.us-east-1.amazonaws.com/"
        )

    code, _, err = run(
        ["plan", "--stack-name", STACK, "--change-set-name", "cs"],
        cli.Clients(unreachable, unreachable),
    )
    assert code == cli.EXIT_ERROR
    assert err == (
        f"{cli.PROG}: error: AWS call failed: Could not connect to the endpoint URL: "
        '"https://cloudformation.us-east-1.amazonaws.com/"\n'
    )


def test_python_dash_m_runs_the_cli() -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent / "src"))
    done = subprocess.run(
        [sys.executable, "-m", "sir_membership", *plan_argv("no-change", *state_argv("no-change"))],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert "Result: no change to any membership (exit 0)" in done.stdout


# -- drift ------------------------------------------------------------------------------------

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  ProviderStackName: {Type: String, Default: sir-membership-provider}
  MembershipId: {Type: String}
  MembershipName: {Type: String}
  EnableTriage: {Type: String, Default: "true"}
  OrganizationalUnitIds: {Type: CommaDelimitedList, Default: ""}
  PrimaryEmail: {Type: String}
Conditions:
  HasOrganizationalUnits: !Not [!Equals [!Join ["", !Ref OrganizationalUnitIds], ""]]
Resources:
  Topic:
    Type: AWS::SNS::Topic
  Membership:
    Type: Custom::SecurityIRMembership
    DeletionPolicy: Retain
    Properties:
      ServiceToken: !ImportValue
        Fn::Sub: ${ProviderStackName}-ServiceToken
      ServiceTimeout: 600
      MembershipId: !Ref MembershipId
      MembershipName: !Ref MembershipName
      IncidentResponseTeam:
        - Name: Jane Doe
          JobTitle: Security Lead
          Email: !Ref PrimaryEmail
          CommunicationPreferences: [Case Created, Case Updated]
        - Name: John Roe
          JobTitle: Incident Responder
          Email: !Sub "john.roe@${AWS::URLSuffix}"
      OptInFeatures:
        - FeatureName: Triage
          IsEnabled: !Ref EnableTriage
      CoverEntireOrganization: false
      OrganizationalUnits: !If
        - HasOrganizationalUnits
        - !Ref OrganizationalUnitIds
        - !Ref AWS::NoValue
      OnDelete: Retain
"""


def live(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "membershipId": MID,
        "accountId": ACCOUNT,
        "region": REGION,
        "membershipName": "demo-membership",
        "membershipStatus": "Active",
        "incidentResponseTeam": [
            {
                "name": "Jane Doe",
                "jobTitle": "Security Lead",
                "email": "jane.doe@example.com",
                "communicationPreferences": ["Case Created", "Case Updated"],
            },
            {
                "name": "John Roe",
                "jobTitle": "Incident Responder",
                "email": "john.roe@amazonaws.com",
                "communicationPreferences": [],
            },
        ],
        "optInFeatures": [{"featureName": "Triage", "isEnabled": True}],
        "membershipAccountsConfigurations": {
            "coverEntireOrganization": False,
            "organizationalUnits": [A, B],
        },
    }
    document.update(overrides)
    return document


def stub_stack(
    stub: Stubber,
    *,
    template: str | None = TEMPLATE,
    physical: str = MID,
    parameters: dict[str, str] | None = None,
) -> None:
    values = {
        "ProviderStackName": "sir-membership-provider",
        "MembershipId": MID,
        "MembershipName": "demo-membership",
        "EnableTriage": "true",
        "OrganizationalUnitIds": f"{A}, {B}",
        "PrimaryEmail": "jane.doe@example.com",
    } | (parameters or {})
    stack = {
        "StackId": STACK_ID,
        "StackName": STACK,
        "CreationTime": datetime(2025, 1, 1),
        "StackStatus": "UPDATE_COMPLETE",
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
    }
    stub.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": STACK})
    resources = [
        {
            "LogicalResourceId": "Topic",
            "PhysicalResourceId": f"arn:aws:sns:{REGION}:{ACCOUNT}:topic",
            "ResourceType": "AWS::SNS::Topic",
            "Timestamp": datetime(2025, 1, 1),
            "ResourceStatus": "CREATE_COMPLETE",
        },
        {
            "LogicalResourceId": "Membership",
            "PhysicalResourceId": physical,
            "ResourceType": "Custom::SecurityIRMembership",
            "Timestamp": datetime(2025, 1, 1),
            "ResourceStatus": "UPDATE_COMPLETE",
        },
    ]
    stub.add_response(
        "describe_stack_resources", {"StackResources": resources}, {"StackName": STACK}
    )
    if template is not None:
        stub.add_response(
            "get_template",
            {"TemplateBody": template, "StagesAvailable": ["Original", "Processed"]},
            {"StackName": STACK, "TemplateStage": "Processed"},
        )


def drift(
    cloudformation: tuple[Any, Stubber], documents: list[dict[str, Any]], *extra: str
) -> tuple[int, str, str, RecordingSecurityIR]:
    client, _ = cloudformation
    reader = RecordingSecurityIR(documents)
    code, out, err = run(["drift", "--stack-name", STACK, *extra], clients_for(client, reader))
    assert reader.updates == []
    return code, out, err, reader


def test_drift_in_sync_from_a_yaml_template(cloudformation: tuple[Any, Stubber]) -> None:
    stub_stack(cloudformation[1])
    code, out, _, reader = drift(cloudformation, [live()])
    assert code == cli.EXIT_OK, out
    assert reader.reads == [MID]
    assert "Membership  m-abcdef0123  in sync" in out
    assert out.rstrip().endswith("Result: no drift (exit 0)")


def test_drift_lists_differences_and_ous_outside_the_stack(
    cloudformation: tuple[Any, Stubber],
) -> None:
    stub_stack(cloudformation[1])
    accounts = {"coverEntireOrganization": False, "organizationalUnits": [A, OUTSIDE]}
    document = live(membershipName="renamed-in-console", membershipAccountsConfigurations=accounts)
    code, out, _, _ = drift(cloudformation, [document], "--json")
    assert code == cli.EXIT_CHANGES
    (report,) = json.loads(out)["resources"]
    assert report["status"] == "drifted"
    assert report["differences"] == [
        {"property": "MembershipName", "detail": "changed"},
        {"property": "OrganizationalUnits", "detail": "+1 -0"},
    ]
    assert report["organizationalUnitsNotAssociated"] == [B]
    assert report["organizationalUnitsOutsideStack"] == [OUTSIDE]
    assert report["requests"] == [
        {
            "membershipId": MID,
            "membershipName": "***",
            "membershipAccountsConfigurationsUpdate": {"organizationalUnitsToAdd": [B]},
        }
    ]
    assert "renamed-in-console" not in out
    assert "demo-membership" not in out


def test_drift_ous_outside_the_stack_alone_are_not_drift(
    cloudformation: tuple[Any, Stubber],
) -> None:
    stub_stack(cloudformation[1])
    accounts = {"coverEntireOrganization": False, "organizationalUnits": [A, B, OUTSIDE]}
    code, out, _, _ = drift(cloudformation, [live(membershipAccountsConfigurations=accounts)])
    assert code == cli.EXIT_OK
    assert (
        f"Associated outside the stack (informational; the resource never removes them): {OUTSIDE}"
        in out
    )


def test_drift_names_what_it_cannot_resolve(cloudformation: tuple[Any, Stubber]) -> None:
    template = TEMPLATE.replace(
        "MembershipName: !Ref MembershipName", "MembershipName: !GetAtt Topic.TopicName"
    )
    template = template.replace(
        "PrimaryEmail: {Type: String}", "PrimaryEmail: {Type: String, NoEcho: true}"
    )
    stub_stack(cloudformation[1], template=template, parameters={"PrimaryEmail": "****"})
    code, out, err, reader = drift(cloudformation, [live()])
    assert code == cli.EXIT_ERROR
    assert reader.reads == []
    assert "MembershipName: Fn::GetAtt is only known to CloudFormation" in err
    assert "IncidentResponseTeam[0].Email: parameter PrimaryEmail is NoEcho" in err
    assert "pass --properties-file" in err
    assert "cannot tell" in out


def test_drift_with_a_properties_file_skips_the_template(
    cloudformation: tuple[Any, Stubber], tmp_path: Path
) -> None:
    stub_stack(cloudformation[1], template=None)
    properties = {
        "MembershipId": MID,
        "OrganizationalUnits": [A, B, C],
        "OptInFeatures": [{"FeatureName": "Triage", "IsEnabled": "false"}],
    }
    path = tmp_path / "props.json"
    path.write_text(json.dumps({"Membership": properties}))
    code, out, _, _ = drift(cloudformation, [live()], "--properties-file", str(path), "--json")
    assert code == cli.EXIT_CHANGES
    (report,) = json.loads(out)["resources"]
    assert [d["property"] for d in report["differences"]] == [
        "OptInFeatures",
        "OrganizationalUnits",
    ]
    assert report["organizationalUnitsNotAssociated"] == [C]


def test_drift_properties_file_may_hold_one_resources_properties(
    cloudformation: tuple[Any, Stubber], tmp_path: Path
) -> None:
    stub_stack(cloudformation[1], template=None)
    path = tmp_path / "props.json"
    path.write_text(json.dumps({"Properties": {"MembershipId": MID}}))
    code, out, _, _ = drift(cloudformation, [live()], "--properties-file", str(path))
    assert code == cli.EXIT_OK
    assert "Associated outside the stack" in out


def test_drift_reports_a_missing_membership_and_a_failed_resource(
    cloudformation: tuple[Any, Stubber],
) -> None:
    stub_stack(cloudformation[1])
    code, _, err, _ = drift(cloudformation, [])
    assert code == cli.EXIT_ERROR
    assert f"Membership {MID} was not found in account {ACCOUNT} region {REGION}" in err


def test_drift_of_a_resource_that_never_became_a_membership(
    cloudformation: tuple[Any, Stubber],
) -> None:
    stub_stack(cloudformation[1], template=None, physical="Membership-failed-6a7b8c9d")
    code, _, err, _ = drift(cloudformation, [live()])
    assert code == cli.EXIT_ERROR
    assert "never became a membership (physical id Membership-failed-6a7b8c9d" in err


def test_drift_of_a_stack_without_memberships(cloudformation: tuple[Any, Stubber]) -> None:
    client, stub = cloudformation
    stub.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": STACK,
                    "CreationTime": datetime(2025, 1, 1),
                    "StackStatus": "CREATE_COMPLETE",
                }
            ]
        },
        {"StackName": STACK},
    )
    stub.add_response("describe_stack_resources", {"StackResources": []}, {"StackName": STACK})
    code, _, err = run(["drift", "--stack-name", STACK, "--logical-id", "X"], clients_for(client))
    assert code == cli.EXIT_ERROR
    assert err == f"{cli.PROG}: error: stack {STACK} has no resource X\n"


def test_drift_of_a_json_template_with_drift_shown_as_text(
    cloudformation: tuple[Any, Stubber],
) -> None:
    template = {
        "Parameters": {"MembershipId": {"Type": "String"}},
        "Resources": {
            "Membership": {
                "Type": "Custom::SecurityIRMembership",
                "Properties": {
                    "MembershipId": {"Ref": "MembershipId"},
                    "OrganizationalUnits": [A, B, C],
                },
            }
        },
    }
    stub_stack(cloudformation[1], template=json.dumps(template))
    code, out, _, _ = drift(cloudformation, [live()])
    assert code == cli.EXIT_CHANGES
    assert f"    declared, not associated: {C}" in out
    assert (
        "  Calls that restore the declaration (the function sends them on this resource's next Update):"
        in out
    )
    assert f"    1. membershipId={MID} organizationalUnitsToAdd=[{C}]" in out
    assert out.rstrip().endswith("Result: drift found (exit 2)")


def two_memberships(stub: Stubber, template: str | None) -> None:
    stack = {
        "StackId": STACK_ID,
        "StackName": STACK,
        "CreationTime": datetime(2025, 1, 1),
        "StackStatus": "UPDATE_COMPLETE",
        "Parameters": [{"ParameterKey": "MembershipId", "ParameterValue": MID}],
    }
    stub.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": STACK})
    resources = [
        {
            "LogicalResourceId": logical,
            "PhysicalResourceId": physical,
            "ResourceType": "Custom::SecurityIRMembership",
            "Timestamp": datetime(2025, 1, 1),
            "ResourceStatus": "CREATE_COMPLETE",
        }
        for logical, physical in (("First", MID), ("Second", "m-0123456789ab"))
    ]
    stub.add_response(
        "describe_stack_resources", {"StackResources": resources}, {"StackName": STACK}
    )
    if template is not None:
        stub.add_response(
            "get_template",
            {"TemplateBody": template},
            {"StackName": STACK, "TemplateStage": "Processed"},
        )


def test_drift_reads_the_template_once_for_several_memberships(
    cloudformation: tuple[Any, Stubber],
) -> None:
    template = {
        "Parameters": {"MembershipId": {"Type": "String"}},
        "Resources": {
            "First": {
                "Type": "Custom::SecurityIRMembership",
                "Properties": {"MembershipId": {"Ref": "MembershipId"}},
            },
            "Second": {
                "Type": "Custom::SecurityIRMembership",
                "Properties": {"MembershipId": "m-0123456789ab"},
            },
        },
    }
    two_memberships(cloudformation[1], json.dumps(template))
    documents = [live(), live(membershipId="m-0123456789ab")]
    code, out, _, reader = drift(cloudformation, documents, "--json")
    assert code == cli.EXIT_OK
    assert [r["status"] for r in json.loads(out)["resources"]] == ["in-sync", "in-sync"]
    assert reader.reads == [MID, "m-0123456789ab"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"MembershipId": "m-abcdef0123"}', "holds one resource's properties but 2 memberships"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_drift_refuses_ambiguous_properties_files(
    cloudformation: tuple[Any, Stubber], tmp_path: Path, content: str, message: str
) -> None:
    two_memberships(cloudformation[1], None)
    path = tmp_path / "props.json"
    path.write_text(content)
    code, _, err, _ = drift(cloudformation, [], "--properties-file", str(path))
    assert code == cli.EXIT_ERROR
    assert message in err


def test_drift_of_a_stack_that_is_not_there(cloudformation: tuple[Any, Stubber]) -> None:
    client, stub = cloudformation
    stub.add_response("describe_stacks", {"Stacks": []}, {"StackName": STACK})
    code, _, err = run(["drift", "--stack-name", STACK], clients_for(client))
    assert code == cli.EXIT_ERROR
    assert err == f"{cli.PROG}: error: stack {STACK} was not found\n"


def test_drift_of_a_stack_in_another_region_names_the_region(
    cloudformation: tuple[Any, Stubber],
) -> None:
    client, stub = cloudformation
    stub.add_client_error(
        "describe_stacks",
        service_error_code="ValidationError",
        service_message=f"Stack with id {STACK} does not exist",
    )
    code, _, err = run(["drift", "--stack-name", STACK], clients_for(client))
    assert code == cli.EXIT_ERROR
    assert f"error: stack {STACK} does not exist in {REGION}: check --stack-name and" in err


def test_drift_of_a_yaml_template_without_pyyaml_says_what_to_do(
    cloudformation: tuple[Any, Stubber], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyYAML is the CLI's only extra (the function never parses templates)."""
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml raises ImportError
    stub_stack(cloudformation[1])
    code, out, err, reader = drift(cloudformation, [live()])
    assert (code, out) == (cli.EXIT_ERROR, "")
    assert err == (
        f"{cli.PROG}: error: the stack's template is YAML and PyYAML is not installed: "
        "pip install pyyaml (the CLI needs it for YAML templates), or pass --properties-file\n"
    )
    assert reader.reads == []


@pytest.mark.e2e
def test_drift_finds_a_hand_made_change_on_the_emulator_and_lists_the_calls_that_undo_it(
    cloudformation: tuple[Any, Stubber],
) -> None:
    """Someone renames the membership and swaps an OU by hand; drift says so, read-only."""
    emulator_module = pytest.importorskip("sirlocal.emulator")
    client, stub = cloudformation
    with emulator_module.SecurityIREmulator() as emulator:
        emulator.seed(live())
        security_ir = boto3.client(
            "security-ir",
            region_name=REGION,
            endpoint_url=emulator.endpoint_url,
            config=cli.FUNCTION_CONFIG,
        )
        clients = cli.Clients(lambda r: client, lambda r: security_ir)
        stub_stack(stub)
        assert run(["drift", "--stack-name", STACK], clients)[0] == cli.EXIT_OK
        security_ir.update_membership(
            membershipId=MID,
            membershipName="renamed-by-hand",
            membershipAccountsConfigurationsUpdate={
                "organizationalUnitsToAdd": [OUTSIDE],
                "organizationalUnitsToRemove": [B],
            },
        )
        emulator.reset_calls()
        stub_stack(stub)
        code, out, _ = run(["drift", "--stack-name", STACK, "--json", "--show-sensitive"], clients)
        assert [c.operation for c in emulator.calls()] == ["GetMembership"]
        (report,) = json.loads(out)["resources"]
        assert code == cli.EXIT_CHANGES
        assert report["differences"] == [
            {"property": "MembershipName", "detail": "changed"},
            {"property": "OrganizationalUnits", "detail": "+1 -0"},
        ]
        assert report["organizationalUnitsNotAssociated"] == [B]
        assert report["organizationalUnitsOutsideStack"] == [OUTSIDE]
        for request in report["requests"]:  # what the function's next Update would send
            security_ir.update_membership(**request)
        stub_stack(stub)
        code, out, _ = run(["drift", "--stack-name", STACK], clients)
    assert code == cli.EXIT_OK, out
    assert f"the resource never removes them): {OUTSIDE}" in out


def test_drift_passes_other_cloudformation_errors_on_in_one_line(
    cloudformation: tuple[Any, Stubber],
) -> None:
    client, stub = cloudformation
    stub.add_client_error(
        "describe_stacks", service_error_code="AccessDenied", service_message="not allowed"
    )
    code, _, err = run(["drift", "--stack-name", STACK], clients_for(client))
    assert code == cli.EXIT_ERROR
    assert err == f"{cli.PROG}: error: DescribeStacks failed: AccessDenied: not allowed\n"
