"""The table's first section: the lifecycle (create, update, replace, delete).

One of the table's sections, in the order :data:`~sirlocal.scenarios.table.SCENARIOS`
plays them; a scenario's group is its own field (``replacement-rolled-back``
sits here, next to the replacement it rolls back).
"""

from __future__ import annotations

from sirlocal.fixtures import FOREIGN, NAMES, PEOPLE, A, B, C, Expect, declare, ou, ous, seed, team
from sirlocal.scenarios.checks import cold_each_step
from sirlocal.scenarios.model import Scenario, Step
from sirlocal.scenarios.shared import BASE_OUS, N0, N1, steps

LIFECYCLE: tuple[Scenario, ...] = (
    # -- lifecycle ------------------------------------------------------------------------
    Scenario(
        "update-name",
        "lifecycle",
        "create, rename, delete (Retain)",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step("update", declare(MembershipName=N1), "UPDATE_COMPLETE"),
            Step("delete", expect="DELETE_COMPLETE"),
        ),
        {A: Expect(ous=BASE_OUS, name=N1)},
        ("Get A", "Get A", "Update A +0 -0 name"),
    ),
    Scenario(
        "update-team",
        "lifecycle",
        "replace the team, then reorder it with other email case (no call)",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step("update", declare(IncidentResponseTeam=team(0, 3)), "UPDATE_COMPLETE"),
            Step(
                "update",
                declare(
                    IncidentResponseTeam=[
                        {**r, "Email": r["Email"].upper()} for r in reversed(team(0, 3))
                    ]
                ),
                "UPDATE_COMPLETE",
            ),
        ),
        {A: Expect(emails=frozenset(p[2] for p in PEOPLE), name=N0)},
        ("Get A", "Get A", "Update A +0 -0 team", "Get A"),
    ),
    Scenario(
        "update-features",
        "lifecycle",
        "turn Triage off",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OptInFeatures=[{"FeatureName": "Triage", "IsEnabled": False}]),
                "UPDATE_COMPLETE",
            ),
        ),
        {A: Expect(features={"Triage": False}, ous=BASE_OUS)},
        ("Get A", "Get A", "Update A +0 -0 features"),
    ),
    Scenario(
        "update-cover-entire-org",
        "lifecycle",
        "switch to CoverEntireOrganization (declared OUs removed, foreign kept)",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(CoverEntireOrganization=True, OrganizationalUnits=[]),
                "UPDATE_COMPLETE",
            ),
        ),
        {A: Expect(cover=True, ous=frozenset({FOREIGN[0]}))},
        ("Get A", "Get A", "Update A +0 -2 cover"),
    ),
    Scenario(
        "update-ous",
        "lifecycle",
        "add 12 OUs and remove 1 (3 calls, batches of 5)",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step("update", declare(OrganizationalUnits=ous(2, 14)), "UPDATE_COMPLETE"),
        ),
        {A: Expect(ous=frozenset({*ous(2, 14), FOREIGN[0]}))},
        ("Get A", "Get A", "Update A +5 -1", "Update A +5 -0", "Update A +2 -0"),
    ),
    Scenario(
        "undo-cancellation",
        "lifecycle",
        "Cancelled membership: a change without Undo fails, with Undo reactivates",
        (seed(status="Cancelled"),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(MembershipName=N1),
                "UPDATE_ROLLBACK_COMPLETE",
                reason_has=("is Cancelled", "UndoMembershipCancellation"),
            ),
            Step(
                "update",
                declare(MembershipName=N1, UndoMembershipCancellation=True),
                "UPDATE_COMPLETE",
            ),
        ),
        {A: Expect(status="Active", name=N1)},
        ("Get A", "Get A", "Get A", "Get A", "Update A +0 -0 name undo"),
    ),
    Scenario(
        "update-unmanaged-only",
        "lifecycle",
        "an update that changes only OnDelete makes no write",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step("update", declare(OnDelete="RemoveOrganizationalUnits"), "UPDATE_COMPLETE"),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        ("Get A", "Get A"),
    ),
    Scenario(
        "replacement",
        "lifecycle",
        "new MembershipId: B taken over, A cleaned up (RemoveOrganizationalUnits)",
        (seed(), seed(B, name=NAMES[2], ou_ids=[ou(5)])),
        steps(
            Step("create", declare(OnDelete="RemoveOrganizationalUnits"), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(
                    MembershipId=B,
                    OrganizationalUnits=[ou(5), ou(6)],
                    OnDelete="RemoveOrganizationalUnits",
                ),
                "UPDATE_COMPLETE",
            ),
            Step("delete", expect="DELETE_COMPLETE"),
        ),
        {A: Expect(ous=frozenset({FOREIGN[0]}), name=N0), B: Expect(ous=frozenset(), name=N0)},
        (
            "Get A",
            "Get B",
            "Update B +1 -0 name",
            "Get A",
            "Update A +0 -2",
            "Get B",
            "Update B +0 -2",
        ),
    ),
    Scenario(
        "replacement-rolled-back",
        "rollback",
        "replacement succeeds, a later resource fails: back to A, B restored from the journal",
        (seed(), seed(B, name=NAMES[2], ou_ids=[ou(5)])),
        steps(
            Step("create", declare(OnDelete="RemoveOrganizationalUnits"), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(
                    MembershipId=B,
                    OrganizationalUnits=[ou(6)],
                    OnDelete="RemoveOrganizationalUnits",
                ),
                "UPDATE_ROLLBACK_COMPLETE",
                later_failure="Resource handler returned message: injected failure",
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0), B: Expect(ous=frozenset({ou(5)}), name=NAMES[2])},
        # CloudFormation sends the new id no rollback Update: it deletes B in the clean-up
        # (the stack is UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS), and that Delete
        # restores B from the journal (its name too), whatever OnDelete says; A was never
        # touched.
        ("Get A", "Get B", "Update B +1 -0 name", "Get B", "Update B +0 -1 name"),
    ),
    Scenario(
        "delete-remove-ous",
        "lifecycle",
        "OnDelete RemoveOrganizationalUnits removes the declared OUs only",
        (seed(),),
        steps(
            Step(
                "create",
                declare(OrganizationalUnits=ous(1, 3), OnDelete="RemoveOrganizationalUnits"),
                "CREATE_COMPLETE",
            ),
            Step("delete", expect="DELETE_COMPLETE"),
        ),
        {A: Expect(ous=frozenset({FOREIGN[0]}))},
        ("Get A", "Update A +1 -0", "Get A", "Update A +0 -3"),
    ),
    Scenario(
        "delete-retain",
        "lifecycle",
        "OnDelete Retain makes no call",
        (seed(),),
        steps(
            Step("create", declare(OrganizationalUnits=ous(1, 3)), "CREATE_COMPLETE"),
            Step("delete", expect="DELETE_COMPLETE"),
        ),
        {A: Expect(ous=frozenset({*ous(1, 3), FOREIGN[0]}))},
        ("Get A", "Update A +1 -0"),
    ),
    Scenario(
        "cold-starts",
        "lifecycle",
        "every operation on a fresh worker (cold start)",
        (seed(),),
        steps(
            Step("cold"),
            Step("create", declare(MembershipName=N1), "CREATE_COMPLETE"),
            Step("cold"),
            Step("update", declare(MembershipName=N1, OrganizationalUnits=ous(1, 3))),
            Step("cold"),
            Step(
                "delete",
                expect="DELETE_COMPLETE",
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 3), FOREIGN[0]}), name=N1)},
        ("Get A", "Update A +0 -0 name", "Get A", "Update A +1 -0"),
        custom=cold_each_step,
    ),
    Scenario(
        "create-not-found",
        "lifecycle",
        "MembershipId of no membership: CREATE_FAILED, rollback makes no call",
        (seed(),),
        steps(
            Step(
                "create",
                declare(MembershipId=C),
                "ROLLBACK_COMPLETE",
                reason_has=("m-e2ec00000003 was not found",),
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        ("Get C !ResourceNotFoundException",),
    ),
    Scenario(
        "create-terminated",
        "lifecycle",
        "a Terminated membership cannot be changed",
        (seed(status="Terminated"),),
        steps(
            Step(
                "create",
                declare(MembershipName=N1),
                "ROLLBACK_COMPLETE",
                reason_has=("is Terminated",),
            ),
        ),
        {A: Expect(status="Terminated", name=N0)},
        ("Get A",),
    ),
)
