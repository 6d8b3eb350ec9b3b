"""The change journal: what is recorded before a write, and how it is restored (pure).

The properties here are the journal's promises, checked over generated
memberships, declarations, failures part-way and third-party changes:
compare-and-restore puts back exactly what the change set and nothing that
someone changed since, never removes an OU the change did not add, and a
second restore finds nothing to do.
"""

from __future__ import annotations

from dataclasses import replace

from conftest import MEMBERSHIP_ID, ou, props
from hypothesis import given, settings
from hypothesis import strategies as st
from test_plan import TEAM_A, TEAM_B, actual_fields, desired_fields, run

from sir_membership.journal import (
    AlreadyRestored,
    Entry,
    Forward,
    NothingApplied,
    Rollback,
    Touched,
    classify,
    declaration_digest,
    plan_rollback,
    team_digest,
    touched_by,
)
from sir_membership.journal_codec import from_json, to_json
from sir_membership.membership import Feature, MembershipState, Responder
from sir_membership.plan import plan_changes
from sir_membership.properties import MembershipProperties
from sir_membership.request import Request
from sir_membership.request_scope import rolls_back_adoption
from sir_membership.shell import Shell

OUS = [ou(i) for i in range(30)]
ous = st.frozensets(st.sampled_from(OUS))


def entry(before: MembershipState, plan: object, **kw: object) -> Entry:
    return Entry(
        request_id="r-1",
        request_type="Create",
        membership_id=MEMBERSHIP_ID,
        old="",
        new="n",
        touched=touched_by(before, plan),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


third_party = st.fixed_dictionaries(
    {
        "name": st.sampled_from([None, "Their Name"]),
        "team": st.sampled_from([None, TEAM_B]),
        "triage": st.sampled_from([None, True, False]),
        "cover": st.sampled_from([None, True, False]),
        "associate": ous,
    }
)


@settings(max_examples=400, deadline=None)
@given(
    declared=ous,
    previous=ous,
    actual=ous,
    cut=st.integers(min_value=0, max_value=10),
    fields=desired_fields,
    have=actual_fields,
    other=third_party,
)
def test_compare_and_restore_puts_back_exactly_what_the_change_set(
    declared: frozenset[str],
    previous: frozenset[str],
    actual: frozenset[str],
    cut: int,
    fields: dict[str, object],
    have: dict[str, object],
    other: dict[str, object],
) -> None:
    """A change fails after ``cut`` calls (or succeeds); a third party changes things; restore."""
    if fields["cover_entire_organization"] and declared:
        fields = {**fields, "cover_entire_organization": False}
    desired = MembershipProperties(MEMBERSHIP_ID, organizational_units=declared, **fields)  # type: ignore[arg-type]
    before = MembershipState(MEMBERSHIP_ID, organizational_units=actual, **have)  # type: ignore[arg-type]
    forward = plan_changes(desired, before, previous)
    journaled = entry(before, forward)
    partial = run(before, replace(forward, requests=forward.requests[:cut]))
    # The third party, after the change and before the rollback.
    meddled = partial
    if other["name"] is not None:
        meddled = replace(meddled, name=other["name"])
    if other["team"] is not None:
        meddled = replace(meddled, team=other["team"])
    if other["triage"] is not None:
        meddled = replace(meddled, features=(Feature("Triage", other["triage"]),))  # type: ignore[arg-type]
    if other["cover"] is not None:
        meddled = replace(meddled, cover_entire_organization=other["cover"])
    outside = frozenset(other["associate"]) - meddled.organizational_units  # type: ignore[arg-type]
    meddled = replace(meddled, organizational_units=meddled.organizational_units | outside)

    restore = plan_rollback(journaled, meddled)
    restored = run(meddled, restore)

    t = journaled.touched
    intended = run(before, forward)  # what the whole change would set

    def expected(field: str, value_of: object) -> object:
        """Before's value if the change set this field and it still holds that value."""
        get = value_of  # a function of a state
        set_by_change = get(intended) != get(before)  # type: ignore[operator]
        if set_by_change and get(meddled) == get(intended):  # type: ignore[operator]
            return get(before)  # type: ignore[operator]
        return get(meddled)  # type: ignore[operator]

    if before.name is not None:
        assert restored.name == expected("name", lambda m: m.name)
    assert team_digest(restored.team) == expected("team", lambda m: team_digest(m.team))
    triage = lambda m: m.feature_map().get("Triage", False)  # noqa: E731
    assert triage(restored) == expected("triage", triage)
    cover = lambda m: m.cover_entire_organization  # noqa: E731
    assert cover(restored) == expected("cover", cover)
    if not any(v not in (None, frozenset()) for v in other.values()) and before.name is not None:
        # Nobody else changed anything: the membership is exactly as before the change.
        assert (restored.name, team_digest(restored.team), triage(restored)) == (
            before.name,
            team_digest(before.team),
            triage(before),
        )
        assert restored.organizational_units == before.organizational_units
        assert cover(restored) == cover(before)
    # OUs: every OU the change added is gone, every OU it removed is back, nothing else moves.
    assert restored.organizational_units == (
        (meddled.organizational_units - t.ous_added) | t.ous_removed
    )
    assert actual - t.ous_removed <= restored.organizational_units, "an OU that was there stays"
    assert outside - t.ous_added <= restored.organizational_units, "theirs is never removed"
    assert plan_rollback(journaled, restored).empty, "a second restore finds nothing to do"
    assert len(restore.requests) <= max(1, len(forward.requests))


def test_an_unreported_feature_counts_as_disabled_and_is_restored() -> None:
    """Case 4: GetMembership reported no opt-in features; the change enabled Triage."""
    before = MembershipState(MEMBERSHIP_ID, name="N", team=TEAM_A)
    desired = MembershipProperties(MEMBERSHIP_ID, features=(Feature("Triage", True),))
    forward = plan_changes(desired, before)
    journaled = entry(before, forward)
    assert journaled.touched.features_before == {"Triage": False}
    restore = plan_rollback(journaled, run(before, forward))
    assert [r.features for r in restore.requests] == [(Feature("Triage", False),)]


def test_a_field_changed_since_is_left_as_they_set_it() -> None:
    before = MembershipState(MEMBERSHIP_ID, name="Before", team=TEAM_A)
    desired = MembershipProperties(MEMBERSHIP_ID, membership_name="Ours", team=TEAM_B)
    forward = plan_changes(desired, before)
    journaled = entry(before, forward)
    theirs = replace(run(before, forward), name="Theirs")
    restore = plan_rollback(journaled, theirs)
    assert [(r.membership_name, r.team) for r in restore.requests] == [(None, TEAM_A)]


def test_replans_extend_the_record_keeping_the_first_before_values() -> None:
    first = Touched(name_before="A", name_after="d1", ous_added=frozenset({OUS[0]}))
    later = Touched(
        name_before="B", name_after="d2", ous_added=frozenset({OUS[1]}), cover_before=True
    )
    merged = first.merged(later)
    assert (merged.name_before, merged.name_after) == ("A", "d1")
    assert merged.ous_added == {OUS[0], OUS[1]}
    assert merged.cover_before is True


responders = st.builds(
    Responder,
    st.text(min_size=3, max_size=8),
    st.text(min_size=1, max_size=8),
    st.emails(),
    st.none() | st.frozensets(st.sampled_from(["Email", "Phone"])),
)


@settings(max_examples=200, deadline=None)
@given(
    name=st.none() | st.text(max_size=20),
    team=st.none() | st.tuples(responders, responders),
    features=st.dictionaries(st.sampled_from(["Triage", "Other"]), st.booleans()),
    cover=st.none() | st.booleans(),
    added=ous,
    removed=ous,
    phase=st.sampled_from(["applying", "applied", "failed", "restored"]),
    counts=st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(0, 3)),
)
def test_entries_survive_their_storage_form(
    name: str | None,
    team: tuple[Responder, ...] | None,
    features: dict[str, bool],
    cover: bool | None,
    added: frozenset[str],
    removed: frozenset[str],
    phase: str,
    counts: tuple[int, int, int],
) -> None:
    original = Entry(
        "r",
        "Update",
        MEMBERSHIP_ID,
        "o",
        "n",
        Touched(
            name, "x" if name else "", team, "t" if team else "", features, cover, added, removed
        ),
        *counts,
        phase,  # type: ignore[arg-type]
    )
    assert from_json(to_json(original)) == original


