"""Property parsing: every rule of the public contract, and its error message."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import MEMBERSHIP_ID, SECRET_EMAILS, SECRET_NAMES, SECRET_TITLES, ou, props, team

from sir_membership import tasks
from sir_membership.errors import InvalidProperties
from sir_membership.membership import Feature
from sir_membership.properties import parse_bool, parse_properties


def reason(raw: dict[str, Any]) -> str:
    with pytest.raises(InvalidProperties) as info:
        parse_properties(raw)
    return str(info.value)


def test_full_declaration_parses() -> None:
    parsed = parse_properties(props(CoverEntireOrganization="false", OnDelete="Retain"))
    assert parsed.membership_id == MEMBERSHIP_ID
    assert parsed.team is not None
    assert [r.email for r in parsed.team] == list(SECRET_EMAILS[:2])
    assert parsed.features == (Feature("Triage", True),)
    assert parsed.cover_entire_organization is False
    assert parsed.organizational_units == frozenset({ou(1), ou(2)})
    assert parsed.on_delete == "Retain"
    assert parsed.undo_cancellation is False


def test_left_out_properties_are_unmanaged_and_ous_default_empty() -> None:
    parsed = parse_properties({"MembershipId": MEMBERSHIP_ID})
    assert parsed.membership_name is None
    assert parsed.team is None
    assert parsed.features is None
    assert parsed.cover_entire_organization is None
    assert parsed.organizational_units == frozenset()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("FALSE", False), ("True", True)],
)
def test_booleans_accept_cloudformation_strings(value: Any, expected: bool) -> None:
    assert parse_bool(value) is expected
    parsed = parse_properties(props(CoverEntireOrganization=value, OrganizationalUnits=[]))
    assert parsed.cover_entire_organization is expected


@pytest.mark.parametrize("value", ["yes", "1", 1, 0, "", "tru", []])
def test_other_boolean_spellings_are_rejected(value: Any) -> None:
    assert "UndoMembershipCancellation must be true or false" in reason(
        props(UndoMembershipCancellation=value)
    )


def test_unknown_key_is_named_with_suggestion_and_accepted_keys() -> None:
    message = reason(props(MembershipNmae="x"))
    assert "unknown property MembershipNmae (did you mean MembershipName?)" in message
    assert "accepted: MembershipId, MembershipName, IncidentResponseTeam" in message


def test_an_unknown_key_that_is_not_a_name_is_not_shown() -> None:
    """A value pasted as a key (found by tests/test_fuzz.py) may be a responder's email."""
    bad = team(2)
    bad[0][SECRET_EMAILS[2]] = "x"
    message = reason(props(**{SECRET_NAMES[2]: "x"}, IncidentResponseTeam=bad))
    assert "unknown property (not shown); accepted: MembershipId" in message
    assert "unknown property IncidentResponseTeam[0].(not shown); accepted: Name" in message
    assert SECRET_NAMES[2] not in message
    assert SECRET_EMAILS[2] not in message


def test_an_invalid_membership_id_is_never_shown_an_invalid_ou_only_when_it_reads_as_an_id() -> (
    None
):
    """A responder's name or email in MembershipId (parameters swapped) is not shown.

    Nor is an id-shaped one: a membership name such as ``security-ir-prod``
    reads as an id too (tests/test_sensitive.py).
    """
    assert "MembershipId is invalid (5 characters, not shown)" in reason(
        props(MembershipId="m-ABC")
    )
    assert "OrganizationalUnits[0] 'ou-x' is invalid" in reason(props(OrganizationalUnits=["ou-x"]))
    for secret in (SECRET_NAMES[0], SECRET_EMAILS[0]):
        message = reason(props(MembershipId=secret, OrganizationalUnits=[secret]))
        shown = f"({len(secret)} characters, not shown): does not match"
        assert f"MembershipId is invalid {shown} m-" in message
        assert f"OrganizationalUnits[0] is invalid {shown} ou-" in message
        assert secret not in message


