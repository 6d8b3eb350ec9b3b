"""The table's third section: partial failures, rollbacks and the change journal.

What a rollback (or a Create's undo) restores, cancelled updates whose
rollback overlaps them, a busy membership, a retried rollback; then the
``faults`` scenarios of the table and its timing (a long reason, a slow or
unreachable table), kept in the order :data:`~sirlocal.scenarios.table.SCENARIOS`
plays them.
"""

from __future__ import annotations

from sirlocal.fixtures import FOREIGN, NAMES, A, B, C, Expect, declare, ou, ous, seed
from sirlocal.scenarios.checks import fenced_out, full_reason_logged
from sirlocal.scenarios.custom import (
    SLOW_TABLE_DELAY,
    SLOW_TABLE_THIRD_DELAY,
    SLOW_TABLE_THIRD_TIMEOUT,
    SLOW_TABLE_TIMEOUT,
    busy_membership,
    slow_bookkeeping,
    table_unreachable,
    without_features,
)
from sirlocal.scenarios.model import Fault, Scenario, Step
from sirlocal.scenarios.shared import (
    BASE_OUS,
    N0,
    N1,
    NEWLY_DECLARED,
    SEEDED_EMAILS,
    TRIAGE_OFF,
    TRIAGE_ON,
    UNDECLARED,
    as_seeded_untriaged,
    steps,
)