def request(
    kind: str,
    new: dict[str, object] | None,
    old: dict[str, object] | None = None,
    physical: str = MEMBERSHIP_ID,
) -> Request:
    return Request(kind, "stack", "r-2", "Membership", physical, new or {}, old)  # type: ignore[arg-type]


def test_classify_recognises_the_rollback_and_the_forward_changes() -> None:
    a, b, c = props(OrganizationalUnits=[OUS[0]]), props(), props(MembershipName="Other")
    latest = Entry(
        "r-1",
        "Update",
        MEMBERSHIP_ID,
        declaration_digest(a),
        declaration_digest(b),
        phase="applied",
    )
    assert classify(request("Update", a, b), latest) == Rollback(latest)
    assert classify(request("Update", c, b), latest) == Forward(previous_applied=True)
    # The old declaration was never journaled as applied: its OUs are not ours to remove.
    assert classify(request("Update", c, a), latest) == Forward(previous_applied=False)
    # ... and back to the applied one from it: the rollback of a change that never wrote.
    assert classify(request("Update", b, c), latest) == NothingApplied(latest)
    restored = replace(latest, phase="restored")
    assert classify(request("Update", c, a), restored) == Forward(previous_applied=True)
    # A change that failed before writing leaves the old declaration in place: its retry
    # plans forward from it (found by the stateful test), and its rollback restores nothing.
    # An Update back to the declaration of a change that failed part-way (its rollback
    # was skipped) is not "nothing applied": it plans forward, removing none of the old OUs.
    partial = replace(latest, phase="failed", applied=1)
    assert classify(request("Update", b, c), partial) == Forward(previous_applied=False)
    nothing = replace(latest, phase="failed", applied=0, unknown=0)
    assert classify(request("Update", b, a), nothing) == Forward(previous_applied=True)
    assert classify(request("Update", a, b), nothing) == Rollback(nothing)
    assert plan_rollback(nothing, MembershipState(MEMBERSHIP_ID, name="x")).empty
    assert classify(request("Update", c, b), None) == Forward()
    # The clean-up Delete after a rolled back replacement; a Delete of anything else is forward.
    assert classify(request("Delete", b), restored) == AlreadyRestored(restored)
    assert classify(request("Delete", b), latest) == Forward()
    assert classify(request("Delete", a), restored) == Forward()
    # The Delete of a failed Create's unrestored id finds that Create's entry.
    assert classify(request("Delete", a, physical="M-unrestored-r-1"), latest, "r-1") == Rollback(
        latest
    )
    assert classify(request("Delete", a, physical="M-unrestored-r-9"), latest, "r-9") == Forward()