def test_cloudformation_keys_are_ignored() -> None:
    parse_properties({"MembershipId": MEMBERSHIP_ID, "ServiceToken": "x", "ServiceTimeout": "9"})


def test_unknown_nested_keys_are_named() -> None:
    bad = team(2)
    bad[1]["Emial"] = "x"
    assert "unknown property IncidentResponseTeam[1].Emial (did you mean Email?)" in reason(
        props(IncidentResponseTeam=bad)
    )
    features = [{"FeatureName": "Triage", "IsEnabled": "true", "Enabled": "true"}]
    assert "unknown property OptInFeatures[0].Enabled" in reason(props(OptInFeatures=features))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"MembershipId": None}, "MembershipId is required"),
        (
            {"MembershipId": "m-ABC"},
            "MembershipId is invalid (5 characters, not shown): fewer than 12 characters; "
            "declare the membership's id",
        ),
        (
            {"MembershipId": "x-abcdef0123"},
            "MembershipId is invalid (12 characters, not shown): does not match m-[a-z0-9]{10,32}",
        ),
        ({"MembershipId": 12}, "MembershipId must be a string"),
        (
            {"MembershipName": "ab"},
            "MembershipName is invalid (2 characters, not shown): fewer than 3 characters; "
            "declare 3 to 50 characters",
        ),
        (
            {"MembershipName": "x" * 51},
            "MembershipName is invalid (51 characters, not shown): more than 50 characters",
        ),
        (
            {"IncidentResponseTeam": team(1)},
            "IncidentResponseTeam must have 2 to 10 entries, not 1",
        ),
        ({"IncidentResponseTeam": "x"}, "IncidentResponseTeam must be a list"),
        ({"IncidentResponseTeam": [1, 2]}, "IncidentResponseTeam[0] must be an object"),
        ({"OptInFeatures": []}, "OptInFeatures must have 1 to 2 entries, not 0"),
        (
            {"OptInFeatures": [{"FeatureName": "Triage", "IsEnabled": "true"}] * 2},
            "OptInFeatures[1].FeatureName Triage is declared twice",
        ),
        (
            {"OptInFeatures": [{"FeatureName": "Nope", "IsEnabled": "true"}]},
            "OptInFeatures[0].FeatureName is invalid (4 characters, not shown): not an accepted "
            "value; declare one of Triage",
        ),
        ({"OptInFeatures": [{"FeatureName": "Triage"}]}, "OptInFeatures[0].IsEnabled is required"),
        ({"OptInFeatures": ["Triage"]}, "OptInFeatures[0] must be an object"),
        ({"OrganizationalUnits": "ou-ab12-00000001"}, "OrganizationalUnits must be a list"),
        ({"OrganizationalUnits": ["ou-x"]}, "OrganizationalUnits[0] 'ou-x' is invalid"),
        (
            {"OrganizationalUnits": [ou(1), ou(1)]},
            f"OrganizationalUnits[1] {ou(1)} is listed twice",
        ),
        (
            {"CoverEntireOrganization": "true"},
            "CoverEntireOrganization is true and OrganizationalUnits is not empty",
        ),
        ({"OnDelete": "Delete"}, "OnDelete must be one of Retain, RemoveOrganizationalUnits"),
    ],
)
def test_invalid_values_name_the_property(overrides: dict[str, Any], expected: str) -> None:
    assert expected in reason(props(**overrides))


def test_responder_rules() -> None:
    members = team(2)
    members[0] = {"Name": "Al", "JobTitle": "", "Email": "not-an-email"}
    message = reason(props(IncidentResponseTeam=members))
    assert (
        "IncidentResponseTeam[0].Name is invalid (2 characters, not shown): fewer than 3 "
        "characters; declare 3 to 50 characters"
    ) in message
    assert (
        "IncidentResponseTeam[0].JobTitle is invalid (0 characters, not shown): fewer than 1 "
        "character; declare 1 to 50 characters"
    ) in message
    assert (
        "IncidentResponseTeam[0].Email is invalid (12 characters, not shown): not an email "
        "address (the service's pattern); declare the responder's email address"
    ) in message
    members = team(2)
    del members[1]["JobTitle"]
    assert "IncidentResponseTeam[1].JobTitle is required" in reason(
        props(IncidentResponseTeam=members)
    )


