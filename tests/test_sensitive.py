"""An invalid value of a sensitive property is described, never echoed (review S4, issue 16 case 8).

A membership name or a job title pasted into ``MembershipId``, or a name too
long for ``Name``, must not reach the stack events (the answer's Reason) nor
the function's logs, at any level. The Reason still says where the problem
is, how long the value is, which rule it breaks and what to declare instead.
Each event goes through ``app.handler`` (security-ir stubbed: no call is
queued, so any call fails the test), and the logs are captured at DEBUG.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.model import ListShape, Shape, StructureShape
from botocore.stub import Stubber
from conftest import props, team
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws
from receiver import Receiver
from test_app import TABLE, answer, context, event, function_table

from sir_membership import app, tasks
from sir_membership.errors import InvalidProperties
from sir_membership.properties import parse_properties
from sir_membership.service_model import load_model

MARKER = "Zq7Marker"


@pytest.fixture
def cfn() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def sir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    with mock_aws():
        function_table(monkeypatch, TABLE)
        with Stubber(tasks.security_ir()) as stub:
            yield stub
            stub.assert_no_pending_responses()


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """The function's JSON lines and every record of any logger, at DEBUG."""
    caplog.set_level("DEBUG")
    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setFormatter(app.logger.registered_formatter)
    app.logger.addHandler(capture)
    app.logger.setLevel("DEBUG")
    app._configure_logging()
    try:
        yield buffer
    finally:
        app.logger.removeHandler(capture)
        app.logger.setLevel("INFO")
        app._configure_logging()
    buffer.write(caplog.text)
    buffer.write(json.dumps([r.__dict__ for r in caplog.records], default=str))


def sensitive_members(shape: Shape, path: str = "") -> set[str]:
    """The member paths of ``shape`` that botocore's model marks sensitive."""
    if isinstance(shape, StructureShape):
        found = set()
        for name, member in shape.members.items():
            found |= sensitive_members(member, f"{path}.{name}" if path else name)
        return found
    if isinstance(shape, ListShape):
        return sensitive_members(shape.member, f"{path}[]")
    return {path} if shape.metadata.get("sensitive") else set()


#: Each sensitive field of UpdateMembership, as the resource declares it.
SENSITIVE_PROPERTIES = {
    "membershipName": "MembershipName",
    "incidentResponseTeam[].name": "IncidentResponseTeam[0].Name",
    "incidentResponseTeam[].jobTitle": "IncidentResponseTeam[0].JobTitle",
    "incidentResponseTeam[].email": "IncidentResponseTeam[0].Email",
}


def test_the_cases_below_cover_every_field_the_model_marks_sensitive() -> None:
    update = load_model().operation_model("UpdateMembership").input_shape
    assert update is not None
    assert sensitive_members(update) == set(SENSITIVE_PROPERTIES)


def with_member(**fields: str) -> dict[str, Any]:
    members = team(2)
    members[0].update(fields)
    return props(IncidentResponseTeam=members)


CASES = [
    # (properties, the one problem's exact description)
    pytest.param(
        props(MembershipName=f"{MARKER} Incident Response Programme Europe 2026 x"),
        "MembershipName is invalid (51 characters, not shown): more than 50 characters; "
        "declare 3 to 50 characters",
        id="MembershipName-too-long",
    ),
    pytest.param(
        props(MembershipName="Zq"),
        "MembershipName is invalid (2 characters, not shown): fewer than 3 characters; "
        "declare 3 to 50 characters",
        id="MembershipName-too-short",
    ),
    pytest.param(
        with_member(Name=f"{MARKER} Alexandra Example-Longname of the Security Team"),
        "IncidentResponseTeam[0].Name is invalid (57 characters, not shown): more than 50 "
        "characters; declare 3 to 50 characters",
        id="Name-too-long",
    ),
    pytest.param(
        with_member(JobTitle=f"{MARKER} Chief Information Security Officer, EMEA and APAC"),
        "IncidentResponseTeam[0].JobTitle is invalid (59 characters, not shown): more than 50 "
        "characters; declare 1 to 50 characters",
        id="JobTitle-too-long",
    ),
    pytest.param(
        with_member(Email=f"{MARKER} at example dot com"),
        "IncidentResponseTeam[0].Email is invalid (28 characters, not shown): not an email "
        "address (the service's pattern); declare the responder's email address",
        id="Email-not-an-address",
    ),
    pytest.param(
        props(MembershipId=f"security-ir-prod-{MARKER}"),
        "MembershipId is invalid (26 characters, not shown): does not match m-[a-z0-9]{10,32}; "
        "declare the membership's id (m-..., as aws security-ir list-memberships shows it), "
        "not its name",
        id="MembershipId-a-membership-name",
    ),
    pytest.param(
        props(MembershipId=f"CISO{MARKER}"),
        "MembershipId is invalid (13 characters, not shown): does not match m-[a-z0-9]{10,32}; "
        "declare the membership's id (m-..., as aws security-ir list-memberships shows it), "
        "not its name",
        id="MembershipId-a-job-title",
    ),
    pytest.param(
        props(MembershipId=f"m-{MARKER.lower()}"),
        "MembershipId is invalid (11 characters, not shown): fewer than 12 characters; "
        "declare the membership's id (m-..., as aws security-ir list-memberships shows it), "
        "not its name",
        id="MembershipId-id-shaped",
    ),
]


