"""The Lambda handler driven through crhelper: boto3 stubbed, DynamoDB from moto.

Each test sends a CloudFormation event to ``app.handler`` and checks the
calls made to security-ir, the answer PUT to the ResponseURL (exactly one,
within the contract) and, for duplicates, the idempotency store.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from botocore.stub import Stubber
from conftest import (
    MEMBERSHIP_ID,
    SECRET_EMAILS,
    SECRET_MEMBERSHIP_NAME,
    SECRET_NAMES,
    SECRET_TITLES,
    function_table,
    get_membership,
    inline_engine,
    ou,
    props,
)
from engine_local import InlineEngine
from moto import mock_aws
from receiver import Receiver

from sir_membership import app, dispatch, resource, tasks
from sir_membership.errors import EngineUnavailable, JournalUnavailable
from sir_membership.journal_store import JournalStore
from sir_membership.request_record import RequestKeys
from sir_membership.request_store import RequestStore
from sir_membership.response import contract_problems

EVENTS = Path(__file__).parent.parent / "events"
TABLE = "sir-membership-idempotency-test"
OTHER_ID = "m-zzzzzzzzzz99"


@dataclass
class Context:
    """A Lambda context whose deadline is real."""

    deadline: float
    aws_request_id: str = "lambda-request-1"
    function_name: str = "sir-membership"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:sir-membership"
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def context(seconds: float = 120.0) -> Context:
    return Context(deadline=time.monotonic() + seconds)


@pytest.fixture
def cfn() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with mock_aws():
        client = function_table(monkeypatch, TABLE)
        yield client


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, dynamodb: Any) -> InlineEngine:
    """The provider's executions, run in process as soon as the dispatcher starts them."""
    engine: InlineEngine = inline_engine(monkeypatch, context)
    return engine


@pytest.fixture
def sir(engine: InlineEngine) -> Iterator[Stubber]:
    with Stubber(tasks.security_ir()) as stub:
        yield stub
        stub.assert_no_pending_responses()


