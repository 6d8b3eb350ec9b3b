"""Bad input: invalid declarations, and the check that each is refused at once.

Why apart from the scenarios: a bad input is played twice on its own stacks
(a Create, and an Update of a healthy stack) and must be answered FAILED,
naming the property, with no call made; the table of scenarios says nothing
of it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sirlocal.driver import Operation, StackDriver, WorkerPool
from sirlocal.fixtures import (
    PEOPLE,
    A,
    call_summary,
    declare,
    log_leaks,
    ou,
    sensitive_values,
    team,
)
from sirlocal.scenarios.shared import N0
from sirlocal.services import LocalServices


@dataclass(frozen=True)
class BadInput:
    """An invalid declaration and the property its FAILED reason must name."""

    name: str
    properties: Mapping[str, Any]
    names: tuple[str, ...]


def _bad(name: str, names: str | tuple[str, ...], **overrides: Any) -> BadInput:
    return BadInput(name, declare(**overrides), (names,) if isinstance(names, str) else names)


def _bad_raw(name: str, names: str | tuple[str, ...], properties: Mapping[str, Any]) -> BadInput:
    return BadInput(name, properties, (names,) if isinstance(names, str) else names)


def _with(key: str, value: Any) -> dict[str, Any]:
    return {**declare(), key: value}


_P = PEOPLE[0]
INVALID_INPUTS: tuple[BadInput, ...] = (
    # unknown keys and typos
    _bad_raw("unknown-key", "Foo", _with("Foo", "bar")),
    _bad_raw("typo-membership-name", "MembershipNmae", _with("MembershipNmae", N0)),
    _bad_raw("typo-ous", "OrganisationalUnits", _with("OrganisationalUnits", [ou(1)])),
    _bad_raw("typo-on-delete", "OnDeletion", _with("OnDeletion", "Retain")),
    _bad_raw("lowercase-key", "membershipId", _with("membershipId", A)),
    _bad_raw("typo-cover", "CoverEntireOrg", _with("CoverEntireOrg", "true")),
    # MembershipId
    _bad("missing-membership-id", "MembershipId", MembershipId=None),
    _bad("membership-id-no-prefix", "MembershipId", MembershipId="abcdef012345"),
    _bad("membership-id-uppercase", "MembershipId", MembershipId="m-ABCDEF012345"),
    _bad("membership-id-short", "MembershipId", MembershipId="m-abc123"),
    _bad("membership-id-long", "MembershipId", MembershipId="m-" + "a" * 33),
    _bad("membership-id-list", "MembershipId", MembershipId=[A]),
    _bad(
        "membership-id-arn", "MembershipId", MembershipId=f"arn:aws:security-ir::1:membership/{A}"
    ),
    # MembershipName
    _bad("name-too-short", "MembershipName", MembershipName="ab"),
    _bad("name-too-long", "MembershipName", MembershipName="Long Secret Name " * 4),
    _bad("name-object", "MembershipName", MembershipName={"Fn::Sub": "x"}),
    # OrganizationalUnits
    _bad("ou-bad-pattern", "OrganizationalUnits[0]", OrganizationalUnits=["ou-bad"]),
    _bad("ou-uppercase", "OrganizationalUnits[1]", OrganizationalUnits=[ou(1), "ou-AB12-ABCDEF12"]),
    _bad("ou-root-id", "OrganizationalUnits[0]", OrganizationalUnits=["r-ab12"]),
    _bad("ou-account-id", "OrganizationalUnits[0]", OrganizationalUnits=["123456789012"]),
    _bad("ou-whitespace", "OrganizationalUnits[0]", OrganizationalUnits=[" " + ou(1)]),
    _bad("ou-duplicate", "OrganizationalUnits[2]", OrganizationalUnits=[ou(1), ou(2), ou(1)]),
    _bad("ou-not-a-list", "OrganizationalUnits", OrganizationalUnits=ou(1)),
    _bad("ou-comma-string", "OrganizationalUnits", OrganizationalUnits=f"{ou(1)},{ou(2)}"),
    # booleans (CloudFormation sends strings)
    _bad("cover-yes", "CoverEntireOrganization", CoverEntireOrganization="yes"),
    _bad("cover-one", "CoverEntireOrganization", CoverEntireOrganization=1),
    _bad("cover-empty", "CoverEntireOrganization", CoverEntireOrganization=""),
    _bad("undo-maybe", "UndoMembershipCancellation", UndoMembershipCancellation="maybe"),
    _bad(
        "cover-with-ous",
        ("CoverEntireOrganization", "OrganizationalUnits"),
        CoverEntireOrganization=True,
    ),
    # OptInFeatures
    _bad(
        "feature-enabled-word",
        "OptInFeatures[0].IsEnabled",
        OptInFeatures=[{"FeatureName": "Triage", "IsEnabled": "enabled"}],
    ),
    _bad(
        "feature-unknown-name",
        "OptInFeatures[0].FeatureName",
        OptInFeatures=[{"FeatureName": "Containment", "IsEnabled": True}],
    ),
    _bad(
        "feature-duplicate",
        "OptInFeatures[1].FeatureName",
        OptInFeatures=[{"FeatureName": "Triage", "IsEnabled": True}] * 2,
    ),
    _bad("features-empty", "OptInFeatures", OptInFeatures=[]),
    _bad(
        "features-too-many",
        "OptInFeatures",
        OptInFeatures=[{"FeatureName": "Triage", "IsEnabled": True}] * 3,
    ),
    _bad(
        "feature-missing-enabled",
        "OptInFeatures[0].IsEnabled",
        OptInFeatures=[{"FeatureName": "Triage"}],
    ),
    _bad(
        "feature-typo-key",
        "OptInFeatures[0].Enabled",
        OptInFeatures=[{"FeatureName": "Triage", "Enabled": True}],
    ),
    _bad("features-object", "OptInFeatures", OptInFeatures={"Triage": True}),
    # IncidentResponseTeam
    _bad("team-of-one", "IncidentResponseTeam", IncidentResponseTeam=team(0, 1)),
    _bad(
        "team-of-eleven",
        "IncidentResponseTeam",
        IncidentResponseTeam=[
            {"Name": f"{_P[0]} {i:02d}", "JobTitle": _P[1], "Email": f"r{i:02d}.{_P[2]}"}
            for i in range(11)
        ],
    ),
    _bad(
        "team-duplicate-email",
        "IncidentResponseTeam[1].Email",
        IncidentResponseTeam=[team()[0], {**team()[1], "Email": _P[2].upper()}],
    ),
    _bad(
        "team-bad-email",
        "IncidentResponseTeam[0].Email",
        IncidentResponseTeam=[{**team()[0], "Email": "quentin.zephyrsson"}, team()[1]],
    ),
    _bad(
        "team-email-with-space",
        "IncidentResponseTeam[1].Email",
        IncidentResponseTeam=[team()[0], {**team()[1], "Email": "ottilie marchbanks@example.com"}],
    ),
    _bad(
        "team-missing-job-title",
        "IncidentResponseTeam[1].JobTitle",
        IncidentResponseTeam=[
            team()[0],
            {k: v for k, v in team()[1].items() if k != "JobTitle"},
        ],
    ),
    _bad(
        "team-name-too-short",
        "IncidentResponseTeam[0].Name",
        IncidentResponseTeam=[{**team()[0], "Name": "Qz"}, team()[1]],
    ),
    _bad(
        "team-title-too-long",
        "IncidentResponseTeam[0].JobTitle",
        IncidentResponseTeam=[{**team()[0], "JobTitle": "Secret Title " * 5}, team()[1]],
    ),
    _bad(
        "team-unknown-key",
        "IncidentResponseTeam[0].Phone",
        IncidentResponseTeam=[{**team()[0], "Phone": "+1 555 0100"}, team()[1]],
    ),
    _bad(
        "team-bad-preference",
        "IncidentResponseTeam[0].CommunicationPreferences[0]",
        IncidentResponseTeam=[{**team()[0], "CommunicationPreferences": ["Pager"]}, team()[1]],
    ),
    _bad(
        "team-member-string",
        "IncidentResponseTeam[1]",
        IncidentResponseTeam=[team()[0], _P[2]],
    ),
    _bad("team-object", "IncidentResponseTeam", IncidentResponseTeam=team()[0]),
    # OnDelete
    _bad("on-delete-delete", "OnDelete", OnDelete="Delete"),
    _bad("on-delete-lowercase", "OnDelete", OnDelete="retain"),
    # several at once: every problem is named
    _bad(
        "everything-wrong",
        ("MembershipId", "MembershipName", "OrganizationalUnits[0]", "OnDelete", "Colour"),
        MembershipId="x",
        MembershipName="y",
        OrganizationalUnits=["z"],
        OnDelete="Keep",
        Colour="blue",
    ),
)

#: Answers to bad input must come at once (no call is made, nothing to wait for).
BAD_INPUT_ANSWER_SECONDS = 3.0


@dataclass(frozen=True)
class BadInputResult:
    """How one invalid declaration was answered, on Create and on Update."""

    name: str
    problems: tuple[str, ...]
    create_seconds: float
    update_seconds: float


def check_bad_input(
    bad: BadInput, services: LocalServices, pool: WorkerPool, stack: StackDriver
) -> BadInputResult:
    """Create with ``bad`` (then rollback), and Update a healthy stack to it (then rollback).

    ``stack`` must hold a healthy resource for ``A`` (CREATE/UPDATE_*_COMPLETE);
    it is left that way.
    """
    problems: list[str] = []
    marks = pool.log_marks()
    task_mark = services.states.log_mark()
    before = time.time()
    fresh = StackDriver(
        services.receiver,
        pool.get(0),
        stack_name=f"bad-{bad.name}",
        timeout=stack.timeout,
        states=services.states,
    )
    create = fresh.create(bad.properties)
    problems += _bad_answer(bad, create, "Create", "ROLLBACK_COMPLETE")
    calls = [c for c in services.emulator.calls() if c.timestamp >= before]
    if calls:
        problems.append(f"Create: calls were made: {[call_summary(c) for c in calls]}")
    before = time.time()
    update = stack.update(bad.properties)
    problems += _bad_answer(bad, update, "Update", "UPDATE_ROLLBACK_COMPLETE")
    failed_update = update.deliveries[0]
    during = [
        c
        for c in services.emulator.calls()
        if before <= c.timestamp <= failed_update.started + (failed_update.answer_seconds or 0)
    ]
    if during:
        problems.append(f"Update: calls were made: {[call_summary(c) for c in during]}")
    writes = [
        c
        for c in services.emulator.calls()
        if c.timestamp >= before and c.operation == "UpdateMembership"
    ]
    if writes:
        problems.append("Update or its rollback wrote to the membership")
    secrets = sensitive_values(bad.properties, stack.properties)
    urls = [str(d.event["ResponseURL"]) for d in (*fresh.deliveries, *update.deliveries)]
    logs = pool.logs_since(marks) + services.states.logs(task_mark)
    problems += log_leaks(logs, secrets, urls)
    return BadInputResult(
        bad.name,
        tuple(problems),
        create.deliveries[0].answer_seconds or float("inf"),
        failed_update.answer_seconds or float("inf"),
    )


def _bad_answer(bad: BadInput, operation: Operation, kind: str, status: str) -> list[str]:
    out = []
    if operation.stack_status != status:
        out.append(f"{kind}: stack is {operation.stack_status}, expected {status}")
    answer = operation.first_answer
    if answer is None or answer.status != "FAILED":
        return [*out, f"{kind}: not answered FAILED"]
    for name in bad.names:
        if name not in answer.reason:
            out.append(f"{kind}: reason does not name {name}: {answer.reason!r}")
    seconds = operation.deliveries[0].answer_seconds or float("inf")
    if seconds >= BAD_INPUT_ANSWER_SECONDS:
        out.append(f"{kind}: answered after {seconds:.1f} s")
    return out
