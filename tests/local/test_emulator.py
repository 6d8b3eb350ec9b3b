"""The Security IR emulator, driven over HTTP by an unmodified boto3 client.

These tests pin the emulator's contract (routes, validation, strict OU
semantics, error shapes, faults, records, control API, subprocess mode), so
the end-to-end tests built on it can trust what it answers.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st
from mypy_boto3_security_ir import SecurityIncidentResponseClient
from sirlocal.emulator import (
    EmulatorControl,
    SecurityIREmulator,
    apply_update,
    new_membership,
    service_model,
    validate,
)
from sirlocal.services import start_emulator_process

MID = "m-abcdef123456"
OU1, OU2, OU3 = "ou-abcd-11111111", "ou-abcd-22222222", "ou-abcd-33333333"
SECRET_NAME = "Zebediah Secretname"
SECRET_EMAIL = "zebediah.secret@example.com"
SECRET_TITLE = "Chief Secret Officer"


def make_client(url: str, **config: Any) -> SecurityIncidentResponseClient:
    """A boto3 client with dummy credentials and no retries (so calls can be counted)."""
    options: dict[str, Any] = {"retries": {"total_max_attempts": 1}, **config}
    return boto3.client(
        "security-ir",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**options),
    )


def responder(name: str = "Alice Example", email: str = "alice@example.com") -> dict[str, Any]:
    return {"name": name, "jobTitle": "Responder", "email": email}


@pytest.fixture
def emu() -> Iterator[SecurityIREmulator]:
    with SecurityIREmulator() as emulator:
        emulator.seed(
            {
                "membershipId": MID,
                "membershipAccountsConfigurations": {
                    "coverEntireOrganization": False,
                    "organizationalUnits": [OU1],
                },
            }
        )
        yield emulator


@pytest.fixture
def client(emu: SecurityIREmulator) -> SecurityIncidentResponseClient:
    return make_client(emu.endpoint_url)


@pytest.fixture
def unchecked(emu: SecurityIREmulator) -> SecurityIncidentResponseClient:
    """A client that skips botocore's own parameter validation, to reach the server's."""
    return make_client(emu.endpoint_url, parameter_validation=False)


def raw_request(
    url: str, method: str, path: str, body: bytes | None, signed: bool = True
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """A hand-made request (for what botocore would never send)."""
    request = urllib.request.Request(url + path, data=body, method=method)
    if signed:
        request.add_header("Authorization", "AWS4-HMAC-SHA256 Credential=testing/x")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


# --------------------------------------------------------------------------- round trips


def test_get_membership_returns_the_seeded_membership(
    client: SecurityIncidentResponseClient,
) -> None:
    got = client.get_membership(membershipId=MID)
    assert got["membershipId"] == MID
    assert got["membershipArn"] == f"arn:aws:security-ir:us-east-1:123456789012:membership/{MID}"
    assert got["membershipStatus"] == "Active"
    assert got["customerType"] == "Organization"
    assert got["membershipAccountsConfigurations"] == {
        "coverEntireOrganization": False,
        "organizationalUnits": [OU1],
    }
    assert len(got["incidentResponseTeam"]) == 2
    assert got["optInFeatures"] == [{"featureName": "Triage", "isEnabled": True}]


def test_env_var_endpoint_reaches_the_emulator(
    emu: SecurityIREmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECURITY_IR", emu.endpoint_url)
    plain = boto3.client(
        "security-ir", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    assert plain.get_membership(membershipId=MID)["membershipId"] == MID


def test_update_round_trip_applies_every_field(
    client: SecurityIncidentResponseClient, emu: SecurityIREmulator
) -> None:
    team = [responder(), responder("Bob Example", "bob@example.com")]
    team[0]["communicationPreferences"] = ["Case Created"]
    client.update_membership(
        membershipId=MID,
        membershipName="renamed",
        incidentResponseTeam=team,  # type: ignore[arg-type]
        optInFeatures=[{"featureName": "Triage", "isEnabled": False}],
        membershipAccountsConfigurationsUpdate={
            "coverEntireOrganization": True,
            "organizationalUnitsToAdd": [OU2, OU3],
            "organizationalUnitsToRemove": [OU1],
        },
    )
    got = client.get_membership(membershipId=MID)
    assert got["membershipName"] == "renamed"
    assert got["incidentResponseTeam"] == team
    assert got["optInFeatures"] == [{"featureName": "Triage", "isEnabled": False}]
    assert got["membershipAccountsConfigurations"] == {
        "coverEntireOrganization": True,
        "organizationalUnits": [OU2, OU3],
    }
    assert emu.state(MID)["membershipName"] == "renamed"


def test_list_memberships_paginates(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.seed({"membershipId": "m-zzzzzzzzzz99"})
    first = client.list_memberships(maxResults=1)
    assert [i["membershipId"] for i in first["items"]] == [MID]
    assert set(first["items"][0]) == {
        "membershipId",
        "accountId",
        "region",
        "membershipArn",
        "membershipStatus",
    }
    second = client.list_memberships(maxResults=1, nextToken=first["nextToken"])
    assert [i["membershipId"] for i in second["items"]] == ["m-zzzzzzzzzz99"]
    assert "nextToken" not in second
    with pytest.raises(client.exceptions.InvalidTokenException):
        client.list_memberships(nextToken="forged")


def test_routes_come_from_the_model() -> None:
    http = service_model().operation_model("UpdateMembership").http
    assert (http["method"], http["requestUri"]) == (
        "PUT",
        "/v1/membership/{membershipId}/update-membership",
    )


# --------------------------------------------------------------------------- validation


def _field_names(error: botocore.exceptions.ClientError) -> list[str]:
    assert error.response["Error"]["Code"] == "ValidationException"
    assert error.response["reason"] == "FIELD_VALIDATION_FAILED"  # type: ignore[typeddict-item]
    return [f["name"] for f in error.response["fieldList"]]  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"membershipName": "x" * 51}, "membershipName"),
        ({"membershipName": "xy"}, "membershipName"),
        (
            {"incidentResponseTeam": [responder(), responder(email="not-an-email")]},
            "incidentResponseTeam[1].email",
        ),
        ({"incidentResponseTeam": [responder()]}, "incidentResponseTeam"),
        ({"incidentResponseTeam": [responder()] * 11}, "incidentResponseTeam"),
        (
            {"incidentResponseTeam": [responder(), {"name": "Bob Example", "jobTitle": "x"}]},
            "incidentResponseTeam[1].email",
        ),
        (
            {
                "incidentResponseTeam": [
                    responder(),
                    {**responder(), "communicationPreferences": ["Nope"]},
                ]
            },
            "incidentResponseTeam[1].communicationPreferences[0]",
        ),
        (
            {"optInFeatures": [{"featureName": "Nope", "isEnabled": True}]},
            "optInFeatures[0].featureName",
        ),
        ({"optInFeatures": [{"featureName": "Triage"}]}, "optInFeatures[0].isEnabled"),
        (
            {"membershipAccountsConfigurationsUpdate": {"organizationalUnitsToAdd": ["ou-bad"]}},
            "membershipAccountsConfigurationsUpdate.organizationalUnitsToAdd[0]",
        ),
        (
            {
                "membershipAccountsConfigurationsUpdate": {
                    "organizationalUnitsToAdd": [f"ou-abcd-{i:08d}" for i in range(6)]
                }
            },
            "membershipAccountsConfigurationsUpdate.organizationalUnitsToAdd",
        ),
        (
            {"membershipAccountsConfigurationsUpdate": {"organizationalUnitsToRemove": []}},
            "membershipAccountsConfigurationsUpdate.organizationalUnitsToRemove",
        ),
        (
            {"membershipAccountsConfigurationsUpdate": {"coverEntireOrganization": "yes"}},
            "membershipAccountsConfigurationsUpdate.coverEntireOrganization",
        ),
    ],
)
def test_update_validation_rules(
    unchecked: SecurityIncidentResponseClient,
    emu: SecurityIREmulator,
    kwargs: dict[str, Any],
    field: str,
) -> None:
    before = emu.state(MID)
    with pytest.raises(unchecked.exceptions.ValidationException) as caught:
        unchecked.update_membership(membershipId=MID, **kwargs)
    assert field in _field_names(caught.value)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert emu.state(MID) == before


def test_uri_member_pattern_is_checked(client: SecurityIncidentResponseClient) -> None:
    with pytest.raises(client.exceptions.ValidationException) as caught:
        client.get_membership(membershipId="m-ABCDEFGHIJKL")  # botocore only checks min length
    assert _field_names(caught.value) == ["membershipId"]


def test_pattern_must_match_in_full(client: SecurityIncidentResponseClient) -> None:
    with pytest.raises(client.exceptions.ValidationException):
        client.get_membership(membershipId="xm-abcdef123456")


def test_unknown_member_and_required_member(emu: SecurityIREmulator) -> None:
    status, headers, body = raw_request(
        emu.endpoint_url, "PUT", f"/v1/membership/{MID}/update-membership", b'{"bogus": 1}'
    )
    assert (status, headers["x-amzn-ErrorType"]) == (400, "ValidationException")
    assert body["fieldList"] == [
        {"name": "bogus", "message": "Member is not part of UpdateMembershipRequest"}
    ]
    status, _, body = raw_request(
        emu.endpoint_url,
        "PUT",
        f"/v1/membership/{MID}/update-membership",
        b'{"membershipId": "m-abcdef123456"}',
    )
    assert status == 400
    assert body["fieldList"][0]["name"] == "membershipId"


def test_unparsable_body_is_cannot_parse(emu: SecurityIREmulator) -> None:
    status, _, body = raw_request(
        emu.endpoint_url, "PUT", f"/v1/membership/{MID}/update-membership", b"{nope"
    )
    assert status == 400
    assert body["reason"] == "CANNOT_PARSE"


def test_validation_messages_never_echo_sensitive_values(
    unchecked: SecurityIncidentResponseClient, emu: SecurityIREmulator
) -> None:
    long_name = SECRET_NAME * 5
    team = [
        {"name": long_name, "jobTitle": SECRET_TITLE * 5, "email": SECRET_EMAIL + "!!"},
        responder(),
    ]
    with pytest.raises(unchecked.exceptions.ValidationException) as caught:
        unchecked.update_membership(
            membershipId=MID, membershipName=long_name, incidentResponseTeam=team
        )  # type: ignore[arg-type]
    text = json.dumps(caught.value.response, default=str)
    for secret in (SECRET_NAME, SECRET_EMAIL, SECRET_TITLE):
        assert secret not in text
    assert len(_field_names(caught.value)) == 4


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=60))
def test_membership_name_length_matches_the_model(name: str) -> None:
    shape = service_model().operation_model("UpdateMembership").input_shape
    assert shape is not None
    problems = validate(shape, {"membershipId": MID, "membershipName": name})
    assert bool(problems) == (not 3 <= len(name) <= 50)


def test_unsigned_requests_are_denied(emu: SecurityIREmulator) -> None:
    status, headers, _ = raw_request(
        emu.endpoint_url, "GET", f"/v1/membership/{MID}", None, signed=False
    )
    assert (status, headers["x-amzn-ErrorType"]) == (403, "AccessDeniedException")


def test_unknown_route_and_unemulated_operation(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    status, headers, _ = raw_request(emu.endpoint_url, "GET", "/v2/nothing", None)
    assert (status, headers["x-amzn-ErrorType"]) == (404, "UnknownOperationException")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.cancel_membership(membershipId=MID)
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"


# --------------------------------------------------------------------------- update semantics


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"organizationalUnitsToAdd": [OU1]}, "organizationalUnitsToAdd[0]"),
        ({"organizationalUnitsToRemove": [OU2]}, "organizationalUnitsToRemove[0]"),
        (
            {"organizationalUnitsToAdd": [OU2], "organizationalUnitsToRemove": [OU2]},
            "organizationalUnitsToAdd[0]",
        ),
        ({"organizationalUnitsToAdd": [OU2, OU2]}, "organizationalUnitsToAdd[1]"),
    ],
)
def test_strict_ou_changes_are_atomic(
    client: SecurityIncidentResponseClient,
    emu: SecurityIREmulator,
    change: dict[str, Any],
    field: str,
) -> None:
    before = emu.state(MID)
    with pytest.raises(client.exceptions.ValidationException) as caught:
        client.update_membership(
            membershipId=MID,
            membershipName="must-not-apply",
            membershipAccountsConfigurationsUpdate=change,
        )  # type: ignore[arg-type]
    assert _field_names(caught.value) == [f"membershipAccountsConfigurationsUpdate.{field}"]
    assert emu.state(MID) == before


def test_opt_in_features_merge_by_name() -> None:
    current = new_membership(
        {"membershipId": MID, "optInFeatures": [{"featureName": "Triage", "isEnabled": True}]}
    )
    updated, ous_changed = apply_update(
        current, {"optInFeatures": [{"featureName": "Triage", "isEnabled": False}]}
    )
    assert updated["optInFeatures"] == [{"featureName": "Triage", "isEnabled": False}]
    assert not ous_changed
    assert current["optInFeatures"][0]["isEnabled"] is True  # pure: input untouched


def test_undo_cancellation(emu: SecurityIREmulator, client: SecurityIncidentResponseClient) -> None:
    emu.seed({"membershipId": "m-cancelled0001", "membershipStatus": "Cancelled"})
    with pytest.raises(client.exceptions.ValidationException):
        client.update_membership(membershipId="m-cancelled0001", undoMembershipCancellation=False)
    client.update_membership(membershipId="m-cancelled0001", undoMembershipCancellation=True)
    got = client.get_membership(membershipId="m-cancelled0001")
    assert got["membershipStatus"] == "Active"
    assert "membershipDeactivationTimestamp" not in got
    with pytest.raises(client.exceptions.ValidationException) as caught:
        client.update_membership(membershipId="m-cancelled0001", undoMembershipCancellation=True)
    assert _field_names(caught.value) == ["undoMembershipCancellation"]


def test_terminated_and_unknown_memberships(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.seed({"membershipId": "m-terminated01", "membershipStatus": "Terminated"})
    with pytest.raises(client.exceptions.ValidationException):
        client.update_membership(membershipId="m-terminated01", membershipName="new-name")
    assert emu.state("m-terminated01")["membershipName"] == "emulated-membership"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.update_membership(membershipId="m-unknown00001", membershipName="new-name")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_membership(membershipId="m-unknown00001")


def test_bad_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="membershipStatus"):
        new_membership({"membershipStatus": "Paused"})


# --------------------------------------------------------------------------- error shapes


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ValidationException", 400),
        ("ResourceNotFoundException", 404),
        ("ConflictException", 409),
        ("ThrottlingException", 429),
        ("InternalServerException", 500),
        ("AccessDeniedException", 403),
        ("SecurityIncidentResponseNotActiveException", 400),
        ("ServiceQuotaExceededException", 402),
        ("InvalidTokenException", 423),
    ],
)
def test_each_error_shape_raises_its_exception_class(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient, code: str, status: int
) -> None:
    emu.fail("GetMembership", error=code)
    with pytest.raises(getattr(client.exceptions, code)) as caught:
        client.get_membership(membershipId=MID)
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    shape = service_model().shape_for(code)
    for member in shape.required_members:
        key = "Message" if member == "message" else member
        assert key in response or key in response["Error"]
    if code == "ConflictException":
        assert (response["resourceId"], response["resourceType"]) == (MID, "membership")  # type: ignore[typeddict-item]


# --------------------------------------------------------------------------- faults


def test_latency_is_added_to_every_call(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.set_latency(0.05)
    started = time.monotonic()
    client.get_membership(membershipId=MID)
    assert time.monotonic() - started >= 0.05
    emu.set_latency(0)


def test_throttle_next_n_calls_then_recover(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.throttle("UpdateMembership", times=2)
    for _ in range(2):
        with pytest.raises(client.exceptions.ThrottlingException):
            client.update_membership(membershipId=MID, membershipName="after-throttle")
    client.get_membership(membershipId=MID)  # other operations are not throttled
    client.update_membership(membershipId=MID, membershipName="after-throttle")
    assert [c.faults for c in emu.calls("UpdateMembership")] == [
        ["error:ThrottlingException"]
    ] * 2 + [[]]
    assert emu.faults()["rules"][0]["fired"] == 2


def test_standard_retries_ride_out_a_throttle(emu: SecurityIREmulator) -> None:
    emu.throttle("GetMembership", times=1)
    retrying = make_client(emu.endpoint_url, retries={"mode": "standard", "total_max_attempts": 3})
    got = retrying.get_membership(membershipId=MID)
    assert got["ResponseMetadata"]["RetryAttempts"] == 1
    assert len(emu.calls("GetMembership")) == 2


def test_5xx_on_the_kth_call(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.fail("GetMembership", on_call=3)
    client.get_membership(membershipId=MID)
    client.get_membership(membershipId=MID)
    with pytest.raises(client.exceptions.InternalServerException):
        client.get_membership(membershipId=MID)
    client.get_membership(membershipId=MID)
    assert [c.status for c in emu.calls()] == [200, 200, 500, 200]


def test_connection_reset_on_the_kth_call(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.reset_connection("UpdateMembership", on_call=2)
    client.update_membership(membershipId=MID, membershipName="first-call")
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        client.update_membership(membershipId=MID, membershipName="second-call")
    assert emu.state(MID)["membershipName"] == "first-call"  # dropped before it was applied
    record = emu.calls("UpdateMembership")[-1]
    assert (record.status, record.faults, record.request["membershipName"]) == (
        None,
        ["reset"],
        "second-call",
    )


def test_hang_on_the_kth_call(emu: SecurityIREmulator) -> None:
    impatient = make_client(emu.endpoint_url, read_timeout=0.2, connect_timeout=1)
    emu.hang("GetMembership", 0.4, on_call=1)
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        impatient.get_membership(membershipId=MID)
    emu.hang("GetMembership", 0.1)
    started = time.monotonic()
    impatient.get_membership(membershipId=MID)
    assert time.monotonic() - started >= 0.1


def test_access_denied_for_one_operation(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.deny("UpdateMembership")
    for _ in range(3):
        with pytest.raises(client.exceptions.AccessDeniedException):
            client.update_membership(membershipId=MID, membershipName="denied")
    assert client.get_membership(membershipId=MID)["membershipName"] == "emulated-membership"
    emu.clear_faults()
    client.update_membership(membershipId=MID, membershipName="allowed")


def test_propagation_conflicts_for_n_calls(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.set_propagation(calls=2)
    client.update_membership(membershipId=MID, membershipName="no-ou-change")  # opens no window
    client.update_membership(
        membershipId=MID, membershipAccountsConfigurationsUpdate={"organizationalUnitsToAdd": [OU2]}
    )
    got = client.get_membership(membershipId=MID)
    assert got["membershipAccountsConfigurations"]["organizationalUnits"] == [OU1, OU2]
    for _ in range(2):
        with pytest.raises(client.exceptions.ConflictException) as caught:
            client.update_membership(membershipId=MID, membershipName="during-propagation")
        assert caught.value.response["resourceId"] == MID  # type: ignore[typeddict-item]
    client.update_membership(membershipId=MID, membershipName="after-propagation")
    faults = [c.faults for c in emu.calls("UpdateMembership")]
    assert faults == [[], [], ["propagation"], ["propagation"], []]


def test_propagation_conflicts_for_t_seconds(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.set_propagation(seconds=0.3)
    client.update_membership(
        membershipId=MID,
        membershipAccountsConfigurationsUpdate={"organizationalUnitsToRemove": [OU1]},
    )
    with pytest.raises(client.exceptions.ConflictException):
        client.update_membership(membershipId=MID, membershipName="too-soon")
    time.sleep(0.35)
    client.update_membership(membershipId=MID, membershipName="later")


def test_invalid_fault_is_refused(emu: SecurityIREmulator) -> None:
    with pytest.raises(ValueError, match="not an error shape"):
        emu.fail("GetMembership", error="NoSuchError")
    with pytest.raises(ValueError, match="unknown operation"):
        emu.throttle("GetMembershp")


# --------------------------------------------------------------------------- records


def test_calls_are_recorded(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    client.get_membership(membershipId=MID)
    with pytest.raises(client.exceptions.ValidationException):
        client.update_membership(
            membershipId=MID,
            membershipAccountsConfigurationsUpdate={"organizationalUnitsToAdd": [OU1]},
        )
    get, update = emu.calls()
    assert (get.operation, get.membership_id, get.status, get.error) == (
        "GetMembership",
        MID,
        200,
        None,
    )
    assert update.request == {
        "membershipId": MID,
        "membershipAccountsConfigurationsUpdate": {"organizationalUnitsToAdd": [OU1]},
    }
    assert (update.status, update.error) == (400, "ValidationException")
    assert get.timestamp <= update.timestamp
    assert emu.calls("UpdateMembership") == [update]
    emu.reset_calls()
    assert emu.calls() == []


def test_concurrent_calls_are_all_recorded(emu: SecurityIREmulator) -> None:
    def worker() -> None:
        local = make_client(emu.endpoint_url)
        for _ in range(5):
            local.get_membership(membershipId=MID)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(emu.calls("GetMembership")) == 30


# --------------------------------------------------------------------------- control API and process mode


def test_control_api_drives_the_emulator(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    control = EmulatorControl(emu.endpoint_url)
    assert control.health()
    seeded = control.seed({"membershipId": "m-controlled01", "membershipName": "via-control"})
    assert seeded["membershipArn"].endswith("/m-controlled01")
    assert control.state("m-controlled01")["membershipName"] == "via-control"
    assert set(control.memberships()) == {MID, "m-controlled01"}
    control.throttle("GetMembership")
    control.set_latency(0.01)
    control.set_propagation(calls=1)
    with pytest.raises(client.exceptions.ThrottlingException):
        client.get_membership(membershipId=MID)
    faults = control.faults()
    assert (faults["latency"], faults["propagation"]["calls"], faults["rules"][0]["fired"]) == (
        0.01,
        1,
        1,
    )
    assert [c.faults for c in control.calls("GetMembership")] == [["error:ThrottlingException"]]
    control.reset_calls()
    assert control.calls() == []
    control.clear_faults()
    assert control.faults()["rules"] == []
    control.reset()
    assert control.memberships() == {}
    with pytest.raises(RuntimeError, match="404"):
        control.state("m-controlled01")


def test_subprocess_mode(tmp_path: Any) -> None:
    with start_emulator_process(
        seed=[{"membershipId": MID, "membershipName": "from-seed-file"}]
    ) as process:
        assert process.info["url"] == f"http://127.0.0.1:{process.info['port']}"
        remote = make_client(process.info["url"])
        assert remote.get_membership(membershipId=MID)["membershipName"] == "from-seed-file"
        control = EmulatorControl(process.info["url"])
        control.fail("GetMembership", error="InternalServerException")
        with pytest.raises(remote.exceptions.InternalServerException):
            remote.get_membership(membershipId=MID)
        assert [c.status for c in control.calls()] == [200, 500]
    assert process.poll() is not None