ROLLBACK: tuple[Scenario, ...] = (
    # -- partial failure and rollback -----------------------------------------------------
    Scenario(
        "partial-failure-rollback",
        "rollback",
        "+12 -4 OUs and a rename; AccessDenied on the 2nd of 3 calls; rollback",
        (seed(ou_ids=[*ous(1, 4), *FOREIGN]),),
        steps(
            Step("create", declare(OrganizationalUnits=ous(1, 4)), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(MembershipName=N1, OrganizationalUnits=ous(5, 16)),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(
                    Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),
                ),
                reason_has=(". 1 of 3 UpdateMembership calls were applied",),
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 4), *FOREIGN}), name=N0)},
        (
            "Get A",
            "Get A",
            "Update A +5 -4 name",
            "Update A +5 -0 !AccessDeniedException",
            "Get A",
            "Update A +4 -5 name",
        ),
    ),
    Scenario(
        "later-failure-rollback",
        "rollback",
        "+7 -1 OUs succeed, a later resource fails: rolled back",
        (seed(ou_ids=[*ous(1, 2), *FOREIGN]),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(2, 9)),
                "UPDATE_ROLLBACK_COMPLETE",
                later_failure="Resource handler returned message: injected failure",
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 2), *FOREIGN}), name=N0)},
        (
            "Get A",
            "Get A",
            "Update A +5 -1",
            "Update A +2 -0",
            "Get A",
            "Update A +1 -5",
            "Update A +0 -2",
        ),
    ),
    Scenario(
        "replacement-to-missing",
        "rollback",
        "Update to a MembershipId that does not exist: A is kept as it was",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(MembershipId=C, OrganizationalUnits=[ou(7)]),
                "UPDATE_ROLLBACK_COMPLETE",
                reason_has=("was not found",),
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        ("Get A", "Get C !ResourceNotFoundException", "Get A"),
    ),
    Scenario(
        "create-partial-failure",
        "rollback",
        "Create adds 12 OUs and renames; AccessDenied on the 2nd of 3 calls: undone",
        (seed(),),
        steps(
            Step(
                "create",
                declare(MembershipName=N1, OrganizationalUnits=ous(1, 14)),
                "ROLLBACK_COMPLETE",
                faults=(
                    Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),
                ),
                reason_has=(
                    ". 1 of 3 UpdateMembership calls were applied",
                    "they were undone",
                ),
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        (
            "Get A",
            "Update A +5 -0 name",
            "Update A +5 -0 !AccessDeniedException",
            "Get A",
            "Update A +0 -5 name",
        ),
    ),
    Scenario(
        "rollback-keeps-preexisting-ou",
        "rollback",
        "the new declaration lists an OU someone else had associated; the update fails",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=[ou(1), ou(2), FOREIGN[0], *ous(3, 8)]),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(
                    Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),
                ),
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        (
            "Get A",
            "Get A",
            "Update A +5 -0",
            "Update A +1 -0 !AccessDeniedException",
            "Get A",
            "Update A +0 -5",
        ),
    ),
    Scenario(
        "replacement-partial-failure",
        "rollback",
        "Update to B (+7 OUs, rename) fails on the 2nd call: B is put back, A untouched",
        (seed(), seed(B, name=NAMES[2], ou_ids=[ou(20)])),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(MembershipId=B, OrganizationalUnits=[ou(20), *ous(21, 27)]),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(
                    Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),
                ),
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0), B: Expect(ous=frozenset({ou(20)}), name=NAMES[2])},
        (
            "Get A",
            "Get B",
            "Update B +5 -0 name",
            "Update B +2 -0 !AccessDeniedException",
            "Get B",
            "Update B +0 -5 name",
            "Get A",
        ),
    ),
    # -- the change journal (issue 8): what a rollback or an undo restores ---------------
    Scenario(
        "rollback-restores-newly-declared",
        "rollback",
        "an Update newly declares name, team, Triage on, +7 OUs; the 2nd call is denied: "
        "the rollback restores all of them from the journal",
        (seed(ou_ids=[ou(1), FOREIGN[0]], triage=False),),
        steps(
            Step("create", UNDECLARED, "CREATE_COMPLETE"),
            Step(
                "update",
                NEWLY_DECLARED,
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(
                    Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),
                ),
                reason_has=(
                    ". 1 of 2 UpdateMembership calls were applied",
                    "restores them from the change journal",
                ),
            ),
        ),
        {A: as_seeded_untriaged({ou(1), FOREIGN[0]})},
        (
            "Get A",
            "Get A",
            "Update A +5 -0 features name team",
            "Update A +2 -0 !AccessDeniedException",
            "Get A",
            "Update A +0 -5 features name team",
        ),
    ),
    Scenario(
        "later-failure-restores-newly-declared",
        "rollback",
        "the same Update succeeds (and declares an OU associated outside the stack); a later "
        "resource fails: name, team, Triage restored, the foreign OU stays",
        (seed(ou_ids=[ou(1), *FOREIGN], triage=False),),
        steps(
            Step("create", UNDECLARED, "CREATE_COMPLETE"),
            Step(
                "update",
                {**NEWLY_DECLARED, "OrganizationalUnits": [ou(1), FOREIGN[1], *ous(2, 8)]},
                "UPDATE_ROLLBACK_COMPLETE",
                later_failure="Resource handler returned message: injected failure",
            ),
        ),
        {A: as_seeded_untriaged({ou(1), *FOREIGN})},
        (
            "Get A",
            "Get A",
            "Update A +5 -0 features name team",
            "Update A +2 -0",
            "Get A",
            "Update A +0 -5 features name team",
            "Update A +0 -2",
        ),
    ),
    Scenario(
        "failed-before-first-write-keeps-foreign-ou",
        "rollback",
        "an Update newly declares an OU someone else associated and fails before its first "
        "write (GetMembership denied): its rollback does not remove that OU",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=[ou(1), ou(2), FOREIGN[0], ou(3)]),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(Fault("error", "GetMembership", error="AccessDeniedException"),),
                reason_has=("Access denied for security-ir:GetMembership",),
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        ("Get A", "Get A !AccessDeniedException", "Get A"),
    ),
    Scenario(
        "create-undo-without-features",
        "rollback",
        "a Create enables Triage on a membership that reports no optInFeatures, renames, "
        "+12 OUs; the 2nd call is denied: the undo disables Triage again",
        (seed(),),
        steps(
            Step(
                "create",
                declare(MembershipName=N1, OrganizationalUnits=ous(1, 14)),
                "ROLLBACK_COMPLETE",
                faults=(
                    Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),
                ),
                reason_has=("they were undone, membership m-e2ea00000001 is as it was",),
                physical_has="-failed-",
            ),
        ),
        # The service cannot drop a feature entry: disabled is what "none" comes back as.
        {A: Expect(ous=BASE_OUS, name=N0, features=TRIAGE_OFF)},
        (
            "Get A",
            "Update A +5 -0 features name",
            "Update A +5 -0 !AccessDeniedException",
            "Get A",
            "Update A +0 -5 features name",
        ),
        prepare=without_features,
    ),
    Scenario(
        "create-unknown-outcome",
        "rollback",
        "a Create's UpdateMembership outlives the read timeout, then GetMembership is denied: "
        "unknown outcome, -unrestored- id; the rollback Delete restores from the journal",
        (seed(),),
        steps(
            Step(
                "create",
                declare(MembershipName=N1, OrganizationalUnits=ous(1, 5)),
                "ROLLBACK_COMPLETE",
                faults=(
                    Fault("hang", "UpdateMembership", seconds=12.0),
                    Fault(
                        "error", "GetMembership", on_call=2, times=2, error="AccessDeniedException"
                    ),
                    # The rollback Delete's read answers once the late write was applied.
                    Fault("hang", "GetMembership", on_call=4, seconds=4.0),
                ),
                reason_has=(
                    "outcome of 1 UpdateMembership call is unknown (it may have been applied)",
                    "the rollback Delete restores them from the change journal",
                ),
                reason_lacks=("no change was applied", "No change was applied"),
                physical_has="-unrestored-",
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        (
            "Get A",
            "Get A !AccessDeniedException",
            "Get A !AccessDeniedException",
            "Update A +3 -0 name",  # the late write, recorded when the emulator answers it
            "Get A",
            "Update A +0 -3 name",
        ),
        timeout=40.0,
        reliability_only=(
            "15 s: a write held past the 10 s read timeout; the read timeout is played by "
            "ambiguous-write, unknown outcomes restored by the Delete by tests/test_stateful.py"
        ),
    ),
    Scenario(
        "cancelled-update-overlap",
        "rollback",
        "an Update (+12 OUs, 1 s a call) is cancelled after its 1st call; the rollback arrives "
        "while it runs and takes the fence: the Update writes no more (a call already in "
        "flight lands), the rollback restores exactly what it wrote",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "cancel_update",
                declare(OrganizationalUnits=ous(1, 14)),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(Fault("hang", "UpdateMembership", times=3, seconds=1.0),),
                cancel_after_writes=1,
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0, emails=SEEDED_EMAILS, features=TRIAGE_ON)},
        # Exact, given how many of the Update's calls (+5, +5, +2) landed before the
        # rollback took the fence: 1, or 2 when the next was already in flight.
        custom=fenced_out((("Update A +5 -0",), ("Update A +5 -0", "Update A +5 -0"))),
    ),
    Scenario(
        "cancelled-update-before-first-write",
        "rollback",
        "an Update (+12 OUs) is cancelled 0.5 s in, while its GetMembership takes 2 s "
        "(before it journals): the rollback takes the fence, the Update never writes, the "
        "membership is as it was",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "cancel_update",
                declare(OrganizationalUnits=ous(1, 14)),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(Fault("hang", "GetMembership", seconds=2.0),),
                cancel_after_writes=0,
                cancel_after_seconds=0.5,
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0, emails=SEEDED_EMAILS, features=TRIAGE_ON)},
        # The Create's read, the Update's (fenced out before its first write), the rollback's.
        ("Get A", "Get A", "Get A"),
    ),
    Scenario(
        "busy-membership",
        "rollback",
        "another stack's Create on the same membership while this stack's Update (+12 OUs, "
        "1.5 s a call) holds its lease: it waits (Wait states between Work steps), then applies",
        (seed(),),
        steps(Step("create", declare(), "CREATE_COMPLETE")),
        {A: Expect(ous=frozenset({*ous(1, 14), FOREIGN[0]}), name=N1)},
        (
            "Get A",
            "Get A",
            "Update A +5 -0",
            "Update A +5 -0",
            "Update A +2 -0",
            "Get A",
            "Update A +0 -0 name",
        ),
        custom=busy_membership,
        custom_faults="UpdateMembership takes 1.5 s x3; a 2nd stack on the same membership",
    ),
    Scenario(
        "rollback-retried",
        "rollback",
        "an Update (+6 OUs, rename) fails on its 2nd call and its rollback's first call is "
        "denied too: continuing the rollback restores from the journal",
        (seed(),),
        steps(
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(MembershipName=N1, OrganizationalUnits=ous(1, 8)),
                "UPDATE_ROLLBACK_FAILED",
                faults=(
                    Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),
                    Fault("error", "UpdateMembership", on_call=3, error="AccessDeniedException"),
                ),
            ),
            Step("continue_rollback", expect="UPDATE_ROLLBACK_COMPLETE"),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        (
            "Get A",
            "Get A",
            "Update A +5 -0 name",
            "Update A +1 -0 !AccessDeniedException",
            "Get A",
            "Update A +0 -5 name !AccessDeniedException",
            "Get A",
            "Update A +0 -5 name",
        ),
    ),
    Scenario(
        "long-non-ascii-reason",
        "faults",
        "1,000 OU ids pasted with en-dashes: the long reason is cut by bytes, not replaced "
        "(values that do not look like ids are not echoed)",
        (seed(),),
        steps(
            Step(
                "create",
                declare(OrganizationalUnits=[f"ou\u2013e2e1\u2013{i:08d}" for i in range(1000)]),
                "ROLLBACK_COMPLETE",
                reason_starts=(
                    "Invalid properties: OrganizationalUnits[0] is invalid (16 characters, not "
                    "shown): does not match ou-"
                ),
                reason_ends=" [truncated]",
                answer_within=3.0,
            ),
        ),
        {A: Expect(ous=BASE_OUS, name=N0)},
        (),
        custom=full_reason_logged,
    ),
    Scenario(
        "slow-table-after-last-write",
        "faults",
        "a rename; after its write the table answers 4.5 s late (read timeout 5 s, 21 s "
        "timeout): the Work step's bookkeeping runs short of time, SUCCESS is still sent once",
        (seed(),),
        final={A: Expect(ous=BASE_OUS, name=N1)},
        calls=("Get A", "Get A", "Update A +0 -0 name"),
        custom=slow_bookkeeping(SLOW_TABLE_TIMEOUT, SLOW_TABLE_DELAY),
        custom_faults=f"DynamoDB answers {SLOW_TABLE_DELAY:g} s late after the write",
        reliability_only=(
            "37 s: a Work step that runs into the reserve of a 21 s function timeout; "
            "slow-table-after-last-write-a-third plays it with every time cut to a third"
        ),
    ),
    Scenario(
        "slow-table-after-last-write-a-third",
        "faults",
        "slow-table-after-last-write with every time a third: the function's reserves and "
        "timeouts (SIR_TIMING_*), the table 1.5 s late, an 8 s function timeout",
        (seed(),),
        final={A: Expect(ous=BASE_OUS, name=N1)},
        calls=("Get A", "Get A", "Update A +0 -0 name"),
        custom=slow_bookkeeping(SLOW_TABLE_THIRD_TIMEOUT, SLOW_TABLE_THIRD_DELAY, 1 / 3),
        custom_faults=(
            f"DynamoDB answers {SLOW_TABLE_THIRD_DELAY:g} s late after the write; "
            "the function's reserves and timeouts at a third"
        ),
    ),
    Scenario(
        "table-unreachable",
        "faults",
        "the idempotency table refuses connections: Create fails, its rollback Delete succeeds",
        (seed(),),
        final={A: Expect(ous=BASE_OUS, name=N0)},
        calls=(),
        custom=table_unreachable,
        custom_faults="DynamoDB endpoint refuses connections",
    ),
)