def event(request_type: str, receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    name = {"Create": "create", "Update": "update", "Delete": "delete"}[request_type]
    raw = json.loads((EVENTS / f"{name}.json").read_text())
    raw.update(ResponseURL=receiver.url, RequestId=str(uuid.uuid4()))
    raw.update(overrides)
    return raw


def answer(receiver: Receiver, sent: dict[str, Any]) -> dict[str, Any]:
    assert len(receiver.bodies) == 1, f"expected one answer, got {len(receiver.bodies)}"
    body = receiver.bodies[0]
    assert contract_problems(sent, body) == []
    return body


def KEYS_OF(sent: dict[str, Any]) -> RequestKeys:
    """The request keys of a sent event (its first attempt)."""
    return RequestKeys.of_event(sent)


def update_call(**accounts: list[str]) -> dict[str, Any]:
    return {"membershipId": MEMBERSHIP_ID, "membershipAccountsConfigurationsUpdate": accounts}


def test_create_reads_then_sends_only_the_difference(sir: Stubber, cfn: Receiver) -> None:
    sent = event("Create", cfn, ResourceProperties=props(OrganizationalUnits=[ou(1), ou(2), ou(3)]))
    read = get_membership(numberOfAccountsCovered=42)
    sir.add_response("get_membership", read, {"membershipId": MEMBERSHIP_ID})
    sir.add_response("update_membership", {}, update_call(organizationalUnitsToAdd=[ou(3)]))
    app.handler(sent, context())
    body = answer(cfn, sent)
    assert body["Status"] == "SUCCESS"
    assert body["PhysicalResourceId"] == MEMBERSHIP_ID
    assert body["Data"] == {
        "MembershipId": MEMBERSHIP_ID,
        "MembershipArn": f"arn:aws:security-ir:us-east-1:123456789012:membership/{MEMBERSHIP_ID}",
        "MembershipStatus": "Active",
        "Region": "us-east-1",
        "AccountId": "123456789012",
        "CustomerType": "Organization",
        "NumberOfAccountsCovered": "42",
    }


def test_invalid_properties_fail_before_any_call(sir: Stubber, cfn: Receiver) -> None:
    sent = event("Create", cfn, ResourceProperties=props(MembershipNmae="typo"))
    app.handler(sent, context())
    body = answer(cfn, sent)
    assert body["Status"] == "FAILED"
    assert body["Reason"].startswith(
        "Invalid properties: unknown property MembershipNmae (did you mean MembershipName?)"
    )
    assert body["PhysicalResourceId"] == f"Membership-failed-{sent['RequestId']}"


def test_update_removes_only_old_ous_still_associated(sir: Stubber, cfn: Receiver) -> None:
    old = props(OrganizationalUnits=[ou(1), ou(2), ou(7)])
    new = props(OrganizationalUnits=[ou(1), ou(3)])
    sent = event("Update", cfn, ResourceProperties=new, OldResourceProperties=old)
    sir.add_response("get_membership", get_membership())  # actual: ou1, ou2 (ou7 already gone)
    sir.add_response(
        "update_membership",
        {},
        update_call(organizationalUnitsToAdd=[ou(3)], organizationalUnitsToRemove=[ou(2)]),
    )
    app.handler(sent, context())
    assert answer(cfn, sent)["Status"] == "SUCCESS"


def test_update_with_nothing_different_makes_no_write(sir: Stubber, cfn: Receiver) -> None:
    sent = event("Update", cfn, ResourceProperties=props(), OldResourceProperties=props())
    sir.add_response("get_membership", get_membership())
    app.handler(sent, context())
    assert answer(cfn, sent)["Status"] == "SUCCESS"


def test_update_with_new_membership_id_acts_as_create(sir: Stubber, cfn: Receiver) -> None:
    sent = event(
        "Update",
        cfn,
        ResourceProperties=props(MembershipId=OTHER_ID, OrganizationalUnits=[ou(5)]),
        OldResourceProperties=props(OrganizationalUnits=[ou(1), ou(2)]),
    )
    other = get_membership(
        membershipId=OTHER_ID,
        membershipArn=f"arn:aws:security-ir:us-east-1:123456789012:membership/{OTHER_ID}",
        membershipAccountsConfigurations={"organizationalUnits": [ou(1)]},
    )
    sir.add_response("get_membership", other, {"membershipId": OTHER_ID})
    sir.add_response(
        "update_membership",
        {},
        {
            "membershipId": OTHER_ID,
            "membershipAccountsConfigurationsUpdate": {"organizationalUnitsToAdd": [ou(5)]},
        },
    )
    app.handler(sent, context())
    body = answer(cfn, sent)
    assert body["PhysicalResourceId"] == OTHER_ID
    assert body["Data"]["MembershipId"] == OTHER_ID


def test_failed_update_keeps_the_physical_id_and_counts_applied_calls(
    sir: Stubber, cfn: Receiver
) -> None:
    new_ous = [ou(i) for i in range(1, 13)]
    sent = event(
        "Update",
        cfn,
        ResourceProperties=props(OrganizationalUnits=new_ous),
        OldResourceProperties=props(),
    )
    sir.add_response("get_membership", get_membership())
    sir.add_response("update_membership", {}, update_call(organizationalUnitsToAdd=new_ous[2:7]))
    sir.add_client_error("update_membership", "AccessDeniedException", http_status_code=403)
    app.handler(sent, context())
    body = answer(cfn, sent)
    assert body["Status"] == "FAILED"
    assert body["PhysicalResourceId"] == MEMBERSHIP_ID
    # What failed: the fix. How many calls were applied; what happens to them.
    assert body["Reason"] == (
        f"Access denied for security-ir:UpdateMembership on membership {MEMBERSHIP_ID}: allow "
        "security-ir:UpdateMembership on arn:<partition>:security-ir:<region>:<account>:"
        "membership/* in the function's role. 1 of 2 UpdateMembership calls were applied; "
        "the stack's rollback restores them from the change journal"
    )


def test_failed_create_undoes_the_calls_it_applied(sir: Stubber, cfn: Receiver) -> None:
    """CloudFormation rolls a failed Create back with a Delete that cannot reach it."""
    new_ous = [ou(i) for i in range(1, 13)]
    sent = event("Create", cfn, ResourceProperties=props(OrganizationalUnits=new_ous))
    before = get_membership()
    sir.add_response("get_membership", before)
    sir.add_response("update_membership", {}, update_call(organizationalUnitsToAdd=new_ous[2:7]))
    sir.add_client_error("update_membership", "ThrottlingException", http_status_code=400)
    sir.add_client_error("update_membership", "AccessDeniedException", http_status_code=403)
    partial = copy.deepcopy(before)
    partial["membershipAccountsConfigurations"]["organizationalUnits"] += new_ous[2:7]
    sir.add_response("get_membership", partial)
    sir.add_response("update_membership", {}, update_call(organizationalUnitsToRemove=new_ous[2:7]))
    app.handler(sent, context())
    body = answer(cfn, sent)
    assert body["Status"] == "FAILED"
    assert body["PhysicalResourceId"].startswith("Membership-failed-")
    assert "role. 1 of 2 UpdateMembership calls were applied; they were undone" in body["Reason"]
    assert body["Reason"].endswith(f"they were undone, membership {MEMBERSHIP_ID} is as it was")
    sir.assert_no_pending_responses()


def test_a_5xx_that_was_applied_is_undone_too(sir: Stubber, cfn: Receiver) -> None:
    """The first call answers 500 but was applied; the next one is denied: the Create undoes."""
    new_ous = [ou(i) for i in range(1, 14)]
    sent = event("Create", cfn, ResourceProperties=props(OrganizationalUnits=new_ous))
    before = get_membership()
    partial = copy.deepcopy(before)
    partial["membershipAccountsConfigurations"]["organizationalUnits"] += new_ous[2:7]
    sir.add_response("get_membership", before)
    sir.add_client_error("update_membership", "InternalServerException", http_status_code=500)
    sir.add_response("get_membership", partial)
    sir.add_client_error("update_membership", "AccessDeniedException", http_status_code=403)
    sir.add_response("get_membership", partial)
    sir.add_response("update_membership", {}, update_call(organizationalUnitsToRemove=new_ous[2:7]))
    app.handler(sent, context())
    reason = answer(cfn, sent)["Reason"]
    assert "role. 1 of 3 UpdateMembership calls were applied; they were undone" in reason
    assert reason.endswith(f"they were undone, membership {MEMBERSHIP_ID} is as it was")


def test_undo_after_reactivation_says_it_stays_active(sir: Stubber, cfn: Receiver) -> None:
    new_ous = [ou(i) for i in range(1, 9)]
    cancelled = get_membership(membershipStatus="Cancelled")
    sent = event(
        "Create",
        cfn,
        ResourceProperties=props(OrganizationalUnits=new_ous, UndoMembershipCancellation="true"),
    )
    sir.add_response("get_membership", cancelled)
    sir.add_response(
        "update_membership",
        {},
        {**update_call(organizationalUnitsToAdd=new_ous[2:7]), "undoMembershipCancellation": True},
    )
    sir.add_client_error("update_membership", "AccessDeniedException", http_status_code=403)
    partial = get_membership()
    partial["membershipAccountsConfigurations"]["organizationalUnits"] += new_ous[2:7]
    sir.add_response("get_membership", partial)
    sir.add_response("update_membership", {}, update_call(organizationalUnitsToRemove=new_ous[2:7]))
    app.handler(sent, context())
    assert answer(cfn, sent)["Reason"].endswith(
        f"they were undone except the reactivation: membership {MEMBERSHIP_ID} stays Active"
    )


def test_failed_undo_says_what_is_left(sir: Stubber, cfn: Receiver) -> None:
    new_ous = [ou(i) for i in range(1, 9)]
    sent = event("Create", cfn, ResourceProperties=props(OrganizationalUnits=new_ous))
    sir.add_response("get_membership", get_membership())
    sir.add_response("update_membership", {}, update_call(organizationalUnitsToAdd=new_ous[2:7]))
    sir.add_client_error("update_membership", "ValidationException", http_status_code=400)
    sir.add_client_error("get_membership", "AccessDeniedException", http_status_code=403)
    app.handler(sent, context())
    reason = answer(cfn, sent)["Reason"]
    assert "UpdateMembership was rejected: ValidationException" in reason
    assert reason.endswith(
        f"undoing them failed too (PermissionDenied): membership {MEMBERSHIP_ID} may keep "
        "those changes; the rollback Delete restores them from the change journal"
    )
    assert answer(cfn, sent)["PhysicalResourceId"] == f"Membership-unrestored-{sent['RequestId']}"


def test_requests_that_cannot_write_do_not_need_the_table(
    sir: Stubber, cfn: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback Delete after a failed Create, or invalid input, answers without DynamoDB."""
    monkeypatch.setattr(app, "REQUESTS", replace(app.REQUESTS, table_name="no-such-table"))
    monkeypatch.setattr(app, "TABLE_NAME", "no-such-table")
    delete = event("Delete", cfn, ResourceProperties=props(), PhysicalResourceId="X-failed-1")
    app.handler(delete, context())
    invalid = event("Create", cfn, ResourceProperties=props(MembershipNmae="x"))
    app.handler(invalid, context())
    deleted, failed = cfn.bodies
    assert (deleted["Status"], deleted["PhysicalResourceId"]) == ("SUCCESS", "X-failed-1")
    assert failed["Reason"].startswith(
        "Invalid properties: unknown property MembershipNmae (did you mean MembershipName?)"
    )


FOREIGN_OU = "ou-ab12-f0f0f0f0"


def journal_entry(dynamodb: Any, stack_id: str) -> dict[str, Any]:
    item = dynamodb.get_item(
        TableName=TABLE, Key={"id": {"S": f"journal#{stack_id}#Membership"}}, ConsistentRead=True
    )["Item"]
    return dict(json.loads(item["entry"]["S"]))


def test_rollback_keeps_an_ou_the_failed_update_adopted(
    sir: Stubber, cfn: Receiver, dynamodb: Any
) -> None:
    """The failed Update declared an OU someone else had associated: its rollback keeps it."""
    before = get_membership()
    before["membershipAccountsConfigurations"]["organizationalUnits"].append(FOREIGN_OU)
    old = props()
    new = props(OrganizationalUnits=[ou(1), ou(2), FOREIGN_OU, ou(3)])
    failing = event("Update", cfn, ResourceProperties=new, OldResourceProperties=old)
    sir.add_response("get_membership", before)
    sir.add_client_error("update_membership", "AccessDeniedException", http_status_code=403)
    app.handler(failing, context())
    assert cfn.bodies[-1]["Status"] == "FAILED"
    entry = journal_entry(dynamodb, failing["StackId"])
    assert (entry["phase"], entry["applied"], entry["planned"]) == ("failed", 0, 1)
    assert entry["touched"]["ousAdded"] == [ou(3)]  # the adopted OU is not the change's

    rollback = event("Update", cfn, ResourceProperties=old, OldResourceProperties=new)
    sir.add_response("get_membership", before)  # nothing was applied: no call to undo
    app.handler(rollback, context())
    assert cfn.bodies[-1]["Status"] == "SUCCESS"
    assert journal_entry(dynamodb, failing["StackId"])["phase"] == "restored"


def test_a_retried_rollback_restores_from_the_journal(
    sir: Stubber, cfn: Receiver, dynamodb: Any
) -> None:
    """The rollback fails and is continued later: it still restores what was removed."""
    dropped = [ou(i) for i in range(3, 9)]
    before = get_membership()
    before["membershipAccountsConfigurations"]["organizationalUnits"] += [*dropped, FOREIGN_OU]
    partial = copy.deepcopy(before)
    for gone in dropped[:5]:
        partial["membershipAccountsConfigurations"]["organizationalUnits"].remove(gone)
    old = props(OrganizationalUnits=[ou(1), ou(2), *dropped])
    new = props(OrganizationalUnits=[ou(1), ou(2), FOREIGN_OU])
    sir.add_response("get_membership", before)
    sir.add_response("update_membership", {}, update_call(organizationalUnitsToRemove=dropped[:5]))
    sir.add_client_error("update_membership", "AccessDeniedException", http_status_code=403)
    app.handler(event("Update", cfn, ResourceProperties=new, OldResourceProperties=old), context())
    restore = update_call(organizationalUnitsToAdd=dropped[:5])  # and FOREIGN_OU stays
    for denied in (True, False):  # the rollback, then its continuation
        sir.add_response("get_membership", partial)
        if denied:
            sir.add_client_error("update_membership", "AccessDeniedException", http_status_code=403)
        else:
            sir.add_response("update_membership", {}, restore)
        rollback = event("Update", cfn, ResourceProperties=old, OldResourceProperties=new)
        app.handler(rollback, context())
    assert [b["Status"] for b in cfn.bodies] == ["FAILED", "FAILED", "SUCCESS"]
    assert cfn.bodies[0]["Reason"].endswith(
        "in the function's role. 1 of 2 UpdateMembership calls were applied; "
        "the stack's rollback restores them from the change journal"
    )
    assert "the change journal keeps what to restore" in cfn.bodies[1]["Reason"]
    assert journal_entry(dynamodb, rollback["StackId"])["phase"] == "restored"


def test_rollback_of_a_succeeded_update_restores_newly_declared_fields(
    sir: Stubber, cfn: Receiver, dynamodb: Any
) -> None:
    """Cases 1 and 2: the old declaration never mentioned the name, team or Triage."""
    before = get_membership(
        membershipName="Before Name", optInFeatures=[{"featureName": "Triage", "isEnabled": False}]
    )
    before["membershipAccountsConfigurations"]["organizationalUnits"].append(FOREIGN_OU)
    old = {"ServiceToken": "x", "MembershipId": MEMBERSHIP_ID, "OrganizationalUnits": [ou(1)]}
    new = props(
        IncidentResponseTeam=team3(),
        OrganizationalUnits=[ou(1), ou(2), FOREIGN_OU],
    )
    forward = update_call()
    forward.pop("membershipAccountsConfigurationsUpdate")
    sir.add_response("get_membership", before)
    sir.add_response(
        "update_membership",
        {},
        {
            **forward,
            "membershipName": SECRET_MEMBERSHIP_NAME,
            "incidentResponseTeam": api_team3(),
            "optInFeatures": [{"featureName": "Triage", "isEnabled": True}],
        },
    )
    app.handler(event("Update", cfn, ResourceProperties=new, OldResourceProperties=old), context())
    assert cfn.bodies[-1]["Status"] == "SUCCESS"
    after = get_membership(incidentResponseTeam=api_team3())
    after["membershipAccountsConfigurations"]["organizationalUnits"].append(FOREIGN_OU)
    # Another resource of the stack failed: CloudFormation rolls this one back.
    sir.add_response("get_membership", after)
    sir.add_response(
        "update_membership",
        {},
        {
            **forward,
            "membershipName": "Before Name",
            "incidentResponseTeam": [
                {**r, "communicationPreferences": []}
                for r in get_membership()["incidentResponseTeam"]
            ],
            "optInFeatures": [{"featureName": "Triage", "isEnabled": False}],
        },
    )
    rollback = event("Update", cfn, ResourceProperties=old, OldResourceProperties=new)
    app.handler(rollback, context())
    assert cfn.bodies[-1]["Status"] == "SUCCESS"
    # ou(2) and FOREIGN_OU were associated before: neither is removed.


def team3() -> list[dict[str, Any]]:
    return [
        *props()["IncidentResponseTeam"],
        {"Name": SECRET_NAMES[2], "JobTitle": SECRET_TITLES[2], "Email": SECRET_EMAILS[2]},
    ]


def api_team3() -> list[dict[str, Any]]:
    return [
        *get_membership()["incidentResponseTeam"],
        {"name": SECRET_NAMES[2], "jobTitle": SECRET_TITLES[2], "email": SECRET_EMAILS[2]},
    ]


def test_an_unreadable_journal_fails_the_update_before_any_write(
    sir: Stubber, cfn: Receiver, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "JOURNAL", JournalStore(dynamodb, "no-such-table"))
    sent = event(
        "Update",
        cfn,
        ResourceProperties=props(OrganizationalUnits=[ou(1)]),
        OldResourceProperties=props(),
    )
    app.handler(sent, context())
    body = answer(cfn, sent)
    assert body["Status"] == "FAILED"
    assert body["Reason"] == (
        "could not write to the change journal in table no-such-table "
        "(ResourceNotFoundException): "
        "check the table exists and the role allows dynamodb:GetItem/PutItem/UpdateItem/"
        "DeleteItem on it. No change was applied"
    )


@pytest.mark.parametrize(
    ("on_delete", "physical", "calls"),
    [
        ("Retain", MEMBERSHIP_ID, 0),
        ("RemoveOrganizationalUnits", MEMBERSHIP_ID, 2),
        ("RemoveOrganizationalUnits", "Membership-failed-x", 0),
    ],
)
def test_delete(sir: Stubber, cfn: Receiver, on_delete: str, physical: str, calls: int) -> None:
    sent = event(
        "Delete",
        cfn,
        PhysicalResourceId=physical,
        ResourceProperties=props(OnDelete=on_delete, OrganizationalUnits=[ou(2), ou(9)]),
    )
    if calls:
        sir.add_response("get_membership", get_membership())
        sir.add_response("update_membership", {}, update_call(organizationalUnitsToRemove=[ou(2)]))
    started = time.monotonic()
    app.handler(sent, context())
    assert time.monotonic() - started < 1.0, "no sleeping on Delete"
    body = answer(cfn, sent)
    assert body["Status"] == "SUCCESS"
    assert body["PhysicalResourceId"] == physical


def test_delete_of_a_membership_that_is_gone_succeeds(sir: Stubber, cfn: Receiver) -> None:
    sent = event("Delete", cfn, ResourceProperties=props(OnDelete="RemoveOrganizationalUnits"))
    sir.add_client_error("get_membership", "ResourceNotFoundException", http_status_code=404)
    app.handler(sent, context())
    assert answer(cfn, sent)["Status"] == "SUCCESS"


def test_delete_with_invalid_properties_retains_and_succeeds(sir: Stubber, cfn: Receiver) -> None:
    sent = event("Delete", cfn, ResourceProperties=props(OnDelete="Bogus"))
    app.handler(sent, context())
    assert answer(cfn, sent)["Status"] == "SUCCESS"


def test_duplicate_delivery_makes_no_second_write_and_answers_the_same(
    sir: Stubber, cfn: Receiver
) -> None:
    sent = event("Create", cfn, ResourceProperties=props(OrganizationalUnits=[ou(1), ou(2), ou(3)]))
    sir.add_response("get_membership", get_membership())
    sir.add_response("update_membership", {}, update_call(organizationalUnitsToAdd=[ou(3)]))
    app.handler(copy.deepcopy(sent), context())
    app.handler(copy.deepcopy(sent), context())  # the Stubber has nothing left: any call would fail
    assert len(cfn.bodies) == 2
    assert cfn.bodies[0] == cfn.bodies[1]
    assert cfn.bodies[0]["Status"] == "SUCCESS"


def test_duplicate_failure_is_answered_the_same(sir: Stubber, cfn: Receiver) -> None:
    sent = event("Create", cfn, ResourceProperties=props(OnDelete="nope"))
    app.handler(copy.deepcopy(sent), context())
    app.handler(copy.deepcopy(sent), context())
    assert cfn.bodies[0] == cfn.bodies[1]
    assert cfn.bodies[0]["Status"] == "FAILED"


def test_duplicates_at_once_join_one_execution_and_get_one_answer(
    sir: Stubber, cfn: Receiver, engine: InlineEngine
) -> None:
    """Two deliveries before the execution ran: one execution, one write, one answer."""
    engine.run_now = False
    sent = event("Create", cfn, ResourceProperties=props(OrganizationalUnits=[ou(1), ou(2), ou(3)]))
    sir.add_response("get_membership", get_membership())
    sir.add_response("update_membership", {}, update_call(organizationalUnitsToAdd=[ou(3)]))
    app.handler(copy.deepcopy(sent), context())
    app.handler(copy.deepcopy(sent), context())
    assert cfn.bodies == [], "the dispatcher answers nothing it dispatched"
    engine.run_pending()
    assert list(engine.executions) == [KEYS_OF(sent).execution_name]
    body = answer(cfn, sent)
    assert body["Status"] == "SUCCESS"
    app.handler(copy.deepcopy(sent), context())  # after the answer: the same answer again
    assert cfn.bodies[1] == body


def test_a_rollback_supersedes_the_running_update_before_its_next_write(
    sir: Stubber, cfn: Receiver, engine: InlineEngine
) -> None:
    """The rollback takes the fence; the update's execution is stopped and writes nothing more."""
    engine.run_now = False
    forward = event(
        "Update",
        cfn,
        ResourceProperties=props(OrganizationalUnits=[ou(1), ou(2), ou(3)]),
        OldResourceProperties=props(),
    )
    rollback = event(
        "Update",
        cfn,
        ResourceProperties=props(),
        OldResourceProperties=forward["ResourceProperties"],
    )
    app.handler(copy.deepcopy(forward), context())
    app.handler(copy.deepcopy(rollback), context())  # CloudFormation gave up on the forward one
    forward_run = engine.executions[KEYS_OF(forward).execution_name]
    assert forward_run.status == "ABORTED"
    sir.add_response("get_membership", get_membership())  # the rollback reads; nothing to do
    engine.run_pending()
    assert forward_run.history == []  # stopped before its first step
    body = answer(cfn, rollback)
    assert body["Status"] == "SUCCESS"


def test_a_superseded_step_stops_before_the_write(
    sir: Stubber, cfn: Receiver, engine: InlineEngine, dynamodb: Any
) -> None:
    """A Work step already running when a newer request takes the fence sends no write."""
    sent = event(
        "Update",
        cfn,
        ResourceProperties=props(OrganizationalUnits=[ou(1), ou(2), ou(3)]),
        OldResourceProperties=props(),
    )
    newer = RequestKeys(sent["StackId"], "Membership", "newer-request")

    def take_fence_on_read(*_: Any, **__: Any) -> None:
        dynamodb.put_item(
            TableName=TABLE,
            Item={
                "id": {"S": f"fence#{sent['StackId']}#Membership"},
                "holder": {"S": newer.holder},
                "generation": {"N": "2"},
            },
        )

    sir.add_response("get_membership", get_membership())
    original = tasks.security_ir().get_membership

    def read_then_lose_the_fence(**kwargs: Any) -> Any:
        result = original(**kwargs)
        take_fence_on_read()
        return result

    with mock.patch.object(tasks.security_ir(), "get_membership", read_then_lose_the_fence):
        app.handler(sent, context())
    assert cfn.bodies == []  # superseded: CloudFormation has moved on to the newer request
    run = engine.executions[KEYS_OF(sent).execution_name]
    assert run.history == ["Work", "Superseded"]


def test_out_of_time_is_answered_before_the_deadline(
    sir: Stubber, cfn: Receiver, engine: InlineEngine
) -> None:
    """A step with no time for a call, and none left for another step, answers FAILED in time."""
    engine.context = lambda: context(seconds=12)
    sent = event("Create", cfn, ResourceProperties=props(ServiceTimeout="40"))
    app.handler(sent, context())
    body = answer(cfn, sent)
    assert body["Status"] == "FAILED"
    assert body["Reason"] == (
        "The change could not finish within the resource's ServiceTimeout of 40 s over 1 Work "
        "step(s): raise ServiceTimeout (up to 3600) and retry. No change was applied"
    )
    run = engine.executions[KEYS_OF(sent).execution_name]
    assert run.history == ["Work", "Answer"]


def test_timer_answers_once_when_the_dispatch_hangs(
    dynamodb: Any, cfn: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = event("Create", cfn, ResourceProperties=props())

    def hang(*_: Any) -> Any:
        time.sleep(1.0)
        raise AssertionError("the timer answered first")

    monkeypatch.setattr(app, "dispatch", hang)
    cfn.hang_seconds = 1.5  # the timer's PUT is still in flight when the dispatch returns
    ctx = context(seconds=app.TIMER_RESERVE + 0.5)
    app.handler(sent, ctx)
    body = answer(cfn, sent)  # delivered before handler returned; the main thread's is dropped
    assert body["Status"] == "FAILED"
    assert body["Reason"].startswith("The function ran out of time before it could start")
    assert body["PhysicalResourceId"] == f"Membership-failed-{sent['RequestId']}"


def test_once_the_execution_may_have_started_the_timer_stays_silent(
    dynamodb: Any, cfn: Receiver, monkeypatch: pytest.MonkeyPatch, engine: InlineEngine
) -> None:
    sent = event("Create", cfn, ResourceProperties=props())

    def slow_start(keys: RequestKeys) -> bool:
        time.sleep(1.0)
        return True

    monkeypatch.setattr(engine, "start", slow_start)
    app.handler(sent, context(seconds=app.TIMER_RESERVE + 0.5))
    time.sleep(0.2)
    assert cfn.bodies == []  # the execution answers, never the dispatcher's timer


def test_a_failed_start_is_answered_failed_once_and_the_fence_closed(
    dynamodb: Any, cfn: Receiver, engine: InlineEngine
) -> None:
    engine.start_error = EngineUnavailable(
        "Could not start the change's execution (AccessDeniedException): allow "
        "states:StartExecution on the provider's state machine in the function's role. "
        "Nothing was changed"
    )
    sent = event("Create", cfn, ResourceProperties=props())
    app.handler(copy.deepcopy(sent), context())
    body = answer(cfn, sent)
    assert body["Status"] == "FAILED"
    assert body["Reason"] == engine.start_error.reason
    assert not app.REQUESTS.holds(KEYS_OF(sent))  # a start that went through unseen cannot write


def test_unexpected_errors_answer_without_their_text(
    dynamodb: Any, cfn: Receiver, monkeypatch: pytest.MonkeyPatch, engine: InlineEngine
) -> None:
    def boom(request: resource.Request, service: Any, *_: Any) -> Any:
        raise RuntimeError(SECRET_EMAILS[0])

    monkeypatch.setattr(resource, "handle", boom)
    sent = event("Create", cfn, ResourceProperties=props())
    app.handler(sent, context())
    body = answer(cfn, sent)
    assert body["Reason"] == (
        f"The change's Work step failed (RuntimeError); see the Work function's logs for "
        f"RequestId {sent['RequestId']}. No change was applied"
    )
    run = engine.executions[KEYS_OF(sent).execution_name]
    assert run.history == ["Work", "AnswerFailure"]

    def dispatcher_bug(*_: Any) -> Any:
        raise RuntimeError(SECRET_EMAILS[0])

    monkeypatch.setattr(app, "dispatch", dispatcher_bug)
    again = event("Create", cfn, ResourceProperties=props())
    app.handler(again, context())
    assert cfn.bodies[1]["Reason"] == (
        f"Internal error (RuntimeError); see the function's logs for RequestId {again['RequestId']}"
    )


def test_missing_table_configuration(
    sir: Stubber, cfn: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "REQUESTS", replace(app.REQUESTS, table_name=""))
    sent = event("Create", cfn, ResourceProperties=props())
    app.handler(sent, context())
    assert answer(cfn, sent)["Reason"] == (
        "IDEMPOTENCY_TABLE_NAME is not set on the function: deploy the provider's template "
        "as published. Nothing was changed"
    )


def test_unreachable_idempotency_table(
    sir: Stubber, cfn: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "REQUESTS", replace(app.REQUESTS, table_name="no-such-table"))
    monkeypatch.setattr(app, "TABLE_NAME", "no-such-table")
    sent = event("Create", cfn, ResourceProperties=props())
    app.handler(sent, context())
    body = answer(cfn, sent)
    assert body["Status"] == "FAILED"
    assert body["Reason"] == (
        "could not write the request record in table no-such-table "
        "(ResourceNotFoundException): check the table exists and the role allows "
        "dynamodb:GetItem/PutItem/UpdateItem on it"
    )


def test_logs_carry_correlation_but_no_sensitive_value(
    sir: Stubber,
    cfn: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Even at DEBUG, no name, email, title, membership name or ResponseURL is logged."""
    caplog.set_level("DEBUG")
    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setFormatter(app.logger.registered_formatter)
    app.logger.addHandler(capture)
    app.logger.setLevel("DEBUG")
    app._configure_logging()
    try:
        new = props(MembershipName="Renamed Secret", OrganizationalUnits=[ou(3)])
        sent = event("Update", cfn, ResourceProperties=new, OldResourceProperties=props())
        sir.add_response("get_membership", get_membership())
        sir.add_client_error(
            "update_membership",
            "ValidationException",
            http_status_code=400,
            modeled_fields={"message": f"bad {SECRET_EMAILS[0]}", "reason": "OTHER"},
        )
        app.handler(sent, context())
        bad = event(
            "Create",
            cfn,
            ResourceProperties=props(
                IncidentResponseTeam=[{"Name": SECRET_NAMES[2], "Email": "x"}]
            ),
        )
        app.handler(bad, context())
    finally:
        app.logger.removeHandler(capture)
        app.logger.setLevel("INFO")
        app._configure_logging()
    logged = buffer.getvalue()
    text = logged + caplog.text
    text += json.dumps([r.__dict__ for r in caplog.records], default=str)
    lines = [json.loads(line) for line in logged.splitlines()]
    assert lines, "the handler logged JSON lines"
    assert any(
        line.get("correlation_id") == sent["RequestId"] and line.get("RequestType") == "Update"
        for line in lines
    )
    assert any(line.get("message") == "planned" and line.get("ousToAdd") == 1 for line in lines)
    for secret in (
        *SECRET_NAMES,
        *SECRET_EMAILS,
        *SECRET_TITLES,
        SECRET_MEMBERSHIP_NAME,
        "Renamed Secret",
        "secret-signature",
        cfn.url,
    ):
        assert secret not in text
    for body in cfn.bodies:
        for secret in (*SECRET_NAMES, *SECRET_EMAILS, *SECRET_TITLES, SECRET_MEMBERSHIP_NAME):
            assert secret not in json.dumps(body)


@pytest.mark.parametrize(
    ("name", "reads", "writes"),
    [
        ("create", 1, 1),
        ("update", 1, 1),
        ("update-replace", 1, 1),
        ("delete", 0, 0),
        ("delete-remove-ous", 1, 1),
    ],
)
def test_shipped_events_get_correct_answers(
    sir: Stubber, cfn: Receiver, name: str, reads: int, writes: int
) -> None:
    """The files in events/ (what `sam local invoke -e` sends) work against the handler."""
    sent = json.loads((EVENTS / f"{name}.json").read_text())
    sent["ResponseURL"] = cfn.url
    declared = sent["ResourceProperties"]
    actual = get_membership(
        membershipId=declared["MembershipId"],
        membershipAccountsConfigurations={
            "organizationalUnits": declared["OrganizationalUnits"][:1]
        },
    )
    for _ in range(reads):
        sir.add_response("get_membership", actual, {"membershipId": declared["MembershipId"]})
    for _ in range(writes):
        sir.add_response("update_membership", {})
    app.handler(sent, context())  # the fixture fails the test on any call not planned here
    body = answer(cfn, sent)
    assert body["Status"] == "SUCCESS", body["Reason"]
    assert body["PhysicalResourceId"] == declared["MembershipId"]


def test_malformed_event_is_answered_at_its_own_url(sir: Stubber, cfn: Receiver) -> None:
    """crhelper fails to parse it; the FAILED answer goes to this request, not a previous one."""
    earlier = event("Delete", cfn, ResourceProperties=props())
    app.handler(earlier, context())
    broken = event("Create", cfn, ResourceProperties=props())
    del broken["LogicalResourceId"]
    broken["ResponseURL"] = cfn.url.replace("cfn-response", "broken-request")
    app.handler(broken, context())
    assert len(cfn.bodies) == 2
    assert cfn.paths[1].startswith("/broken-request")
    assert cfn.bodies[1]["Status"] == "FAILED"
    assert cfn.bodies[1]["RequestId"] == broken["RequestId"]
    assert cfn.bodies[1]["PhysicalResourceId"]


def test_the_root_logger_level_is_left_alone() -> None:
    logging.root.setLevel(logging.WARNING)
    app._Resource()
    assert logging.root.level == logging.WARNING


def test_work_done_but_outcome_not_recorded_is_answered_failed_for_the_rollback(
    sir: Stubber, cfn: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Answer task cannot know the outcome: FAILED, counting the calls, so the rollback runs."""

    class Broken(RequestStore):
        def record_outcome(self, keys: RequestKeys, answer: Any) -> None:
            raise JournalUnavailable("could not write the request record in table t (Boom)")

    monkeypatch.setattr(tasks, "REQUESTS", Broken(tasks.REQUESTS.client, TABLE))
    sent = event(
        "Update",
        cfn,
        ResourceProperties=props(OrganizationalUnits=[ou(1), ou(2), ou(3)]),
        OldResourceProperties=props(),
    )
    sir.add_response("get_membership", get_membership())
    sir.add_response("update_membership", {}, update_call(organizationalUnitsToAdd=[ou(3)]))
    app.handler(sent, context())
    body = answer(cfn, sent)
    assert body["Status"] == "FAILED"
    assert body["PhysicalResourceId"] == MEMBERSHIP_ID
    assert body["Reason"] == (
        "The change's Work step failed (JournalUnavailable); see the Work function's logs for "
        f"RequestId {sent['RequestId']}. 1 of 1 UpdateMembership calls were applied; "
        "the stack's rollback restores them from the change journal"
    )


def test_bugs_and_bad_urls_leave_no_sensitive_text_in_logs(
    engine: InlineEngine,
    cfn: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")

    def boom(request: resource.Request, service: Any, *_: Any) -> Any:
        raise RuntimeError(SECRET_EMAILS[0])

    monkeypatch.setattr(resource, "handle", boom)
    app.handler(event("Create", cfn, ResourceProperties=props()), context())
    no_scheme = event("Create", cfn, ResourceProperties=props())
    no_scheme["ResponseURL"] = "cfn-response?X-Amz-Signature=TOPSECRETSIG"
    app.handler(no_scheme, context())  # cannot be answered, must not raise or log the URL
    missing = event("Create", cfn, ResourceProperties=props())
    del missing["ResponseURL"]
    app.handler(missing, context())
    text = caplog.text + json.dumps([r.__dict__ for r in caplog.records], default=str)
    assert "the Work task failed" in text
    assert SECRET_EMAILS[0] not in text
    assert "TOPSECRETSIG" not in text
    assert len(cfn.bodies) == 1


def _as_the_previous_release_left_it(
    client: Any, engine: InlineEngine, *sent: dict[str, Any]
) -> None:
    """The table as the previous release leaves it: journal entries and first sights only.

    It kept no request record (no event, no claimed answer) and no fence, and
    started no execution.
    """
    for one in sent:
        del engine.executions[KEYS_OF(one).execution_name]
        stack, request_id = one["StackId"], one["RequestId"]
        client.delete_item(TableName=TABLE, Key={"id": {"S": f"request#{stack}#{request_id}"}})
        client.delete_item(
            TableName=TABLE, Key={"id": {"S": f"fence#{stack}#{one['LogicalResourceId']}"}}
        )
        JournalStore(client, TABLE).first_seen(stack, request_id, time.time() - 60)


def test_a_previous_release_continuation_of_the_latest_change_carries_on_from_its_entry(
    sir: Stubber, cfn: Receiver, engine: InlineEngine, dynamodb: Any
) -> None:
    """Upgrade in flight: the old chain's next link arrives at the dispatcher."""
    sent = event("Update", cfn, ResourceProperties=props(OrganizationalUnits=[ou(1), ou(2), ou(3)]))
    sent["OldResourceProperties"] = props()
    sir.add_response("get_membership", get_membership())
    sir.add_response("update_membership", {}, update_call(organizationalUnitsToAdd=[ou(3)]))
    app.handler(copy.deepcopy(sent), context())
    assert answer(cfn, sent)["Status"] == "SUCCESS"
    _as_the_previous_release_left_it(dynamodb, engine, sent)
    cfn.bodies.clear()
    link = copy.deepcopy(sent) | {"SirMembershipContinuation": {"Token": "a" * 32}}
    sir.add_response(
        "get_membership",
        get_membership(
            membershipAccountsConfigurations={
                "coverEntireOrganization": False,
                "organizationalUnits": [ou(1), ou(2), ou(3)],
            }
        ),
    )
    app.handler(link, context())  # re-plans from what is: nothing left, no UpdateMembership
    assert list(engine.executions) == [KEYS_OF(sent).execution_name]
    assert answer(cfn, sent)["Status"] == "SUCCESS"


def test_a_previous_release_continuation_overtaken_by_a_newer_change_never_writes(
    sir: Stubber, cfn: Receiver, engine: InlineEngine, dynamodb: Any
) -> None:
    """A stale link of the old chain after a newer update of the resource: FAILED, no call."""
    first = event(
        "Update", cfn, ResourceProperties=props(OrganizationalUnits=[ou(1), ou(2), ou(3)])
    )
    first["OldResourceProperties"] = props()
    sir.add_response("get_membership", get_membership())
    sir.add_response("update_membership", {}, update_call(organizationalUnitsToAdd=[ou(3)]))
    app.handler(copy.deepcopy(first), context())
    newer = event(
        "Update", cfn, ResourceProperties=props(OrganizationalUnits=[ou(1), ou(2), ou(3), ou(4)])
    )
    newer["OldResourceProperties"] = first["ResourceProperties"]
    sir.add_response(
        "get_membership",
        get_membership(
            membershipAccountsConfigurations={
                "coverEntireOrganization": False,
                "organizationalUnits": [ou(1), ou(2), ou(3)],
            }
        ),
    )
    sir.add_response("update_membership", {}, update_call(organizationalUnitsToAdd=[ou(4)]))
    app.handler(copy.deepcopy(newer), context())
    assert [b["Status"] for b in cfn.bodies] == ["SUCCESS", "SUCCESS"]
    _as_the_previous_release_left_it(dynamodb, engine, first, newer)
    cfn.bodies.clear()
    link = copy.deepcopy(first) | {"SirMembershipContinuation": {"Token": "a" * 32}}
    app.handler(link, context())  # the Stubber has nothing left: any call would fail
    body = answer(cfn, first)
    assert body["Status"] == "FAILED"
    assert body["Reason"] == dispatch.OVERTAKEN
    assert list(engine.executions) == [], "no execution for an overtaken request"