def test_the_digest_ignores_how_the_resource_is_served() -> None:
    served = props(ServiceTimeout="900", ServiceToken="arn:other")
    assert declaration_digest(served) == declaration_digest(props())
    assert declaration_digest(props(MembershipName="Other")) != declaration_digest(props())


# -- a replacement undone by the stack's rollback -------------------------------------
# Found by ministack (replacement-rolled-back): CloudFormation sends the new id of a
# replacement whose stack update failed no rollback Update; it deletes that id in the
# clean-up. That Delete must restore what the replacement did to the new membership.


def _replacing_entry(**changes: object) -> Entry:
    entry = Entry("r-1", "Update", "m-new0000001", "old", "new", phase="applied", applied=1)
    return replace(entry, **changes)  # type: ignore[arg-type]


def _delete_of(physical_id: str) -> Request:
    return Request("Delete", "stack", "r-2", "Membership", physical_id, {})


def _shell_at(status: str | None) -> Shell:
    def stack_status(_stack_id: str) -> str:
        if status is None:
            raise AssertionError("the stack's status was read")
        return status

    return Shell(store=None, remaining=lambda: 60.0, stack_status=stack_status)  # type: ignore[arg-type]


def test_the_clean_up_delete_of_a_failed_replacement_restores_the_new_membership() -> None:
    entry = _replacing_entry(replacement=True)
    cleanup = _shell_at("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
    assert rolls_back_adoption(_delete_of("m-new0000001"), entry, cleanup)
    # Removing the resource (or the stack) later follows OnDelete.
    assert not rolls_back_adoption(
        _delete_of("m-new0000001"), entry, _shell_at("DELETE_IN_PROGRESS")
    )
    # The Delete of the OLD id after a succeeded replacement is not about this entry.
    assert not rolls_back_adoption(_delete_of("m-old0000001"), entry, _shell_at(None))


def test_a_delete_after_an_update_of_the_same_membership_reads_no_stack_status() -> None:
    entry = _replacing_entry(replacement=False)
    assert not rolls_back_adoption(_delete_of("m-new0000001"), entry, _shell_at(None))
    wrote_nothing = _replacing_entry(replacement=True, phase="failed", applied=0)
    assert not rolls_back_adoption(_delete_of("m-new0000001"), wrote_nothing, _shell_at(None))


def test_the_replacement_mark_is_kept_in_the_table_and_absent_in_older_entries() -> None:
    entry = _replacing_entry(replacement=True)
    assert from_json(to_json(entry)).replacement is True
    older = to_json(entry).replace(', "replacement": true', "")
    assert '"replacement"' not in older
    assert from_json(older).replacement is False
