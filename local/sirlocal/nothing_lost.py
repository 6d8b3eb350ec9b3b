"""Issue 16's numbered cases ("nothing lost"), end to end through the real handler.

Why: ``tests/test_nothing_lost.py`` plays each case in process on a simulated
clock; these are their twins as a user meets them: CloudFormation's events
from the driver, the handler in Lambda worker processes (killed and retried
as Lambda does), the emulator's faults (a write applied but answered 5xx,
reads stale for P seconds, a call in flight when its sandbox dies), the
journal and the leases in moto's table, the stack's status served as
DescribeStacks. Each scenario failed on the code before the issue's fix
(d06dc78) and holds now.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import boto3

from sirlocal.driver import REGION
from sirlocal.fixtures import FOREIGN, NAMES, PEOPLE, A, Expect, declare, ou, ous, seed, team
from sirlocal.scenarios import Fault, Run, Scenario, Step, calls_with_rereads
from sirlocal.services import LocalServices
from sirlocal.worker import ACCOUNT_ID

GROUP = "nothing-lost"
N0, N1 = NAMES[0], NAMES[1]
BASE_OUS = frozenset({ou(1), ou(2), FOREIGN[0]})
SEEDED_EMAILS = frozenset(p[2] for p in PEOPLE[0:2])
NEW_EMAILS = frozenset(p[2] for p in PEOPLE[1:3])
LATER = "Resource handler returned message: injected failure of another resource"
#: Another stack's resource whose request holds the membership's lease (case 5).
OTHER_HOLDER = (
    f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/security-ir-other/"
    "5f0e2c1a-0000-4000-8000-000000000005#Coverage#other-request-1"
)
#: Case 1's function timeout, with the function's times at a third (the Work step that
#: died is retried by the state machine 2 s later, in a fresh sandbox).
RETRY_TIMEOUT = 8.0
#: Associated outside the stack (case 4).
THEIRS = ou(9)


def _table(services: LocalServices) -> Any:
    """A client of moto's DynamoDB, where the function keeps its journal and leases."""
    return boto3.client(
        "dynamodb",
        endpoint_url=services.dynamodb_url,
        region_name=services.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _forget_journal(stack_name: str) -> Callable[[LocalServices], None]:
    """Delete the stack's journal entries (expired after 14 days, or never kept)."""

    def forget(services: LocalServices) -> None:
        client = _table(services)
        keys = [
            item["id"]["S"]
            for item in client.scan(TableName=services.table_name)["Items"]
            if item["id"]["S"].startswith("journal#") and f":stack/{stack_name}/" in item["id"]["S"]
        ]
        if not keys:  # else the scenario would not play what it says
            raise RuntimeError(f"stack {stack_name}: no journal entry in the table to remove")
        for key in keys:
            client.delete_item(TableName=services.table_name, Key={"id": {"S": key}})

    return forget


def _hold_lease(services: LocalServices) -> None:
    """Another stack's request holds A's lease, far into the future."""
    until = time.time() + 3000
    _table(services).put_item(
        TableName=services.table_name,
        Item={
            "id": {"S": f"lease#{A}"},
            "holder": {"S": OTHER_HOLDER},
            "until": {"N": f"{until:.3f}"},
            "expiration": {"N": str(int(until) + 3600)},
        },
    )


def _release_lease(services: LocalServices) -> None:
    """The other stack's request has finished and given the lease back."""
    _table(services).delete_item(TableName=services.table_name, Key={"id": {"S": f"lease#{A}"}})


def _clear_faults(services: LocalServices) -> None:
    services.emulator.clear_faults()


def _reads_throttled(run: Run) -> None:
    """The Update did try to read (it failed because of the throttling, not before it)."""
    throttled = [c for c in run.calls() if c.error == "ThrottlingException"]
    run.expect(
        bool(throttled) and all(c.operation == "GetMembership" for c in throttled),
        f"{len(throttled)} GetMembership call(s) throttled, expected at least one",
    )


#: The seeded membership, as it must be after every rolled-back change.
AS_SEEDED = Expect(
    ous=BASE_OUS, name=N0, emails=SEEDED_EMAILS, features={"Triage": True}, status="Active"
)
#: A new stack adopting A: another name, another team, Triage off, two more OUs.
ADOPTING = {
    "MembershipName": N1,
    "IncidentResponseTeam": team(1, 3),
    "OptInFeatures": [{"FeatureName": "Triage", "IsEnabled": False}],
    "OrganizationalUnits": ous(1, 4),
}
CREATE_WIDE = ("Get A", "Update A +5 -0", "Update A +5 -0")
#: The update's first call (the team and 5 removals), the second in flight when the
#: sandbox dies (dropped, never applied), and Lambda's retry: it reads, removes the other 5.
CRASHED_AND_RETRIED = (
    "Get A",
    "Update A +0 -5 team",
    "Update A +0 -5 !reset",
    "Get A",
    "Update A +0 -5",
)
WIDE = declare(OrganizationalUnits=ous(1, 12))  # 10 OUs more than seeded: 2 calls
#: WIDE's update that drops the 10 OUs and changes the team: 2 calls of 5 removals.
NARROW = declare(OrganizationalUnits=ous(1, 2), IncidentResponseTeam=team(1, 3))


def _create_rolled_back(on_delete: str) -> Scenario:
    return Scenario(
        f"nothing-lost-3-create-rolled-back-{on_delete.lower()}",
        GROUP,
        f"case 3: a new stack adopts A (name, team, Triage, OUs; OnDelete {on_delete}) and "
        "another resource fails: the rollback's Delete restores A as it was before the stack",
        (seed(),),
        (
            Step(
                "create",
                declare(**ADOPTING, OnDelete=on_delete),
                "ROLLBACK_COMPLETE",
                later_failure=LATER,
            ),
        ),
        {A: AS_SEEDED},
        (
            "Get A",
            "Update A +2 -0 features name team",
            "Get A",
            "Update A +0 -2 features name team",
        ),
    )


NOTHING_LOST: tuple[Scenario, ...] = (
    Scenario(
        "nothing-lost-1-retry-removes-dropped-ous",
        GROUP,
        "case 1: the Work step's sandbox dies after 1 of 2 calls of an update that drops 10 "
        "OUs and changes the team (a Lambda service error): the state machine retries the "
        "step, which removes the other 5",
        (seed(),),
        (
            Step("create", WIDE, "CREATE_COMPLETE"),
            Step("update", NARROW, "UPDATE_COMPLETE", crash_after_writes=1, work_steps=2),
        ),
        {A: Expect(ous=BASE_OUS, emails=NEW_EMAILS)},
        (*CREATE_WIDE, *CRASHED_AND_RETRIED),
        timeout=RETRY_TIMEOUT,
        timing_scale=1 / 3,
    ),
    Scenario(
        "nothing-lost-1-retry-then-rollback-restores",
        GROUP,
        "case 1: as nothing-lost-1-retry-removes-dropped-ous, then another resource fails: "
        "the rollback restores the team and the 10 OUs the crashed Work step changed",
        (seed(),),
        (
            Step("create", WIDE, "CREATE_COMPLETE"),
            Step(
                "update",
                NARROW,
                "UPDATE_ROLLBACK_COMPLETE",
                crash_after_writes=1,
                work_steps=2,
                later_failure=LATER,
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 12), FOREIGN[0]}), emails=SEEDED_EMAILS)},
        (
            *CREATE_WIDE,
            *CRASHED_AND_RETRIED,
            "Get A",
            "Update A +5 -0 team",
            "Update A +5 -0",
        ),
        timeout=RETRY_TIMEOUT,
        timing_scale=1 / 3,
    ),
    Scenario(
        "nothing-lost-2-lost-answer-stale-reads",
        GROUP,
        "case 2: +3 OUs applied but answered 500, reads stale for 3 s: the repeat's "
        "'already associated' proves it applied; another resource fails, the rollback "
        "removes the 3 OUs",
        (seed(),),
        (
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 5)),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(
                    Fault("lost", "UpdateMembership"),
                    Fault("model", model="stale-reads", seconds=3.0),
                ),
                later_failure=LATER,
                answer_status="SUCCESS",
            ),
        ),
        {A: Expect(ous=BASE_OUS)},
    ),
    Scenario(
        "nothing-lost-2-unknown-outcome-reported",
        GROUP,
        "case 2: +3 OUs applied but answered 500, reads stale, the repeat denied: FAILED "
        "saying the outcome is unknown (never 'no change was applied'); the rollback "
        "removes the 3 OUs",
        (seed(),),
        (
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 5)),
                "UPDATE_ROLLBACK_COMPLETE",
                faults=(
                    Fault("lost", "UpdateMembership"),
                    Fault("model", model="stale-reads", seconds=3.0),
                    Fault(
                        "error",
                        "UpdateMembership",
                        on_call=2,
                        times=None,
                        error="AccessDeniedException",
                    ),
                ),
                answer_status="FAILED",
                reason_has=("unknown (it may have been applied)",),
                reason_lacks=("no change was applied", "No change was applied"),
                after_answer=_clear_faults,
            ),
        ),
        {A: Expect(ous=BASE_OUS)},
        (
            "Get A",
            "Get A",
            "Update A +3 -0 !InternalServerException",
            "Get A",
            "Update A +3 -0 !AccessDeniedException",
            "Get A",
            "Update A +0 -3",
        ),
    ),
    Scenario(
        "nothing-lost-1-crashed-step-answered-failed",
        GROUP,
        "case 1: the Work step's sandbox crashes (Runtime.ExitError, a function error) after "
        "1 of 2 calls of the same update: the Catch answers FAILED with what the journal "
        "shows, the rollback restores the team and the 5 OUs",
        (seed(),),
        (
            Step("create", WIDE, "CREATE_COMPLETE"),
            Step(
                "update",
                NARROW,
                "UPDATE_ROLLBACK_COMPLETE",
                crash_after_writes=1,
                crash_error="Runtime.ExitError",
                work_steps=1,
                answer_status="FAILED",
                reason_has=("Work step failed (Runtime.ExitError)",),
                reason_lacks=("no change was applied", "No change was applied"),
            ),
        ),
        {A: Expect(ous=frozenset({*ous(1, 12), FOREIGN[0]}), emails=SEEDED_EMAILS)},
        # The crashed step's first call, its second dropped with the sandbox; the rollback
        # waits (Wait states) until a read can show the unknown call, then restores.
        custom=calls_with_rereads(
            (
                *CREATE_WIDE,
                "Get A",
                "Update A +0 -5 team",
                "Update A +0 -5 !reset",
                "Get A",
                "Update A +5 -0 team",
            ),
            after="Update A +0 -5 !reset",
        ),
        timeout=RETRY_TIMEOUT,
        timing_scale=1 / 3,
    ),
    _create_rolled_back("Retain"),
    _create_rolled_back("RemoveOrganizationalUnits"),
    Scenario(
        "nothing-lost-3-user-delete-follows-on-delete",
        GROUP,
        "case 3: the user deletes the stack that adopted A (DELETE_IN_PROGRESS): "
        "OnDelete RemoveOrganizationalUnits removes the declared OUs, nothing is restored",
        (seed(),),
        (
            Step(
                "create",
                declare(**ADOPTING, OnDelete="RemoveOrganizationalUnits"),
                "CREATE_COMPLETE",
            ),
            Step("delete", expect="DELETE_COMPLETE"),
        ),
        {A: Expect(ous=frozenset({FOREIGN[0]}), name=N1, emails=NEW_EMAILS)},
        ("Get A", "Update A +2 -0 features name team", "Get A", "Update A +0 -4"),
    ),
    Scenario(
        "nothing-lost-4-rollback-without-journal-entry",
        GROUP,
        "case 4: a Create that made no call, its journal entry gone; an Update declaring an "
        "OU associated outside the stack fails before its first read (GetMembership "
        "throttled): its rollback keeps that OU",
        (seed(ou_ids=(ou(1), ou(2), FOREIGN[0], THEIRS)),),
        (
            Step("create", declare(), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=[ou(1), ou(2), THEIRS], ServiceTimeout="32"),
                "UPDATE_ROLLBACK_COMPLETE",
                answer_status="FAILED",
                faults=(Fault("error", "GetMembership", times=None, error="ThrottlingException"),),
                before=_forget_journal("e2e-nothing-lost-4-rollback-without-journal-entry"),
                after_answer=_clear_faults,
            ),
        ),
        {A: Expect(ous=BASE_OUS | {THEIRS})},
        custom=_reads_throttled,
        custom_faults="the journal entry removed from the table before the update",
    ),
    Scenario(
        "nothing-lost-5-busy-membership",
        GROUP,
        "case 5: another stack's request holds A's lease far into the future: the update "
        "(ServiceTimeout 35 s) fails in time naming the holder; once it is released, the "
        "rollback succeeds",
        (seed(),),
        (
            Step("create", declare(ServiceTimeout="35"), "CREATE_COMPLETE"),
            Step(
                "update",
                declare(OrganizationalUnits=ous(1, 5), ServiceTimeout="35"),
                "UPDATE_ROLLBACK_COMPLETE",
                answer_status="FAILED",
                reason_has=(
                    "(stack security-ir-other resource Coverage)",
                    "No change was applied by this request",
                ),
                answer_within=25.0,
                before=_hold_lease,
                after_answer=_release_lease,
            ),
        ),
        {A: AS_SEEDED},
        ("Get A", "Get A"),  # the Create's read; the rollback's, once the lease was released
        custom_faults="another stack's request holds A's lease (far deadline) until the "
        "update is answered",
    ),
)
