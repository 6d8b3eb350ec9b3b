"""The emulator's propagation models, driven through an unmodified boto3 client.

Why: the real service's behaviour while an account change propagates is not
documented, so the provider is tested under each model; these tests pin what
each model answers (exact refusals, their timing, what GetMembership shows).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from mypy_boto3_security_ir import SecurityIncidentResponseClient
from sirlocal.emulator import EmulatorControl, SecurityIREmulator

MID = "m-abcdef123456"
OU1, OU2 = "ou-abcd-11111111", "ou-abcd-22222222"
P = 0.3


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
    """A boto3 client with dummy credentials and no retries (so calls can be counted)."""
    return boto3.client(
        "security-ir",
        endpoint_url=emu.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def add_ou2(client: SecurityIncidentResponseClient) -> None:
    client.update_membership(
        membershipId=MID, membershipAccountsConfigurationsUpdate={"organizationalUnitsToAdd": [OU2]}
    )


def shown_ous(client: SecurityIncidentResponseClient) -> list[str]:
    got = client.get_membership(membershipId=MID)
    return list(got["membershipAccountsConfigurations"]["organizationalUnits"])


def refused(client: SecurityIncidentResponseClient) -> dict[str, Any]:
    """The error response of an UpdateMembership that must be refused with Conflict."""
    with pytest.raises(client.exceptions.ConflictException) as caught:
        client.update_membership(membershipId=MID, membershipName="too-soon")
    return dict(caught.value.response)


def test_model_none_refuses_nothing(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.set_propagation_model("conflict", P)
    emu.set_propagation_model("none")
    add_ou2(client)
    client.update_membership(membershipId=MID, membershipName="at-once")
    assert shown_ous(client) == [OU1, OU2]
    assert emu.faults()["propagation"] is None
    assert [c.faults for c in emu.calls()] == [[], [], []]


def test_model_conflict_refuses_for_p_seconds_and_shows_the_change_at_once(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.set_propagation_model("conflict", P)
    started = time.monotonic()
    add_ou2(client)
    assert shown_ous(client) == [OU1, OU2]
    response = refused(client)
    assert time.monotonic() - started < P  # still inside the window
    assert "retryAfterSeconds" not in response
    assert "retry-after" not in response["ResponseMetadata"]["HTTPHeaders"]
    time.sleep(P + 0.05)
    client.update_membership(membershipId=MID, membershipName="later")
    assert emu.state(MID)["membershipName"] == "later"
    labels = [(c.operation, c.error, c.faults) for c in emu.calls()]
    assert labels == [
        ("UpdateMembership", None, []),
        ("GetMembership", None, []),
        ("UpdateMembership", "ConflictException", ["propagation"]),
        ("UpdateMembership", None, []),
    ]


def test_model_conflict_with_retry_after_sends_the_header(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.set_propagation_model("conflict", P, retry_after=True)
    add_ou2(client)
    response = refused(client)
    # ConflictException has no retryAfterSeconds member: a bare HTTP header, whole seconds.
    assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
    assert "retryAfterSeconds" not in response


def test_model_conflict_as_throttling_carries_the_modelled_retry_after(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.set_propagation_model("conflict", 2.5, retry_after=True, error="ThrottlingException")
    add_ou2(client)
    with pytest.raises(client.exceptions.ThrottlingException) as caught:
        client.update_membership(membershipId=MID, membershipName="too-soon")
    assert caught.value.response["retryAfterSeconds"] == 3  # type: ignore[typeddict-item]


def test_model_conflict_stale_reads_shows_the_old_ous_until_p_elapses(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.set_propagation_model("conflict-stale-reads", P)
    add_ou2(client)
    assert emu.state(MID)["membershipAccountsConfigurations"]["organizationalUnits"] == [OU1, OU2]
    assert shown_ous(client) == [OU1]  # applied, not yet visible
    refused(client)
    time.sleep(P + 0.05)
    assert shown_ous(client) == [OU1, OU2]
    client.update_membership(membershipId=MID, membershipName="later")
    gets = [c.faults for c in emu.calls("GetMembership")]
    assert gets == [["stale-read"], []]


def test_a_coverage_change_opens_a_window_and_a_name_change_does_not(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.set_propagation_model("conflict-stale-reads", P)
    client.update_membership(membershipId=MID, membershipName="no-window")
    client.update_membership(
        membershipId=MID, membershipAccountsConfigurationsUpdate={"coverEntireOrganization": True}
    )
    got = client.get_membership(membershipId=MID)
    assert got["membershipAccountsConfigurations"]["coverEntireOrganization"] is False
    refused(client)


def test_control_api_sets_each_model(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    control = EmulatorControl(emu.endpoint_url)
    control.set_propagation_model("conflict-stale-reads", P, retry_after=True)
    propagation = emu.faults()["propagation"]
    assert propagation == {
        "calls": None,
        "until": P,
        "retry_after": True,
        "stale_reads": True,
        "error": "ConflictException",
        "refuse": True,
        "model": "conflict-stale-reads",
    }
    add_ou2(client)
    assert shown_ous(client) == [OU1]
    assert refused(client)["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
    control.set_propagation_model("conflict", P)
    assert control.faults()["propagation"]["model"] == "conflict"
    control.set_propagation_model("none")
    assert control.faults()["propagation"] is None
    client.update_membership(membershipId=MID, membershipName="free-again")


def test_model_stale_reads_refuses_nothing_and_shows_the_old_ous_until_p_elapses(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.set_propagation_model("stale-reads", P)
    add_ou2(client)
    client.update_membership(membershipId=MID, membershipName="not-refused")
    assert shown_ous(client) == [OU1]
    time.sleep(P + 0.05)
    assert shown_ous(client) == [OU1, OU2]
    assert emu.faults()["propagation"]["model"] == "stale-reads"


def test_a_lost_answer_is_applied_then_answered_5xx(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.lose_answer("UpdateMembership")
    with pytest.raises(client.exceptions.InternalServerException):
        add_ou2(client)
    assert emu.state(MID)["membershipAccountsConfigurations"]["organizationalUnits"] == [OU1, OU2]
    record = emu.calls("UpdateMembership")[-1]
    assert (record.status, record.faults) == (500, ["applied-then-error:InternalServerException"])


def test_a_blocked_call_is_held_until_the_faults_are_cleared_then_never_applied(
    emu: SecurityIREmulator, client: SecurityIncidentResponseClient
) -> None:
    emu.block("UpdateMembership")
    failures: list[Exception] = []

    def call() -> None:
        try:
            add_ou2(client)
        except Exception as error:  # the dropped call's error is the result
            failures.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)
    assert caller.is_alive()  # held, unanswered (recorded when it arrived)
    assert [(c.operation, c.status, c.faults) for c in emu.calls()] == [
        ("UpdateMembership", None, ["block"])
    ]
    emu.clear_faults()
    caller.join(timeout=5)
    assert [type(e).__name__ for e in failures] == ["ConnectionClosedError"]
    assert shown_ous(client) == [OU1]
    assert [(c.operation, c.status, c.faults) for c in emu.calls()] == [
        ("UpdateMembership", None, ["block"]),
        ("GetMembership", 200, []),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sometimes", 1.0), "propagation model must be one of"),
        (("conflict", 0.0), "needs seconds > 0"),
    ],
)
def test_bad_model_settings_are_refused(
    emu: SecurityIREmulator, args: tuple[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        emu.set_propagation_model(*args)
    with pytest.raises(ValueError, match="propagation error must be one of"):
        emu.set_propagation(seconds=1.0, error="InternalServerException")
