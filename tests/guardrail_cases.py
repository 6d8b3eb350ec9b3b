"""One table of guardrail cases, driven through both the ``check`` command and the hook.

Each case is a membership resource before and after one stack operation
(``None``: absent), the membership's actual state (GetMembership output),
the settings, and the one rule it is about with the outcome expected of
it. Every rule has a passing and a failing case. The test modules turn a
case into templates and a state file (``check``) and into documented hook
requests and payloads (STACK and CHANGE_SET), and compare the verdicts.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sir_membership import cli
from sir_membership.commands.check import run_check

STACK = "sir-demo"
REGION, ACCOUNT = "us-east-1", "123456789012"
STACK_ID = (
    f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/5b6f1c20-3e4d-11ef-9a1b-0e7c3f2a9d41"
)
LOGICAL_ID = "Membership"
MID, OTHER_MID = "m-abcdef0123", "m-other00001"
TOKEN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sir-membership-provider-Fn"
OUS = tuple(f"ou-ab12-{i:08d}" for i in range(1, 8))
#: Values that must never appear in any output (they are in every case's team).
SECRETS = ("Jane Doe", "jane.doe@example.com", "Security Lead", "Secret Team Name")


def responder(name: str, email: str, title: str = "Incident Responder") -> dict[str, str]:
    return {"Name": name, "JobTitle": title, "Email": email}


TEAM = [
    responder("Jane Doe", "jane.doe@example.com", "Security Lead"),
    responder("John Roe", "john.roe@example.com"),
    responder("Ann Poe", "ann.poe@example.com"),
]


def properties(**changes: Any) -> dict[str, Any]:
    """The base declaration with ``changes`` (a value of None drops the property)."""
    base: dict[str, Any] = {
        "ServiceToken": TOKEN,
        "MembershipId": MID,
        "MembershipName": "Secret Team Name",
        "IncidentResponseTeam": copy.deepcopy(TEAM),
        "OptInFeatures": [{"FeatureName": "Triage", "IsEnabled": True}],
        "OrganizationalUnits": list(OUS),
        "OnDelete": "Retain",
    }
    for key, value in changes.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def resource(props: Mapping[str, Any], policy: str = "Retain") -> dict[str, Any]:
    return {
        "Type": "Custom::SecurityIRMembership",
        "DeletionPolicy": policy,
        "UpdateReplacePolicy": policy,
        "Properties": dict(props),
    }


def state(
    *,
    membership_id: str = MID,
    ous: tuple[str, ...] = OUS,
    triage: bool = True,
    cover: bool = False,
) -> dict[str, Any]:
    """A GetMembership response."""
    return {
        "membershipId": membership_id,
        "accountId": ACCOUNT,
        "region": REGION,
        "membershipName": "Secret Team Name",
        "membershipStatus": "Active",
        "incidentResponseTeam": [
            {"name": r["Name"], "jobTitle": r["JobTitle"], "email": r["Email"]} for r in TEAM
        ],
        "optInFeatures": [{"featureName": "Triage", "isEnabled": triage}],
        "membershipAccountsConfigurations": {
            "coverEntireOrganization": cover,
            "organizationalUnits": list(ous),
        },
    }


@dataclass(frozen=True)
class Case:
    """One row: ``rule`` must come out ``expect`` ("pass" or "fail")."""

    name: str
    rule: str
    expect: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    actual: dict[str, Any] = field(default_factory=state)
    settings: dict[str, str] = field(default_factory=dict)


BASE = resource(properties())
CASES: tuple[Case, ...] = (
    Case("valid", "valid-declaration", "pass", BASE, BASE),
    Case(
        "invalid-email",
        "valid-declaration",
        "fail",
        BASE,
        resource(
            properties(IncidentResponseTeam=[*TEAM[:2], responder("Ann Poe", "not-an-email")])
        ),
    ),
    Case(
        "enough-responders", "min-responders", "pass", BASE, BASE, settings={"MinResponders": "3"}
    ),
    Case(
        "too-few-responders",
        "min-responders",
        "fail",
        BASE,
        resource(properties(IncidentResponseTeam=TEAM[:2])),
        settings={"MinResponders": "3"},
    ),
    Case(
        "domains-allowed",
        "responder-email-domains",
        "pass",
        None,
        BASE,
        settings={"AllowedEmailDomains": "example.com"},
    ),
    Case(
        "personal-mailbox",
        "responder-email-domains",
        "fail",
        BASE,
        resource(
            properties(IncidentResponseTeam=[*TEAM[:2], responder("Ann Poe", "ann@gmail.com")])
        ),
        settings={"AllowedEmailDomains": "example.com,*.example.org"},
    ),
    Case("triage-kept", "triage-stays-on", "pass", BASE, BASE),
    Case(
        "triage-turned-off",
        "triage-stays-on",
        "fail",
        BASE,
        resource(properties(OptInFeatures=[{"FeatureName": "Triage", "IsEnabled": False}])),
    ),
    Case(
        "triage-already-off",
        "triage-stays-on",
        "pass",
        resource(properties(OptInFeatures=[{"FeatureName": "Triage", "IsEnabled": False}])),
        resource(properties(OptInFeatures=[{"FeatureName": "Triage", "IsEnabled": False}])),
        actual=state(triage=False),
    ),
    Case(
        "few-ous-removed",
        "max-ous-removed",
        "pass",
        BASE,
        resource(properties(OrganizationalUnits=list(OUS[:5]))),
    ),
    Case(
        "many-ous-removed",
        "max-ous-removed",
        "fail",
        BASE,
        resource(properties(OrganizationalUnits=list(OUS[:1]))),
    ),
    # Six are dropped from the declaration, but only three are still
    # associated: the function removes three, as plan counts them.
    Case(
        "many-declared-few-actual",
        "max-ous-removed",
        "pass",
        BASE,
        resource(properties(OrganizationalUnits=list(OUS[:1]))),
        actual=state(ous=OUS[:4]),
        settings={"MaxOrganizationalUnitsRemoved": "3"},
    ),
    Case(
        "removal-removes-ous",
        "max-ous-removed",
        "fail",
        resource(properties(OnDelete="RemoveOrganizationalUnits"), policy="Delete"),
        None,
        settings={"AllowRemovalWithoutRetain": "true"},
    ),
    Case(
        "cover-kept",
        "cover-entire-organization-stays",
        "pass",
        resource(properties(OrganizationalUnits=None, CoverEntireOrganization=True)),
        resource(properties(OrganizationalUnits=None, CoverEntireOrganization=True)),
        actual=state(ous=(), cover=True),
    ),
    Case(
        "cover-dropped",
        "cover-entire-organization-stays",
        "fail",
        resource(properties(OrganizationalUnits=None, CoverEntireOrganization=True)),
        resource(properties(OrganizationalUnits=None, CoverEntireOrganization=False)),
        actual=state(ous=(), cover=True),
    ),
    Case("same-membership", "membership-id-fixed", "pass", BASE, BASE),
    Case(
        "retargeted",
        "membership-id-fixed",
        "fail",
        BASE,
        resource(properties(MembershipId=OTHER_MID)),
        actual=state(membership_id=OTHER_MID),
    ),
    Case("removed-retained", "retain-on-removal", "pass", BASE, None),
    Case(
        "removed-deleted",
        "retain-on-removal",
        "fail",
        resource(properties(), policy="Delete"),
        None,
    ),
    Case(
        "on-delete-allowed",
        "on-delete-remove-allowed",
        "pass",
        BASE,
        resource(properties(OnDelete="RemoveOrganizationalUnits")),
        settings={"AllowOnDeleteRemove": f"{STACK}/Member*"},
    ),
    Case(
        "on-delete-not-allowed",
        "on-delete-remove-allowed",
        "fail",
        BASE,
        resource(properties(OnDelete="RemoveOrganizationalUnits")),
    ),
)


def template(res: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A template holding the resource (and a queue, which the rules ignore)."""
    if res is None:
        return {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}
    return {"Resources": {LOGICAL_ID: dict(res), "Queue": {"Type": "AWS::SQS::Queue"}}}


