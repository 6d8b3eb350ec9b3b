"""The pure preview: change set -> requests -> the function's decisions; template -> properties."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import MEMBERSHIP_ID, ou, props

from sir_membership.errors import MembershipNotFound, PermissionDenied
from sir_membership.membership import MembershipState
from sir_membership.plan import MASK
from sir_membership.preview import (
    OFFLINE_ASSUMED,
    OFFLINE_EMPTY,
    ChangeSet,
    DeclaredChange,
    Observed,
    PreviewError,
    StackContext,
    Target,
    assess_drift,
    change_set_notes,
    check_ready,
    declared_changes,
    deliveries,
    load_change_set,
    mask_property,
    never_a_membership,
    offline_lookup,
    parse_template,
    preview,
    resolve_properties,
    select,
    state_from_declaration,
    unresolved_paths,
    worst,
)
from sir_membership.preview.labels import timing_note
from sir_membership.preview.steps import Step
from sir_membership.request import Request, decide

CHANGESETS = Path(__file__).parent / "fixtures" / "changesets"
EVENTS = Path(__file__).parent.parent / "events"
STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo/5b6f1c20"
OTHER_ID = "m-0123456789ab"


def fixture(name: str) -> ChangeSet:
    return load_change_set(json.loads((CHANGESETS / f"{name}.json").read_text()))


def context(properties: dict[str, Any], **attributes: Any) -> str:
    return json.dumps({"Properties": properties, **attributes})


def change(action: str, logical: str = "Membership", **fields: Any) -> dict[str, Any]:
    out = {
        "Action": action,
        "LogicalResourceId": logical,
        "ResourceType": fields.pop("rtype", "Custom::SecurityIRMembership"),
    }
    return out | fields


def change_set(*changes: dict[str, Any], **fields: Any) -> ChangeSet:
    document = {
        "ChangeSetName": "cs",
        "StackName": "demo",
        "StackId": STACK_ID,
        "Status": "CREATE_COMPLETE",
        "Changes": [{"Type": "Resource", "ResourceChange": c} for c in changes],
    }
    return load_change_set(document | fields)


def modify(before: dict[str, Any], after: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return change(
        "Modify",
        PhysicalResourceId=MEMBERSHIP_ID,
        BeforeContext=context(before),
        AfterContext=context(after),
        **fields,
    )


def found(*states: MembershipState) -> Any:
    by_id = {s.membership_id: s for s in states}

    def lookup(membership_id: str) -> Observed:
        if membership_id not in by_id:
            raise MembershipNotFound(f"Membership {membership_id} was not found")
        return Observed(by_id[membership_id], "test")

    return lookup


# -- loading and readiness --------------------------------------------------------------


def test_pages_are_joined_in_order() -> None:
    cs = fixture("paginated")
    assert [c["LogicalResourceId"] for c in cs.changes] == [
        "ArtifactsBucket",
        "SlackNotifier",
        "Membership",
    ]
    assert (cs.name, cs.stack_name, cs.region, cs.account_id) == (
        "sir-paginated",
        "sir-demo",
        "us-east-1",
        "123456789012",
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected an object or a list of pages"),
        ("text", "expected an object or a list of pages"),
        ({"membershipId": "m-x"}, "not a DescribeChangeSet document"),
        ([{"Changes": [], "NextToken": "t"}], "has a NextToken: save every page"),
    ],
)
def test_documents_that_are_not_complete_change_sets_are_refused(
    document: Any, message: str
) -> None:
    with pytest.raises(PreviewError, match=message):
        load_change_set(document)


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        ("CREATE_PENDING", "", "is not created yet \\(Status CREATE_PENDING\\)"),
        ("CREATE_IN_PROGRESS", "", "wait for CREATE_COMPLETE"),
        ("FAILED", "No updates are to be performed.", "FAILED: No updates are to be performed."),
        ("FAILED", "", "FAILED: no StatusReason given"),
        ("DELETE_IN_PROGRESS", "", "is being deleted"),
    ],
)
def test_change_sets_that_are_not_ready_are_refused(status: str, reason: str, message: str) -> None:
    with pytest.raises(PreviewError, match=message):
        check_ready(change_set(Status=status, StatusReason=reason))


def test_a_ready_change_set_passes_and_an_executed_one_is_noted() -> None:
    check_ready(change_set())
    assert change_set_notes(change_set(ExecutionStatus="AVAILABLE")) == ()
    (note,) = change_set_notes(change_set(ExecutionStatus="EXECUTE_COMPLETE"))
    assert "EXECUTE_COMPLETE" in note
    assert ChangeSet("cs", "demo", "not-an-arn", "CREATE_COMPLETE").region == ""


# -- selection ----------------------------------------------------------------------------


def test_select_takes_memberships_and_lists_the_rest() -> None:
    selection = select(fixture("paginated"))
    assert [t.logical_id for t in selection.targets] == ["Membership"]
    assert [(i.logical_id, i.custom) for i in selection.ignored] == [
        ("ArtifactsBucket", False),
        ("SlackNotifier", True),
    ]


def test_select_by_service_token_and_by_logical_id() -> None:
    token = "arn:aws:lambda:us-east-1:123456789012:function:slack-notifier"
    by_token = select(fixture("paginated"), service_token=token)
    assert [t.logical_id for t in by_token.targets] == ["SlackNotifier", "Membership"]
    by_id = select(fixture("paginated"), logical_id="SlackNotifier")
    assert [t.logical_id for t in by_id.targets] == ["SlackNotifier"]


def test_select_takes_custom_resources_served_by_a_memberships_function() -> None:
    token = props()["ServiceToken"]
    generic = change(
        "Add",
        "Generic",
        rtype="AWS::CloudFormation::CustomResource",
        AfterContext=context(props(ServiceToken=token)),
    )
    other = change(
        "Add",
        "Other",
        rtype="Custom::Other",
        AfterContext=context({"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:x"}),
    )
    typed = change("Add", AfterContext=context(props()))
    selection = select(change_set(generic, other, typed))
    assert [t.logical_id for t in selection.targets] == ["Generic", "Membership"]
    assert [(i.logical_id, i.custom) for i in selection.ignored] == [("Other", True)]
    with pytest.raises(PreviewError, match="has no change for Custom::SecurityIRMembership"):
        select(change_set(generic, other))


def test_select_refuses_what_the_function_never_sees() -> None:
    with pytest.raises(PreviewError, match="ArtifactsBucket is a AWS::S3::Bucket, not a custom"):
        select(fixture("paginated"), logical_id="ArtifactsBucket")
    with pytest.raises(PreviewError, match="no change for logical id Nope; it changes: "):
        select(fixture("paginated"), logical_id="Nope")
    with pytest.raises(PreviewError, match="resource; it changes nothing"):
        select(change_set())


def test_select_needs_property_values() -> None:
    bare = change("Modify", PhysicalResourceId=MEMBERSHIP_ID)
    with pytest.raises(
        PreviewError, match=r"BeforeContext, AfterContext missing.*--include-property"
    ):
        select(change_set(bare))
    with pytest.raises(PreviewError, match="Membership: AfterContext is not valid JSON"):
        select(change_set(change("Add", AfterContext="{oops")))
    with pytest.raises(PreviewError, match="AfterContext is not a JSON object"):
        select(change_set(change("Add", AfterContext="[1]")))


def test_contexts_may_be_bare_properties_or_carry_none() -> None:
    bare = change("Add", AfterContext=json.dumps(props()))
    (target,) = select(change_set(bare)).targets
    assert target.after == props()
    empty = change("Add", AfterContext=json.dumps({"Metadata": {}}))
    (target,) = select(change_set(empty)).targets
    assert target.after == {}


def test_nested_stacks_are_noted() -> None:
    nested = change(
        "Modify",
        "Child",
        rtype="AWS::CloudFormation::Stack",
        ChangeSetId="arn:aws:cloudformation:us-east-1:123456789012:changeSet/child/1",
    )
    cs = change_set(nested, change("Add", AfterContext=context(props())))
    result = preview(cs, select(cs), found(MembershipState(MEMBERSHIP_ID)))
    assert "nested stack Child has its own change set: preview it separately" in result.notes


# -- deliveries: what CloudFormation sends -----------------------------------------------------


def test_add_is_a_create_with_the_new_properties() -> None:
    (target,) = select(fixture("add")).targets
    (delivery,) = deliveries(target, STACK_ID)
    assert delivery.request == Request(
        "Create", STACK_ID, "preview-Membership", "Membership", "", target.after
    )
    assert not delivery.cleanup


def test_modify_is_an_update_with_old_and_new_properties() -> None:
    (target,) = select(fixture("modify")).targets
    (delivery,) = deliveries(target, STACK_ID)
    request = delivery.request
    assert (request.request_type, request.physical_id) == ("Update", MEMBERSHIP_ID)
    assert request.properties == target.after
    assert request.old_properties == target.before


@pytest.mark.skipif(not (EVENTS / "update.json").exists(), reason="sample events not present")
def test_the_update_request_matches_the_event_cloudformation_sends() -> None:
    event = json.loads((EVENTS / "update.json").read_text())
    rc = modify(event["OldResourceProperties"], event["ResourceProperties"])
    rc["PhysicalResourceId"] = event["PhysicalResourceId"]
    (target,) = select(change_set(rc, StackId=event["StackId"])).targets
    (delivery,) = deliveries(target, event["StackId"])
    expected = Request.from_event(event)
    assert delivery.request == Request(
        expected.request_type,
        expected.stack_id,
        "preview-Membership",
        expected.logical_id,
        expected.physical_id,
        expected.properties,
        expected.old_properties,
    )


def test_replacement_adds_a_cleanup_delete_of_the_old_membership() -> None:
    (target,) = select(fixture("replacement")).targets
    update, cleanup = deliveries(target, STACK_ID)
    assert update.request.properties["MembershipId"] == OTHER_ID
    assert cleanup.cleanup
    assert not cleanup.withheld
    assert cleanup.request.request_type == "Delete"
    assert cleanup.request.physical_id == MEMBERSHIP_ID
    assert cleanup.request.properties == target.before


@pytest.mark.parametrize(
    ("fields", "retained"),
    [
        ({"PolicyAction": "ReplaceAndRetain"}, True),
        ({"PolicyAction": "ReplaceAndDelete"}, False),
        (
            {"AfterContext": context(props(MembershipId=OTHER_ID), UpdateReplacePolicy="Retain")},
            True,
        ),
        ({}, False),
    ],
)
def test_update_replace_policy_retain_withholds_the_cleanup(
    fields: dict[str, Any], retained: bool
) -> None:
    rc = modify(props(), props(MembershipId=OTHER_ID)) | fields
    (target,) = select(change_set(rc)).targets
    _, cleanup = deliveries(target, STACK_ID)
    assert cleanup.withheld.startswith("UpdateReplacePolicy is Retain") is retained


@pytest.mark.parametrize(
    ("fields", "retained"),
    [
        ({"PolicyAction": "Retain"}, True),
        ({"PolicyAction": "Delete"}, False),
        ({"BeforeContext": context(props(), DeletionPolicy="Retain")}, True),
        ({}, False),
    ],
)
def test_deletion_policy_retain_withholds_the_delete(
    fields: dict[str, Any], retained: bool
) -> None:
    rc = change("Remove", PhysicalResourceId=MEMBERSHIP_ID, BeforeContext=context(props())) | fields
    (target,) = select(change_set(rc)).targets
    (delivery,) = deliveries(target, STACK_ID)
    assert delivery.cleanup
    assert delivery.withheld.startswith("DeletionPolicy is Retain") is retained


def test_unknown_membership_ids_and_other_actions_send_nothing_more() -> None:
    rc = modify(props(), props(MembershipId="{{changeSetDependencyDetails}}"))
    (target,) = select(change_set(rc)).targets
    assert len(deliveries(target, STACK_ID)) == 1
    dynamic = Target("Membership", "Custom::SecurityIRMembership", "Dynamic")
    assert deliveries(dynamic, STACK_ID) == ()


def test_dynamic_and_other_actions_are_reported_not_run() -> None:
    cs = change_set(change("Dynamic"), change("SyncWithActual", "Other"))
    result = preview(cs, select(cs), found())
    dynamic, sync = result.resources
    assert dynamic.status == "unresolved"
    assert dynamic.notes == (
        "CloudFormation determines the action only when the change set executes",
    )
    assert sync.status == "skip"
    assert sync.notes == ("Action SyncWithActual: CloudFormation does not invoke the function",)
    assert result.status == "unresolved"


# -- values known only at execution ------------------------------------------------------------


def test_unresolved_paths_find_placeholders_and_dynamic_references() -> None:
    properties = props(
        MembershipName="{{resolve:ssm:/sir/name}}",
        OrganizationalUnits=[ou(1), "{{changeSetDependencyDetails}}"],
    )
    assert unresolved_paths(properties) == ("MembershipName", "OrganizationalUnits[1]")
    assert unresolved_paths(props()) == ()
    assert unresolved_paths(None) == ()


# -- declared changes --------------------------------------------------------------------------


def test_declared_changes_compare_like_the_function() -> None:
    before = props(CoverEntireOrganization=False, OrganizationalUnits=[ou(1), ou(2)])
    after = props(
        CoverEntireOrganization="false",
        OrganizationalUnits=[ou(2), ou(3)],
        OnDelete="RemoveOrganizationalUnits",
        MembershipName="Another Secret Name",
        ServiceTimeout=None,
    )
    changes = {c.key: c for c in declared_changes(before, after)}
    assert set(changes) == {"MembershipName", "OrganizationalUnits", "OnDelete", "ServiceTimeout"}
    assert changes["OrganizationalUnits"].summary() == f"+{ou(3)} -{ou(1)}"
    assert changes["OnDelete"].summary() == '(absent) -> "RemoveOrganizationalUnits"'
    assert changes["MembershipName"].summary() == "modified (value hidden)"
    assert changes["ServiceTimeout"].kind == "removed"
    assert declared_changes(props(OrganizationalUnits=[ou(2), ou(1)]), props()) == ()


def test_team_changes_are_counted_without_values() -> None:
    before = props()["IncidentResponseTeam"]
    after = [
        dict(before[0], JobTitle="New Secret Title"),
        {"Name": "Dan", "JobTitle": "X", "Email": "dan@example.com"},
    ]
    change_ = DeclaredChange("IncidentResponseTeam", "modified", before, after)
    assert change_.summary() == "2 -> 2 responders: 1 added, 1 removed, 1 changed (values hidden)"
    masked = change_.to_json(show_sensitive=False)
    assert "Secret" not in json.dumps(masked)
    assert "dan@example.com" not in json.dumps(masked)
    assert masked["after"][1] == {"Name": MASK, "JobTitle": MASK, "Email": MASK}
    assert change_.to_json(show_sensitive=True)["after"] == after


def test_masking_hides_unknown_keys_and_keeps_identifiers() -> None:
    assert mask_property("MembershipId", MEMBERSHIP_ID) == MEMBERSHIP_ID
    assert mask_property("OrganizationalUnits", [ou(1)]) == [ou(1)]
    assert mask_property("MembershipName", "Secret") == MASK
    assert mask_property("IncidentResponseTeams", [{"Email": "x@example.com"}]) == MASK
    assert mask_property("IncidentResponseTeam", ["oops"]) == [MASK]
    assert mask_property("OnDelete", "Retain") == "Retain"
    assert mask_property("MembershipName", None) is None
    typo = DeclaredChange("IncidentResponseTeams", "added", None, [{"Email": "x@example.com"}])
    assert typo.summary() == "added (value hidden)"
    assert typo.to_json(False)["after"] == MASK


# -- preview: the function's decisions ----------------------------------------------------------


def test_must_exist_lookups_fail_with_the_services_reason() -> None:
    cs = change_set(modify(props(), props(OrganizationalUnits=[ou(3)])))
    result = preview(cs, select(cs), found())
    (step,) = result.steps
    assert (step.status, step.reason) == ("fail", f"Membership {MEMBERSHIP_ID} was not found")
    assert result.status == "fail"


def test_a_delete_of_a_membership_that_is_gone_does_nothing() -> None:
    rc = change(
        "Remove",
        PhysicalResourceId=MEMBERSHIP_ID,
        BeforeContext=context(props(OnDelete="RemoveOrganizationalUnits")),
    )
    cs = change_set(rc)
    (step,) = preview(cs, select(cs), found()).steps
    assert step.status == "skip"
    assert step.reason == f"membership {MEMBERSHIP_ID} no longer exists: nothing to do"


def test_delete_with_retain_says_why_nothing_is_done() -> None:
    rc = change("Remove", PhysicalResourceId=MEMBERSHIP_ID, BeforeContext=context(props()))
    cs = change_set(rc)
    (step,) = preview(cs, select(cs), found(MembershipState(MEMBERSHIP_ID))).steps
    assert step.status == "skip"
    assert step.reason == "OnDelete is Retain: the membership is kept as it is"


def test_other_service_errors_and_status_refusals_fail_the_step() -> None:
    cs = change_set(modify(props(), props(OrganizationalUnits=[ou(3)])))

    def denied(membership_id: str) -> Observed:
        raise PermissionDenied("Access denied for security-ir:GetMembership")

    (step,) = preview(cs, select(cs), denied).steps
    assert (step.status, step.reason) == ("fail", "Access denied for security-ir:GetMembership")
    terminated = MembershipState(MEMBERSHIP_ID, status="Terminated")
    (step,) = preview(cs, select(cs), found(terminated)).steps
    assert step.status == "fail"
    assert "is Terminated and cannot be changed" in step.reason
    assert step.source == "test"


def test_state_carries_over_between_steps_on_the_same_membership() -> None:
    first = modify(props(OrganizationalUnits=[]), props(OrganizationalUnits=[ou(1)]))
    second = modify(props(OrganizationalUnits=[]), props(OrganizationalUnits=[ou(1), ou(2)]))
    second["LogicalResourceId"] = "Twin"
    cs = change_set(first, second)
    result = preview(cs, select(cs), found(MembershipState(MEMBERSHIP_ID)))
    one, two = result.steps
    assert one.plan is not None
    assert one.plan.ous_to_add == (ou(1),)
    assert two.plan is not None
    assert two.plan.ous_to_add == (ou(2),)
    assert two.source == "test, after the calls planned above"
    assert len(result.requests) == 2


def test_worst_orders_statuses_by_severity() -> None:
    assert worst(["skip", "change", "no-change"]) == "change"
    assert worst(["change", "unresolved"]) == "unresolved"
    assert worst(["unresolved", "fail"]) == "fail"
    assert worst([]) == "no-change"


# -- offline states ----------------------------------------------------------------------------


def test_offline_lookup_prefers_saved_then_declared_then_empty() -> None:
    selection = select(fixture("replacement"))
    saved = MembershipState(OTHER_ID, organizational_units=frozenset({ou(9)}))
    lookup = offline_lookup(selection, {OTHER_ID: saved})
    assert lookup(OTHER_ID) == Observed(saved, "state file")
    declared = lookup(MEMBERSHIP_ID)
    assert declared.source == OFFLINE_ASSUMED
    assert declared.state.organizational_units == {"ou-ab12-abcdef12", "ou-ab12-bcdef123"}
    assert offline_lookup(selection, {})(OTHER_ID) == Observed(
        MembershipState(OTHER_ID), OFFLINE_EMPTY
    )


def test_offline_lookup_ignores_invalid_old_declarations() -> None:
    rc = modify(props(OrganizationalUnits=["ou-bad"]), props())
    lookup = offline_lookup(select(change_set(rc)), {})
    assert lookup(MEMBERSHIP_ID).source == OFFLINE_EMPTY


def test_state_from_declaration_is_the_declared_membership() -> None:
    state = state_from_declaration(props(CoverEntireOrganization="false"))
    assert state.membership_id == MEMBERSHIP_ID
    assert state.organizational_units == {ou(1), ou(2)}
    assert len(state.team) == 2
    assert state.feature_map() == {"Triage": True}
    assert state.cover_entire_organization is False


# -- drift ---------------------------------------------------------------------------------------


def test_drift_of_an_invalid_or_cancelled_or_misidentified_declaration() -> None:
    actual = MembershipState(MEMBERSHIP_ID, status="Cancelled", organizational_units=frozenset())
    invalid = assess_drift("M", MEMBERSHIP_ID, {"MembershipId": "nope"}, actual)
    assert invalid.status == "fail"
    assert invalid.reason.startswith(
        "Invalid properties: MembershipId is invalid (4 characters, not shown)"
    )
    drifted = assess_drift("M", OTHER_ID, props(OrganizationalUnits=[ou(1)]), actual)
    assert drifted.status == "drifted"
    assert drifted.differences[0].property == "MembershipId"
    assert drifted.ous_missing == (ou(1),)
    assert any("is Cancelled: set UndoMembershipCancellation" in n for n in drifted.notes)
    assert f"membership {MEMBERSHIP_ID} is Cancelled" in drifted.notes


def test_never_a_membership() -> None:
    assert never_a_membership("Membership-failed-1234")
    assert never_a_membership("")
    assert not never_a_membership(MEMBERSHIP_ID)


# -- templates -----------------------------------------------------------------------------------

CONTEXT = StackContext(
    stack_id="arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/demo/1",
    stack_name="demo",
    parameters={"Id": MEMBERSHIP_ID, "Ous": f"{ou(1)}, {ou(2)}", "Empty": "", "Flag": "yes"},
    physical_ids={"Topic": "arn:aws-cn:sns:cn-north-1:123456789012:topic"},
    notification_arns=("arn:aws-cn:sns:cn-north-1:123456789012:events",),
)
PARAMETERS = {
    "Id": {"Type": "String"},
    "Ous": {"Type": "CommaDelimitedList"},
    "Empty": {"Type": "CommaDelimitedList"},
    "Flag": {"Type": "String"},
    "Defaulted": {"Type": "String", "Default": 5},
    "Secret": {"Type": "String", "NoEcho": "true"},
    "Unset": {"Type": "String"},
}


def resolve(properties: dict[str, Any], **template: Any) -> tuple[Any, tuple[str, ...]]:
    document = {
        "Parameters": PARAMETERS,
        "Conditions": {
            "IsYes": {"Fn::Equals": [{"Ref": "Flag"}, "yes"]},
            "HasOus": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "Empty"}]}, ""]}]},
            "Both": {"Fn::And": [{"Condition": "IsYes"}, {"Condition": "HasOus"}]},
            "Either": {"Fn::Or": [{"Condition": "IsYes"}, {"Condition": "HasOus"}]},
        },
        "Mappings": {"Env": {"prod": {"Name": "mapped"}}},
        "Resources": {"M": {"Type": "Custom::SecurityIRMembership", "Properties": properties}},
    } | template
    resolved = resolve_properties(document, "M", CONTEXT)
    return resolved.properties, resolved.unresolved


def test_refs_resolve_parameters_lists_defaults_pseudo_and_resources() -> None:
    value, problems = resolve(
        {
            "ServiceToken": {"Fn::ImportValue": "provider-ServiceToken"},
            "MembershipId": {"Ref": "Id"},
            "OrganizationalUnits": {"Ref": "Ous"},
            "Number": {"Ref": "Defaulted"},
            "Where": [
                {"Ref": "AWS::Region"},
                {"Ref": "AWS::AccountId"},
                {"Ref": "AWS::Partition"},
                {"Ref": "AWS::URLSuffix"},
                {"Ref": "AWS::StackName"},
                {"Ref": "Topic"},
                {"Ref": "AWS::NoValue"},
            ],
            "Arns": {"Ref": "AWS::NotificationARNs"},
            "Gone": {"Ref": "AWS::NoValue"},
        }
    )
    assert problems == ()
    assert value == {
        "MembershipId": MEMBERSHIP_ID,
        "OrganizationalUnits": [ou(1), ou(2)],
        "Number": "5",
        "Where": [
            "cn-north-1",
            "123456789012",
            "aws-cn",
            "amazonaws.com.cn",
            "demo",
            "arn:aws-cn:sns:cn-north-1:123456789012:topic",
        ],
        "Arns": ["arn:aws-cn:sns:cn-north-1:123456789012:events"],
    }


def test_functions_resolve_conditions_joins_subs_and_maps() -> None:
    value, problems = resolve(
        {
            "If": {"Fn::If": ["IsYes", "a", "b"]},
            "IfNot": {"Fn::If": ["HasOus", "a", {"Ref": "AWS::NoValue"}]},
            "Both": {"Fn::If": ["Both", "a", "b"]},
            "Either": {"Fn::If": ["Either", "a", "b"]},
            "Join": {"Fn::Join": ["-", ["x", {"Ref": "Flag"}]]},
            "Split": {"Fn::Split": [",", "a,b"]},
            "Select": {"Fn::Select": ["1", {"Ref": "Ous"}]},
            "Sub": {"Fn::Sub": "${AWS::StackName}-${Flag}-${!Literal}"},
            "SubVars": {"Fn::Sub": ["${A}@example.com", {"A": {"Ref": "Flag"}}]},
            "Map": {"Fn::FindInMap": ["Env", "prod", "Name"]},
            "Bool": True,
        }
    )
    assert problems == ()
    assert value == {
        "If": "a",
        "Both": "b",
        "Either": "a",
        "Join": "x-yes",
        "Split": ["a", "b"],
        "Select": ou(2),
        "Sub": "demo-yes-${Literal}",
        "SubVars": "yes@example.com",
        "Map": "mapped",
        "Bool": "true",
    }


@pytest.mark.parametrize(
    ("node", "problem"),
    [
        ({"Fn::GetAtt": ["Topic", "TopicName"]}, "X: Fn::GetAtt is only known to CloudFormation"),
        ({"Fn::ImportValue": "x"}, "X: Fn::ImportValue is only known to CloudFormation"),
        ({"Ref": "Secret"}, "X: parameter Secret is NoEcho"),
        ({"Ref": "Unset"}, "X: parameter Unset has no value"),
        ({"Ref": "Nope"}, "X: Ref Nope names no parameter or resource"),
        ({"Fn::Sub": "${Topic.Arn}"}, "X: Fn::Sub ${Topic.Arn} is a resource attribute"),
        ({"Fn::If": ["Missing", 1, 2]}, "X: condition Missing is not defined"),
        ({"Fn::If": [{"Fn::Contains": []}, 1, 2]}, "X: a condition uses a function"),
        ({"Fn::If": ["IsYes"]}, "X: Fn::If needs"),
        ({"Fn::Join": ["-", "notalist"]}, "X: Fn::Join needs a list"),
        ({"Fn::Join": "x"}, "X: Fn::Join needs two arguments"),
        ({"Fn::Select": [5, ["a"]]}, "X: Fn::Select index 5 is out of range"),
        ({"Fn::FindInMap": ["Env", "dev", "Name"]}, "X: Fn::FindInMap Env.dev.Name is not in"),
    ],
)
def test_what_cannot_be_resolved_is_named(node: Any, problem: str) -> None:
    value, problems = resolve({"MembershipId": MEMBERSHIP_ID, "X": node})
    assert len(problems) == 1
    assert problems[0].startswith(problem)
    assert value["MembershipId"] == MEMBERSHIP_ID


def test_resolving_a_resource_that_is_not_in_the_template() -> None:
    with pytest.raises(PreviewError, match="Nope is not in the stack's template"):
        resolve_properties({"Resources": {}}, "Nope", CONTEXT)


def test_templates_parse_from_json_yaml_or_a_decoded_body() -> None:
    assert parse_template({"Resources": {}}) == {"Resources": {}}
    assert parse_template('{"Resources": {}}') == {"Resources": {}}
    text = """