@pytest.mark.parametrize(("declared", "problem"), CASES)
@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_an_invalid_sensitive_value_is_described_and_never_echoed(
    declared: dict[str, Any],
    problem: str,
    request_type: str,
    sir: Stubber,
    cfn: Receiver,
    logged: io.StringIO,
) -> None:
    sent = event(request_type, cfn, ResourceProperties=declared, OldResourceProperties=props())
    app.handler(sent, context())
    body = answer(cfn, sent)
    assert body["Status"] == "FAILED"
    assert body["Reason"] == f"Invalid properties: {problem}"
    for text in (json.dumps(body), logged.getvalue()):
        assert MARKER not in text
        assert MARKER.lower() not in text
    assert "invalid properties" in logged.getvalue().lower(), "the failure is logged"


def test_a_pasted_value_appears_nowhere_even_in_the_old_properties(
    sir: Stubber, cfn: Receiver, logged: io.StringIO
) -> None:
    """A rollback (Update) whose OLD properties hold the pasted value: the same."""
    bad = props(MembershipId=f"CISO{MARKER}")
    sent = event("Update", cfn, ResourceProperties=bad, OldResourceProperties=bad)
    app.handler(sent, context())
    body = answer(cfn, sent)
    assert body["Status"] == "FAILED"
    assert MARKER not in json.dumps(body) + logged.getvalue()


@pytest.mark.parametrize("declared", [pytest.param(c.values[0], id=c.id) for c in CASES])
def test_a_delete_with_such_a_value_logs_none_of_it(
    declared: dict[str, Any], sir: Stubber, cfn: Receiver, logged: io.StringIO
) -> None:
    """A Delete with invalid properties retains the membership and succeeds, silently so."""
    sent = event("Delete", cfn, ResourceProperties=declared)
    app.handler(sent, context())
    body = answer(cfn, sent)
    assert body["Status"] == "SUCCESS"
    assert MARKER not in json.dumps(body) + logged.getvalue()
    assert MARKER.lower() not in json.dumps(body) + logged.getvalue()


FIELDS = {
    "MembershipId": lambda v: props(MembershipId=v),
    "MembershipName": lambda v: props(MembershipName=v),
    "Name": lambda v: with_member(Name=v),
    "JobTitle": lambda v: with_member(JobTitle=v),
    "Email": lambda v: with_member(Email=v),
}


@settings(max_examples=200, deadline=None, database=None)
@given(
    field=st.sampled_from(sorted(FIELDS)),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
)
def test_no_invalid_sensitive_value_is_ever_in_the_reason(
    field: str, before: str, after: str
) -> None:
    value = f"{before}{MARKER}{after}"
    reason = None
    try:
        parse_properties(FIELDS[field](value))
    except InvalidProperties as error:
        reason = error.reason
    if reason is None:  # a value the service accepts (a long enough name) is not reported
        assert field != "MembershipId"
    else:
        assert MARKER not in reason
        assert f"({len(value)} characters, not shown)" in reason