def outcomes(findings: Any) -> dict[str, str]:
    """Rule -> outcome for the case's resource, from a verdict's findings."""
    return {f.rule: f.outcome for f in findings if f.logical_id == LOGICAL_ID}


# -- through the check command ------------------------------------------------------


def unusable() -> cli.Clients:
    def refuse(region: str | None) -> Any:
        raise AssertionError("an offline check must not create AWS clients")

    return cli.Clients(refuse, refuse)


def write_case(case: Case, tmp: Path) -> list[str]:
    """The case as files, and the ``check`` arguments that read them."""
    new, old = tmp / "template.json", tmp / "previous.json"
    new.write_text(json.dumps(template(case.new)))
    argv = ["check", "--template-file", str(new), "--stack-name", STACK]
    if case.old is not None:
        old.write_text(json.dumps(template(case.old)))
        argv += ["--previous-template-file", str(old)]
    states = tmp / "state.json"
    states.write_text(json.dumps(case.actual))
    argv += ["--state-file", str(states)]
    for name, value in case.settings.items():
        argv += ["--set", f"{name}={value}"]
    return argv


def run(argv: list[str], clients: cli.Clients | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, clients=clients or unusable(), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def check_outcomes(case: Case, tmp: Path) -> dict[str, str]:
    """Rule -> outcome for the case, through ``run_check`` (what ``check`` prints from)."""
    argv = write_case(case, tmp)
    previous = argv[argv.index("--previous-template-file") + 1] if case.old else None
    report = run_check(
        unusable(),
        templates=[argv[2]],
        previous=previous,
        stack_name=STACK,
        state_files=[argv[argv.index("--state-file") + 1]],
        settings=[f"{k}={v}" for k, v in case.settings.items()],
    )
    return outcomes(report.verdict.findings)