Resources:
  M:
    Type: Custom::SecurityIRMembership
    Condition: IsYes
    Properties:
      A: !Ref Id
      B: !GetAtt Topic.Arn
      C: !Sub "${AWS::Region}-x"
      D: !If [IsYes, !Ref Id, !Ref AWS::NoValue]
      E: !Join ["", [a, b]]
      F: !Condition IsYes
      G: !GetAtt [Topic, Arn]
"""
    properties = parse_template(text)["Resources"]["M"]["Properties"]
    assert properties == {
        "A": {"Ref": "Id"},
        "B": {"Fn::GetAtt": ["Topic", "Arn"]},
        "C": {"Fn::Sub": "${AWS::Region}-x"},
        "D": {"Fn::If": ["IsYes", {"Ref": "Id"}, {"Ref": "AWS::NoValue"}]},
        "E": {"Fn::Join": ["", ["a", "b"]]},
        "F": {"Condition": "IsYes"},
        "G": {"Fn::GetAtt": ["Topic", "Arn"]},
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "the stack's template is empty"),
        ("- a list", "is not an object"),
        ("a: [unclosed", "neither JSON nor YAML"),
        (
            "a: b\nc: 'secret@example.com",
            r"neither JSON nor YAML \(found unexpected end of stream at line 2\)$",
        ),
    ],
)
def test_bad_templates_are_refused(body: Any, message: str) -> None:
    with pytest.raises(PreviewError, match=message):
        parse_template(body)


def test_yaml_templates_need_pyyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def without_yaml(name: str, *args: Any) -> Any:
        if name == "yaml":
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_yaml)
    with pytest.raises(PreviewError, match=r"PyYAML is not installed.*--properties-file"):
        parse_template("Resources: {}")


def test_pyyaml_stays_out_of_the_function() -> None:
    """Only drift on a YAML template imports yaml; the Lambda package does not ship it."""
    root = Path(__file__).parent.parent
    assert "yaml" not in (root / "src" / "requirements.txt").read_text().lower()
    code = "import sys, sir_membership.app, sir_membership.cli; assert 'yaml' not in sys.modules"
    env = dict(os.environ, PYTHONPATH=str(root / "src"))
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


@pytest.mark.skipif(
    not (Path(__file__).parent.parent / "examples" / "membership.yaml").exists(),
    reason="example template not present",
)
def test_the_example_template_resolves_except_its_import() -> None:
    text = (Path(__file__).parent.parent / "examples" / "membership.yaml").read_text()
    template = parse_template(text)
    parameters = {
        "MembershipId": MEMBERSHIP_ID,
        "MembershipName": "demo-membership",
        "EnableTriage": "false",
        "OrganizationalUnitIds": "",
        "PrimaryResponderName": "Jane Doe",
        "PrimaryResponderJobTitle": "Lead",
        "PrimaryResponderEmail": "jane.doe@example.com",
        "SecondaryResponderName": "John Roe",
        "SecondaryResponderJobTitle": "Responder",
        "SecondaryResponderEmail": "john.roe@example.com",
    }
    context = StackContext(STACK_ID, "demo", parameters)
    resolved = resolve_properties(template, "Membership", context)
    assert resolved.unresolved == ()
    assert "OrganizationalUnits" not in resolved.properties
    assert resolved.properties["OptInFeatures"] == [{"FeatureName": "Triage", "IsEnabled": "false"}]
    state = state_from_declaration(resolved.properties)
    assert len(state.team) == 2


def test_a_change_of_several_calls_says_it_may_take_minutes_and_names_service_timeout() -> None:
    old = props(OrganizationalUnits=[ou(1)])
    for new, expected in (
        (
            props(OrganizationalUnits=[ou(i) for i in range(1, 22)]),
            "4 UpdateMembership calls within the resource's ServiceTimeout of 600 s (declared): "
            "the service may take minutes per call while accounts propagate; the state machine "
            "waits between Work steps until then (no function runs while it waits)",
        ),
        (
            {
                k: v
                for k, v in props(OrganizationalUnits=[ou(i) for i in range(1, 12)]).items()
                if k != "ServiceTimeout"
            },
            "2 UpdateMembership calls within the resource's ServiceTimeout of 3600 s (the "
            "default: none declared): the service may take minutes per call while accounts "
            "propagate; the state machine waits between Work steps until then (no function "
            "runs while it waits)",
        ),
        (
            props(OrganizationalUnits=[ou(1), ou(2)]),
            "1 UpdateMembership call within the resource's ServiceTimeout of 600 s (declared)",
        ),
        (
            props(OrganizationalUnits=[ou(1), ou(2)], ServiceTimeout="300"),
            "1 UpdateMembership call within the resource's ServiceTimeout of 300 s (declared); "
            "below 600 s a Lambda retry of the function may still run after CloudFormation "
            "stopped waiting: declare 3600",
        ),
        (old, None),
    ):
        request = Request("Update", STACK_ID, "r", "Membership", MEMBERSHIP_ID, new, old)
        decision = decide(request)
        assert decision.plan is not None
        plan = decision.plan(state_from_declaration(old))
        step = Step("Membership", request, "change", MEMBERSHIP_ID, plan)
        assert timing_note(step) == expected
