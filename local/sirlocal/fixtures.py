"""Fixtures as data and the checks on them, shared by the scenarios and both demos.

Why: the memberships, people and OU ids the end-to-end runs use, and the way
a call or a membership is summarised and compared (counts and ids only,
never a name, email, job title or membership name), are the same whichever
engine plays the stack: the project's own driver (:mod:`sirlocal.scenarios`)
or ministack (:mod:`sirlocal.ministack_demo`). Standard library only (and the
emulator's call record), so the ministack demo needs no test-only package.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sirlocal.emulator import CallRecord

A = "m-e2ea00000001"
B = "m-e2eb00000002"
C = "m-e2ec00000003"  # never seeded
ALIASES = {A: "A", B: "B", C: "C"}

#: Fake people: distinctive strings, so a leak into the logs cannot go unnoticed.
PEOPLE = (
    ("Quentin Zephyrsson", "Head of Secret Response", "quentin.zephyrsson@example.com"),
    ("Ottilie Marchbanks", "Incident Whisperer", "ottilie.marchbanks@example.com"),
    ("Wilhelmina Tarrant", "Forensics Oracle", "wilhelmina.tarrant@example.com"),
)
NAMES = ("Quokka Secret Membership", "Renamed Quokka Membership", "Wombat Secret Membership")
FOREIGN = ("ou-f0re-00000001", "ou-f0re-00000002")  # associated by someone else


def ou(i: int) -> str:
    """A valid, distinct OU id."""
    return f"ou-e2e1-{i:08d}"


def ous(first: int, last: int) -> list[str]:
    """``ou(first)`` .. ``ou(last)`` inclusive."""
    return [ou(i) for i in range(first, last + 1)]


def team(first: int = 0, last: int = 2) -> list[dict[str, Any]]:
    """Declared responders ``PEOPLE[first:last]`` (property form)."""
    return [{"Name": n, "JobTitle": t, "Email": e} for n, t, e in PEOPLE[first:last]]


def api_team(first: int = 0, last: int = 2) -> list[dict[str, Any]]:
    """The same responders as the service holds them."""
    return [{"name": n, "jobTitle": t, "email": e} for n, t, e in PEOPLE[first:last]]


def seed(
    membership_id: str = A,
    *,
    name: str = NAMES[0],
    status: str = "Active",
    ou_ids: Iterable[str] = (ou(1), ou(2), FOREIGN[0]),
    cover: bool = False,
    triage: bool = True,
) -> dict[str, Any]:
    """A membership for the emulator (2 responders, Triage on unless ``triage`` is False)."""
    return {
        "membershipId": membership_id,
        "membershipName": name,
        "membershipStatus": status,
        "incidentResponseTeam": api_team(),
        "optInFeatures": [{"featureName": "Triage", "isEnabled": triage}],
        "membershipAccountsConfigurations": {
            "coverEntireOrganization": cover,
            "organizationalUnits": list(ou_ids),
        },
    }


def declare(**overrides: Any) -> dict[str, Any]:
    """A valid declaration matching ``seed()`` (``None`` drops a key)."""
    base: dict[str, Any] = {
        "MembershipId": A,
        "MembershipName": NAMES[0],
        "IncidentResponseTeam": team(),
        "OptInFeatures": [{"FeatureName": "Triage", "IsEnabled": True}],
        "OrganizationalUnits": [ou(1), ou(2)],
        "OnDelete": "Retain",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@dataclass(frozen=True)
class Expect:
    """What a membership must look like at the end (``None``: not checked)."""

    ous: frozenset[str] | None = None
    name: str | None = None
    status: str | None = "Active"
    emails: frozenset[str] | None = None
    features: Mapping[str, bool] | None = None
    cover: bool | None = None


def call_summary(record: CallRecord, aliases: Mapping[str, str] = ALIASES) -> str:
    """One call as ``"Update A +5 -2 name !ThrottlingException"`` (counts only, no values)."""
    op = {"GetMembership": "Get", "UpdateMembership": "Update"}.get(
        record.operation, record.operation
    )
    text = f"{op} {aliases.get(record.membership_id or '', record.membership_id or '?')}"
    if record.operation == "UpdateMembership":
        request = record.request
        accounts = request.get("membershipAccountsConfigurationsUpdate") or {}
        adds = len(accounts.get("organizationalUnitsToAdd") or [])
        removes = len(accounts.get("organizationalUnitsToRemove") or [])
        text += f" +{adds} -{removes}"
        present = {
            "cover": "coverEntireOrganization" in accounts,
            "features": "optInFeatures" in request,
            "name": "membershipName" in request,
            "team": "incidentResponseTeam" in request,
            "undo": "undoMembershipCancellation" in request,
        }
        fields = [label for label, there in present.items() if there]
        if fields:
            text += " " + " ".join(fields)
    if record.error:
        text += f" !{record.error}"
    elif record.status is None:
        text += " !reset"
    return text


def mask(value: str | None) -> str:
    """A sensitive string shown only by its length (nothing of its text)."""
    if not value:
        return "-"
    return f"*** ({len(value)} chars)"


def state_problems(membership: Mapping[str, Any], expect: Expect, alias: str) -> list[str]:
    """How ``membership`` (as the emulator stores it) differs from ``expect``."""
    out = []
    accounts = membership.get("membershipAccountsConfigurations") or {}
    actual_ous = frozenset(accounts.get("organizationalUnits") or ())
    if expect.ous is not None and actual_ous != expect.ous:
        missing = sorted(expect.ous - actual_ous)
        extra = sorted(actual_ous - expect.ous)
        out.append(f"{alias}: OUs differ (missing {missing}, unexpected {extra})")
    if expect.name is not None and membership.get("membershipName") != expect.name:
        out.append(
            f"{alias}: name is {mask(membership.get('membershipName'))}, "
            f"expected {mask(expect.name)}"
        )
    if expect.status is not None and membership.get("membershipStatus") != expect.status:
        out.append(f"{alias}: status {membership.get('membershipStatus')} != {expect.status}")
    if expect.emails is not None:
        emails = frozenset(r["email"].lower() for r in membership.get("incidentResponseTeam") or [])
        if emails != {e.lower() for e in expect.emails}:
            out.append(f"{alias}: team has {len(emails)} responders, not the declared ones")
    if expect.features is not None:
        features = {f["featureName"]: f["isEnabled"] for f in membership.get("optInFeatures") or []}
        if features != dict(expect.features):
            out.append(f"{alias}: features {features} != {dict(expect.features)}")
    if expect.cover is not None and bool(accounts.get("coverEntireOrganization")) != expect.cover:
        out.append(f"{alias}: coverEntireOrganization != {expect.cover}")
    return out


_SENSITIVE_KEYS = frozenset(
    {"Name", "JobTitle", "Email", "MembershipName", "name", "jobTitle", "email", "membershipName"}
)


def sensitive_values(*documents: Any) -> set[str]:
    """Every name, job title, email and membership name in ``documents`` (5+ chars)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                if key in _SENSITIVE_KEYS and isinstance(item, str) and len(item) >= 5:
                    found.add(item)
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    for document in documents:
        walk(document)
    return found


def log_leaks(logs: str, secrets: Iterable[str], urls: Iterable[str]) -> list[str]:
    """What of ``secrets`` and the pre-signed ``urls`` appears in ``logs``."""
    lowered = logs.lower()
    leaks = [f"log holds a sensitive value {mask(s)}" for s in secrets if s.lower() in lowered]
    for marker in ("X-Amz-Signature", "X-Amz-Credential"):
        if marker.lower() in lowered:
            leaks.append(f"log holds {marker}")
    for url in urls:
        query = urlsplit(url).query
        signature = (parse_qs(query).get("X-Amz-Signature") or [""])[0]
        if query and query in logs:
            leaks.append("log holds a ResponseURL query string")
        if signature and signature in logs:
            leaks.append("log holds a ResponseURL signature")
    return sorted(set(leaks))