def test_emails_must_be_unique_ignoring_case() -> None:
    members = team(2)
    members[1]["Email"] = SECRET_EMAILS[0].upper()
    assert "IncidentResponseTeam[1].Email repeats IncidentResponseTeam[0].Email" in reason(
        props(IncidentResponseTeam=members)
    )


def test_communication_preferences_come_from_the_model() -> None:
    members = team(2)
    members[0]["CommunicationPreferences"] = ["Case Created", "Case Closed"]
    parsed = parse_properties(props(IncidentResponseTeam=members))
    assert parsed.team is not None
    assert parsed.team[0].communication_preferences == frozenset({"Case Created", "Case Closed"})
    assert parsed.team[1].communication_preferences is None
    members[0]["CommunicationPreferences"] = ["Carrier Pigeon"]
    # Named by index, not echoed: a value with spaces may be a responder's name.
    message = reason(props(IncidentResponseTeam=members))
    assert (
        "IncidentResponseTeam[0].CommunicationPreferences[0] is invalid (14 characters, not "
        "shown): not an accepted value; declare one of"
    ) in message
    assert "Carrier Pigeon" not in message
    members[0]["CommunicationPreferences"] = ["CaseCreated"]
    assert "CommunicationPreferences[0] 'CaseCreated' is invalid" in (
        reason(props(IncidentResponseTeam=members))
    )


def test_every_problem_is_reported_at_once() -> None:
    message = reason(props(MembershipName="ab", OnDelete="x", Typo=1))
    assert message.startswith("Invalid properties: ")
    assert message.count(";") >= 2


def test_no_properties_at_all() -> None:
    with pytest.raises(InvalidProperties, match="no Properties"):
        parse_properties(None)


def test_reasons_never_echo_sensitive_values() -> None:
    members = team(2)
    members[0]["Email"] = "bad email " + SECRET_NAMES[0]
    members[1]["Name"] = "x"
    message = reason(props(IncidentResponseTeam=members, MembershipName="z" * 60))
    for secret in (*SECRET_NAMES, *SECRET_EMAILS, *SECRET_TITLES, "z" * 60):
        assert secret not in message


def test_repr_hides_sensitive_fields() -> None:
    parsed = parse_properties(props())
    text = repr(parsed)
    for secret in (*SECRET_NAMES[:2], *SECRET_EMAILS[:2], *SECRET_TITLES[:2]):
        assert secret not in text


def test_preferences_of_the_wrong_type_are_named_not_crashed() -> None:
    members = team(2)
    members[0]["CommunicationPreferences"] = [{"x": 1}, ["Case Created"]]
    message = reason(props(IncidentResponseTeam=members))
    assert "IncidentResponseTeam[0].CommunicationPreferences[0] must be a string" in message
    assert "IncidentResponseTeam[0].CommunicationPreferences[1] must be a string" in message
    members[0]["CommunicationPreferences"] = ["Case Created", "Case Created"]
    assert "IncidentResponseTeam[0].CommunicationPreferences has duplicates" in reason(
        props(IncidentResponseTeam=members)
    )


def test_rules_are_the_same_from_a_fresh_loader_and_from_the_clients_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Work task shares its client's parsed model; a fresh loader must give the same rules."""
    from sir_membership import app, service_model  # noqa: PLC0415

    shared = service_model.rules_from(tasks.security_ir().meta.service_model)
    monkeypatch.setattr(service_model, "_SHARED", {})
    fresh = service_model.rules_from(service_model.load_model())
    assert fresh == shared
    assert fresh.ou_batch_size == 5
    with pytest.raises(ValueError, match="expected the security-ir model"):
        service_model.share_model(app.REQUESTS.client.meta.service_model)
