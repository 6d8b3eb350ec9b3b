"""The planner: fewest calls, OU batching, convergence (checked with hypothesis)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import MEMBERSHIP_ID, get_membership, ou, props, team
from hypothesis import given, settings
from hypothesis import strategies as st

from sir_membership.errors import MembershipNotUpdatable
from sir_membership.membership import Feature, MembershipState, Responder, state_from_api
from sir_membership.plan import (
    MASK,
    Plan,
    UpdateRequest,
    apply_request,
    plan_changes,
    plan_delete,
    same_team,
)
from sir_membership.properties import MembershipProperties, parse_properties

OUS = [ou(i) for i in range(40)]
ous = st.frozensets(st.sampled_from(OUS))
TEAM_A = (Responder("Ann Aaa", "Lead", "ann@example.com"), Responder("Ben Bbb", "Eng", "b@x.io"))
TEAM_B = (Responder("Cid Ccc", "Lead", "cid@example.com"), Responder("Ben Bbb", "Eng", "b@x.io"))


def ceil5(n: int) -> int:
    return -(-n // 5)


def bound(adds: int, removes: int, other_fields: bool) -> int:
    if adds or removes:
        return max(ceil5(adds), ceil5(removes))
    return 1 if other_fields else 0


def run(state: MembershipState, plan: Plan) -> MembershipState:
    for request in plan.requests:
        state = apply_request(state, request)
    return state


def state(**kw: object) -> MembershipState:
    return replace(state_from_api(get_membership()), **kw)  # type: ignore[arg-type]


desired_fields = st.fixed_dictionaries(
    {
        "membership_name": st.sampled_from([None, "Name One", "Name Two"]),
        "team": st.sampled_from([None, TEAM_A, TEAM_B]),
        "features": st.sampled_from(
            [None, (Feature("Triage", True),), (Feature("Triage", False),)]
        ),
        "cover_entire_organization": st.sampled_from([None, True, False]),
    }
)
actual_fields = st.fixed_dictionaries(
    {
        "name": st.sampled_from([None, "Name One", "Name Two"]),
        "team": st.sampled_from([(), TEAM_A, TEAM_B]),
        "features": st.sampled_from([(), (Feature("Triage", True),), (Feature("Triage", False),)]),
        "cover_entire_organization": st.booleans(),
    }
)


@settings(max_examples=400, deadline=None)
@given(old=ous, new=ous, actual=ous, fields=desired_fields, have=actual_fields)
def test_update_converges_with_the_fewest_calls(
    old: frozenset[str],
    new: frozenset[str],
    actual: frozenset[str],
    fields: dict[str, object],
    have: dict[str, object],
) -> None:
    if fields["cover_entire_organization"] and new:
        fields = {**fields, "cover_entire_organization": False}
    desired = MembershipProperties(MEMBERSHIP_ID, organizational_units=new, **fields)  # type: ignore[arg-type]
    start = MembershipState(MEMBERSHIP_ID, organizational_units=actual, **have)  # type: ignore[arg-type]
    plan = plan_changes(desired, start, old)

    adds, removes = new - actual, (old - new) & actual
    first = plan.requests[0].to_api() if plan.requests else {}
    other = any(k not in ("membershipId", "membershipAccountsConfigurationsUpdate") for k in first)
    other = other or "coverEntireOrganization" in first.get(
        "membershipAccountsConfigurationsUpdate", {}
    )
    assert len(plan.requests) == bound(len(adds), len(removes), other)
    assert set(plan.ous_to_add) == adds
    assert set(plan.ous_to_remove) == removes

    for i, request in enumerate(plan.requests):
        api = request.to_api()
        accounts = api.get("membershipAccountsConfigurationsUpdate", {})
        for key in ("organizationalUnitsToAdd", "organizationalUnitsToRemove"):
            if key in accounts:
                assert 1 <= len(accounts[key]) <= 5
        if i > 0:  # other fields ride in the first call only
            assert set(api) <= {"membershipId", "membershipAccountsConfigurationsUpdate"}
            assert "coverEntireOrganization" not in accounts
        assert len(api) > 1 or accounts, "no call may be empty"

    final = run(start, plan)
    assert final.organizational_units == new | (actual - (old - new))
    assert plan_changes(desired, final, old).empty, "a second run must find nothing to do"
    # Every declared field now holds the declared value; undeclared ones are untouched.
    assert final.name == (
        desired.membership_name if desired.membership_name is not None else start.name
    )
    expected_team = desired.team if desired.team is not None else start.team
    assert {(r.key, r.name, r.job_title) for r in final.team} == {
        (r.key, r.name, r.job_title) for r in expected_team
    }
    for feature in desired.features or ():
        assert final.feature_map()[feature.name] is feature.enabled
    expected_cover = desired.cover_entire_organization
    assert final.cover_entire_organization is (
        expected_cover if expected_cover is not None else start.cover_entire_organization
    )


@settings(max_examples=300, deadline=None)
@given(old=ous, new=ous, actual=ous, cut=st.integers(min_value=0, max_value=20))
def test_rollback_after_partial_failure_restores_the_old_declaration(
    old: frozenset[str], new: frozenset[str], actual: frozenset[str], cut: int
) -> None:
    """Update old->new fails after ``cut`` calls; CloudFormation then sends new->old."""
    start = MembershipState(MEMBERSHIP_ID, organizational_units=actual)
    forward = plan_changes(
        MembershipProperties(MEMBERSHIP_ID, organizational_units=new), start, old
    )
    partial = run(start, replace(forward, requests=forward.requests[:cut]))
    back = MembershipProperties(MEMBERSHIP_ID, organizational_units=old)
    final = run(partial, plan_changes(back, partial, new))
    assert old <= final.organizational_units
    assert not final.organizational_units & (new - old)
    assert final.organizational_units - old <= actual, "nothing invented"
    assert (actual - old - new) <= final.organizational_units, "outside OUs are untouched"


@pytest.mark.parametrize(
    ("adds", "removes", "calls"),
    [(0, 0, 0), (1, 0, 1), (5, 0, 1), (6, 0, 2), (12, 7, 3), (0, 11, 3), (100, 0, 20), (5, 5, 1)],
)
def test_ou_batches(adds: int, removes: int, calls: int) -> None:
    current = frozenset(OUS[:removes])
    desired = MembershipProperties(
        MEMBERSHIP_ID, organizational_units=frozenset(ou(1000 + i) for i in range(adds))
    )
    plan = plan_changes(
        desired, MembershipState(MEMBERSHIP_ID, organizational_units=current), current
    )
    assert len(plan.requests) == calls
    assert sum(len(r.ous_to_add) for r in plan.requests) == adds
    assert sum(len(r.ous_to_remove) for r in plan.requests) == removes


def test_create_never_removes_and_adds_only_what_is_missing() -> None:
    desired = parse_properties(props(OrganizationalUnits=[ou(1), ou(3)]))
    plan = plan_changes(desired, state_from_api(get_membership()))
    assert [r.to_api() for r in plan.requests] == [
        {
            "membershipId": MEMBERSHIP_ID,
            "membershipAccountsConfigurationsUpdate": {"organizationalUnitsToAdd": [ou(3)]},
        }
    ]


def test_nothing_differs_means_no_call() -> None:
    plan = plan_changes(parse_properties(props()), state_from_api(get_membership()), frozenset())
    assert plan.empty
    assert plan.changes == ()


def test_only_changed_fields_are_sent_in_one_call() -> None:
    desired = parse_properties(props(MembershipName="A New Name"))
    plan = plan_changes(desired, state_from_api(get_membership()), desired.organizational_units)
    assert [r.to_api() for r in plan.requests] == [
        {"membershipId": MEMBERSHIP_ID, "membershipName": "A New Name"}
    ]
    assert [c.property for c in plan.changes] == ["MembershipName"]


def test_fields_ride_in_the_first_of_several_calls() -> None:
    new = [ou(i) for i in range(1, 13)]
    desired = parse_properties(
        props(MembershipName="A New Name", OrganizationalUnits=new, IncidentResponseTeam=team(3))
    )
    plan = plan_changes(desired, state_from_api(get_membership()), frozenset({ou(1), ou(2)}))
    apis = [r.to_api() for r in plan.requests]
    assert len(apis) == 2
    assert set(apis[0]) == {
        "membershipId",
        "membershipName",
        "incidentResponseTeam",
        "membershipAccountsConfigurationsUpdate",
    }
    assert apis[0]["membershipAccountsConfigurationsUpdate"]["organizationalUnitsToAdd"] == new[2:7]
    assert apis[1] == {
        "membershipId": MEMBERSHIP_ID,
        "membershipAccountsConfigurationsUpdate": {"organizationalUnitsToAdd": new[7:]},
    }


def test_team_comparison_is_by_email_ignoring_case_and_order() -> None:
    flipped = tuple(replace(r, email=r.email.upper()) for r in reversed(TEAM_A))
    assert same_team(TEAM_A, flipped)
    assert not same_team(TEAM_A, TEAM_B)
    assert not same_team(TEAM_A, TEAM_A[:1])
    with_prefs = (
        replace(TEAM_A[0], communication_preferences=frozenset({"Case Created"})),
        TEAM_A[1],
    )
    assert same_team(TEAM_A, with_prefs), "undeclared preferences are not managed"
    assert not same_team(with_prefs, TEAM_A)


def test_team_update_keeps_preferences_that_are_not_declared() -> None:
    """UpdateMembership replaces the team: undeclared preferences are carried over."""
    kept = frozenset({"Case Closed"})
    actual = state(team=(replace(TEAM_A[0], communication_preferences=kept), TEAM_A[1]))
    renamed = (replace(TEAM_A[0], job_title="Chief"), TEAM_A[1])
    desired = MembershipProperties(MEMBERSHIP_ID, team=renamed)
    sent = plan_changes(desired, actual).requests[0].to_api()["incidentResponseTeam"]
    assert sent[0]["communicationPreferences"] == ["Case Closed"]
    assert "communicationPreferences" not in sent[1]
    declared = (replace(renamed[0], communication_preferences=frozenset()), TEAM_A[1])
    sent = plan_changes(replace(desired, team=declared), actual).requests[0].to_api()
    assert sent["incidentResponseTeam"][0]["communicationPreferences"] == [], "declared wins"


def test_feature_change_is_sent() -> None:
    desired = parse_properties(
        props(OptInFeatures=[{"FeatureName": "Triage", "IsEnabled": "false"}])
    )
    plan = plan_changes(desired, state_from_api(get_membership()), desired.organizational_units)
    assert plan.requests[0].to_api()["optInFeatures"] == [
        {"featureName": "Triage", "isEnabled": False}
    ]
    assert plan.changes[0].detail == "Triage True -> False"


def test_cancelled_membership_needs_undo() -> None:
    cancelled = state(status="Cancelled")
    desired = parse_properties(props(MembershipName="Other Name"))
    with pytest.raises(MembershipNotUpdatable, match="set UndoMembershipCancellation to true"):
        plan_changes(desired, cancelled, desired.organizational_units)
    undo = parse_properties(props(MembershipName="Other Name", UndoMembershipCancellation="true"))
    plan = plan_changes(undo, cancelled, undo.organizational_units)
    assert plan.requests[0].to_api() == {
        "membershipId": MEMBERSHIP_ID,
        "membershipName": "Other Name",
        "undoMembershipCancellation": True,
    }
    assert run(cancelled, plan).status == "Active"


def test_undo_is_never_sent_false_nor_when_not_cancelled() -> None:
    desired = parse_properties(props(UndoMembershipCancellation="true"))
    assert plan_changes(desired, state(), desired.organizational_units).empty
    only_undo = plan_changes(desired, state(status="Cancelled"), desired.organizational_units)
    assert [r.to_api() for r in only_undo.requests] == [
        {"membershipId": MEMBERSHIP_ID, "undoMembershipCancellation": True}
    ]
    for request in plan_changes(
        parse_properties(props(MembershipName="Zzz")), state(), frozenset()
    ).requests:
        assert "undoMembershipCancellation" not in request.to_api()


def test_terminated_membership_cannot_change_but_no_op_is_fine() -> None:
    desired = parse_properties(props())
    assert plan_changes(desired, state(status="Terminated"), desired.organizational_units).empty
    with pytest.raises(MembershipNotUpdatable, match="Terminated"):
        plan_changes(parse_properties(props(MembershipName="Zzz")), state(status="Terminated"))


def test_delete_plans() -> None:
    retain = parse_properties(props(OrganizationalUnits=[ou(1), ou(9)]))
    assert plan_delete(retain, state()).empty
    remove = replace(retain, on_delete="RemoveOrganizationalUnits")
    plan = plan_delete(remove, state())
    assert [r.to_api() for r in plan.requests] == [
        {
            "membershipId": MEMBERSHIP_ID,
            "membershipAccountsConfigurationsUpdate": {"organizationalUnitsToRemove": [ou(1)]},
        }
    ]
    assert plan_delete(remove, state(status="Cancelled")).empty


def test_masked_and_summary_hide_sensitive_values() -> None:
    request = UpdateRequest(MEMBERSHIP_ID, membership_name="Secret Name", team=TEAM_A)
    masked = request.masked()
    assert masked["membershipName"] == MASK
    assert all(r["email"] == MASK and r["name"] == MASK for r in masked["incidentResponseTeam"])
    assert "Secret Name" not in repr(request)
    assert request.summary() == {
        "membershipId": MEMBERSHIP_ID,
        "fields": ["incidentResponseTeam", "membershipName"],
        "ousToAdd": 0,
        "ousToRemove": 0,
    }
