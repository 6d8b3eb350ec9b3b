"""A resource's declaration record and latest journal entry, masked (``journal``).

Why one document for both formats: the text is rendered from the JSON
document, so the two cannot say different things, and masking happens in
one place. An entry holds the membership name and the team (names, emails,
job titles) as they were before its change; unless ``show`` they are left
out, and the team is only counted. Digests, ids, OU ids, counts, feature
flags and tag keys are not sensitive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..journal import Entry, Record, Touched
from .labels import MASKED_NOTE


@dataclass(frozen=True)
class JournalReport:
    """One resource's declaration record and latest journal entry (either may be None)."""

    stack_id: str
    logical_id: str
    table_name: str
    record: Record | None
    entry: Entry | None


def touched_properties(touched: Touched) -> list[str]:
    """The properties an entry's change touched, by their declared names."""
    named = [
        ("MembershipName", touched.name_before is not None),
        ("IncidentResponseTeam", touched.team_before is not None),
        ("OptInFeatures", bool(touched.features_before)),
        ("CoverEntireOrganization", touched.cover_before is not None),
        ("OrganizationalUnits", bool(touched.ous_added or touched.ous_removed)),
        ("Tags", bool(touched.tags_before or touched.tags_after)),
    ]
    return [name for name, touched_it in named if touched_it]


def _touched_json(touched: Touched, show: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "properties": touched_properties(touched),
        "respondersBefore": None if touched.team_before is None else len(touched.team_before),
        "featuresBefore": dict(sorted(touched.features_before.items())),
        "coverEntireOrganizationBefore": touched.cover_before,
        "organizationalUnitsAdded": sorted(touched.ous_added),
        "organizationalUnitsRemoved": sorted(touched.ous_removed),
        "reactivated": touched.reactivated,
        "tagKeys": sorted({*touched.tags_before, *touched.tags_after}),
    }
    if show:
        out["membershipNameBefore"] = touched.name_before
        out["teamBefore"] = (
            None if touched.team_before is None else [r.to_api() for r in touched.team_before]
        )
        out["tagsBefore"] = dict(sorted(touched.tags_before.items()))
        out["tagsAfter"] = dict(sorted(touched.tags_after.items()))
    return out


def _record_json(record: Record | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {"declaration": record.declaration, "organizationalUnits": sorted(record.ous)}


def _entry_json(entry: Entry, show: bool) -> dict[str, Any]:
    return {
        "requestId": entry.request_id,
        "requestType": entry.request_type,
        "membershipId": entry.membership_id,
        "phase": entry.phase,
        "planned": entry.planned,
        "applied": entry.applied,
        "unknown": entry.unknown,
        "oldDeclaration": entry.old,
        "newDeclaration": entry.new,
        "previousApplied": entry.previous_applied,
        "organizationalUnitsNow": None if entry.ous_now is None else sorted(entry.ous_now),
        "recordBefore": _record_json(entry.record_before),
        "touched": _touched_json(entry.touched, show),
    }


def journal_json(report: JournalReport, show: bool) -> dict[str, Any]:
    """The document ``--format json`` prints (and the text is rendered from)."""
    return {
        "stackId": report.stack_id,
        "logicalResourceId": report.logical_id,
        "tableName": report.table_name,
        "record": _record_json(report.record),
        "entry": None if report.entry is None else _entry_json(report.entry, show),
        "sensitiveShown": show,
    }


def _listed(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def _touched_lines(touched: dict[str, Any]) -> list[str]:
    lines = ["  touched:      " + _listed(touched["properties"])]
    if "membershipNameBefore" in touched and touched["membershipNameBefore"] is not None:
        lines.append(f"    MembershipName before: {touched['membershipNameBefore']}")
    if touched["respondersBefore"] is not None:
        lines.append(f"    IncidentResponseTeam before: {touched['respondersBefore']} responders")
        for responder in touched.get("teamBefore") or ():
            lines.append(
                f"      {responder['name']} <{responder['email']}> {responder['jobTitle']}"
            )
    for name, before in touched["featuresBefore"].items():
        lines.append(f"    OptInFeatures {name} before: {str(before).lower()}")
    if touched["coverEntireOrganizationBefore"] is not None:
        before = str(touched["coverEntireOrganizationBefore"]).lower()
        lines.append(f"    CoverEntireOrganization before: {before}")
    if touched["organizationalUnitsAdded"]:
        lines.append("    OUs added:   " + ", ".join(touched["organizationalUnitsAdded"]))
    if touched["organizationalUnitsRemoved"]:
        lines.append("    OUs removed: " + ", ".join(touched["organizationalUnitsRemoved"]))
    if touched["reactivated"]:
        lines.append("    reactivated (cannot be undone)")
    if touched["tagKeys"]:
        lines.append("    tag keys: " + ", ".join(touched["tagKeys"]))
    for key in touched["tagKeys"] if "tagsBefore" in touched else ():
        before, after = touched["tagsBefore"].get(key), touched["tagsAfter"].get(key)
        lines.append(f"      {key}: {before} -> {after}")
    return lines


def _entry_lines(entry: dict[str, Any]) -> list[str]:
    record_before = entry["recordBefore"]
    return [
        "latest journal entry:",
        f"  request:      {entry['requestId']} ({entry['requestType']})",
        f"  membership:   {entry['membershipId']}",
        f"  phase:        {entry['phase']} (planned {entry['planned']}, applied "
        f"{entry['applied']}, unknown {entry['unknown']})",
        f"  declarations: {entry['oldDeclaration'] or '-'} -> {entry['newDeclaration'] or '-'}",
        "  old OUs removable: " + ("yes" if entry["previousApplied"] else "no"),
        "  OUs after its last call: "
        + (
            "not recorded"
            if entry["organizationalUnitsNow"] is None
            else _listed(entry["organizationalUnitsNow"])
        ),
        "  record before: " + ("none" if record_before is None else record_before["declaration"]),
        *_touched_lines(entry["touched"]),
    ]


def journal_text(document: dict[str, Any]) -> str:
    """The document for a terminal."""
    record = document["record"]
    lines = [
        f"resource {document['logicalResourceId']} of stack {document['stackId']}",
        f"table {document['tableName']}",
        "",
        "declaration record: "
        + (
            "none (not converged by this version, or removed by its Delete)"
            if record is None
            else f"{record['declaration']}, OUs: {_listed(record['organizationalUnits'])}"
        ),
        "",
    ]
    entry = document["entry"]
    lines += (
        ["latest journal entry: none (never written, or expired after 14 days)"]
        if entry is None
        else _entry_lines(entry)
    )
    if not document["sensitiveShown"]:
        lines += ["", MASKED_NOTE]
    return "\n".join(lines)
