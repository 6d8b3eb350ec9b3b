"""Tags in ``plan`` and ``drift``: the same tag calls the function makes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from memory_store import MemoryStore
from test_cli import MID, REGION, STACK, live, stub_stack

from sir_membership import cli
from sir_membership.membership import state_from_api
from sir_membership.preview import (
    Observed,
    assess_drift,
    load_change_set,
    preview,
    select,
)
from sir_membership.preview.tag_steps import TAGS_ASSUMED, ObservedTags
from sir_membership.resource import Shell, handle
from sir_membership.service import MembershipService

FIXTURES = Path(__file__).parent / "fixtures"
ARN = f"arn:aws:security-ir:{REGION}:123456789012:membership/{MID}"


def tag_list(**pairs: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def tagged_change_set(before: dict[str, str] | None, after: dict[str, str] | None) -> Any:
    """The recorded Modify change set, with Tags in its old and new declarations."""
    document = json.loads((FIXTURES / "changesets" / "modify.json").read_text())
    for change in document["Changes"]:
        resource = change["ResourceChange"]
        if resource["ResourceType"] != "Custom::SecurityIRMembership":
            continue
        for key, tags in (("BeforeContext", before), ("AfterContext", after)):
            context = json.loads(resource[key])
            if tags is not None:
                context["Properties"]["Tags"] = tag_list(**tags)
            resource[key] = json.dumps(context)
    return document


def run(argv: list[str], clients: cli.Clients | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, clients=clients, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_offline_plan_assumes_the_old_declared_tags(tmp_path: Path) -> None:
    path = tmp_path / "cs.json"
    path.write_text(json.dumps(tagged_change_set({"env": "dev", "old": "x"}, {"env": "prod"})))
    state = str(FIXTURES / "states" / "modify.json")
    code, out, _ = run(["plan", "--change-set-file", str(path), "--state-file", state, "--json"])
    assert code == cli.EXIT_CHANGES
    document = json.loads(out)
    assert document["tagRequests"] == [
        {"operation": "UntagResource", "resourceArn": ARN, "tagKeys": ["old"]},
        {"operation": "TagResource", "resourceArn": ARN, "tags": {"env": "prod"}},
    ]
    (step,) = document["resources"][0]["steps"]
    assert step["tagSource"] == TAGS_ASSUMED
    assert step["tagChanges"] == [
        {"key": "env", "before": "dev", "after": "prod"},
        {"key": "old", "before": "x", "after": None},
    ]
    _, text, _ = run(["plan", "--change-set-file", str(path), "--state-file", state])
    assert f"1. UntagResource resourceArn={ARN} tagKeys=[old]" in text
    assert "1 UpdateMembership call, 2 tag calls" in text
    _, markdown, _ = run(
        ["plan", "--change-set-file", str(path), "--state-file", state, "--format", "markdown"]
    )
    assert f'2. `TagResource resourceArn={ARN} tags={{"env":"prod"}}`' in markdown
    assert "| env | dev -> prod |" in markdown


def test_only_tags_changing_is_a_change(tmp_path: Path) -> None:
    document = tagged_change_set({"env": "dev"}, {"env": "prod"})
    change_set = load_change_set(document)
    selection = select(change_set)
    # The membership is already as newly declared: only the tag differs.
    after = json.loads(document["Changes"][0]["ResourceChange"]["AfterContext"])["Properties"]
    from sir_membership.preview import state_from_declaration  # noqa: PLC0415

    observed = Observed(state_from_declaration(after), "test")
    result = preview(change_set, selection, lambda mid: observed)
    (resource,) = result.resources
    assert resource.status == "change"
    assert result.requests == ()
    assert [c.operation for c in result.tag_calls] == ["TagResource"]


@pytest.fixture
def emulator() -> Iterator[Any]:
    module = pytest.importorskip("sirlocal.emulator")
    states = json.loads((FIXTURES / "states" / "modify.json").read_text())
    with module.SecurityIREmulator() as running:
        running.seed({**states, "tags": {"env": "dev", "owner": "outside"}})
        yield running


def security_ir(emulator: Any) -> Any:
    return boto3.client("security-ir", region_name=REGION, endpoint_url=emulator.endpoint_url)


def test_the_preview_shows_the_tag_calls_the_function_makes(emulator: Any) -> None:
    change_set = load_change_set(tagged_change_set({"env": "dev", "old": "x"}, {"env": "prod"}))
    selection = select(change_set)
    service = MembershipService(security_ir(emulator), lambda: 60.0, account_id="1", region=REGION)

    def tags_lookup(mid: str, arn: str) -> ObservedTags:
        return ObservedTags(service.list_tags(mid, arn), "live")

    result = preview(
        change_set, selection, lambda mid: Observed(service.get(mid), "live"), tags_lookup
    )
    planned = [{"operation": c.operation, **c.to_api()} for c in result.tag_calls]
    emulator.reset_calls()
    journal = MemoryStore()
    for step in result.steps:
        assert handle(step.request, service, Shell(journal, lambda: 60.0)).status == "SUCCESS"
    sent = [
        {"operation": c.operation, **c.request}
        for c in emulator.calls()
        if c.operation in ("TagResource", "UntagResource")
    ]
    assert sent == planned
    # "old" was never on the membership: nothing to remove; "owner" is not the stack's.
    assert planned == [{"operation": "TagResource", "resourceArn": ARN, "tags": {"env": "prod"}}]
    assert emulator.tags(MID) == {"env": "prod", "owner": "outside"}


def test_drift_in_tags_names_the_key_and_the_restoring_call() -> None:
    declared = {
        "MembershipId": MID,
        "Tags": tag_list(env="prod", team="sec"),
    }
    actual = state_from_api(live(membershipArn=ARN))
    drifted = assess_drift("M", MID, declared, actual, {"env": "dev", "team": "sec", "x": "1"})
    assert drifted.status == "drifted"
    assert [(c.property, c.detail) for c in drifted.differences] == [("Tags.env", "dev -> prod")]
    assert [c.to_api() for c in drifted.tag_calls] == [
        {"resourceArn": ARN, "tags": {"env": "prod"}}
    ]
    in_sync = assess_drift("M", MID, declared, actual, {"env": "prod", "team": "sec", "x": "1"})
    assert in_sync.status == "in-sync"
    untagged = assess_drift("M", MID, {"MembershipId": MID}, actual, None)
    assert untagged.status == "in-sync"


@pytest.fixture
def cloudformation() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("cloudformation", region_name=REGION)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def test_drift_reads_tags_only_when_declared(
    emulator: Any, cloudformation: tuple[Any, Stubber], tmp_path: Path
) -> None:
    client, stub = cloudformation
    states = json.loads((FIXTURES / "states" / "modify.json").read_text())
    declared = {
        "MembershipId": MID,
        "OrganizationalUnits": states["membershipAccountsConfigurations"]["organizationalUnits"],
        "Tags": tag_list(env="prod"),
    }
    path = tmp_path / "props.json"
    path.write_text(json.dumps(declared))
    stub_stack(stub, template=None)
    clients = cli.Clients(lambda r: client, lambda r: security_ir(emulator))
    code, out, err = run(
        ["drift", "--stack-name", STACK, "--properties-file", str(path), "--format", "markdown"],
        clients,
    )
    assert code == cli.EXIT_CHANGES, err
    assert "| Tags.env | dev -> prod |" in out
    assert f'1. `TagResource resourceArn={ARN} tags={{"env":"prod"}}`' in out
    assert [c.operation for c in emulator.calls()] == ["GetMembership", "ListTagsForResource"]
