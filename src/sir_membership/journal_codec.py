"""The journal's items as the JSON text stored in the table (``journal_store``).

Why apart from ``journal``: the decisions there are about values; how those
values are spelled in DynamoDB (and how an older version's items still read)
is a job of its own.
"""

from __future__ import annotations

import json
from typing import Any

from .journal import Entry, Record, Touched
from .membership import Responder


def record_to_json(record: Record) -> str:
    """The record as the JSON text stored in the table."""
    return json.dumps({"declaration": record.declaration, "ous": sorted(record.ous)})


def record_from_json(text: str) -> Record:
    """The record stored as ``text``."""
    raw = json.loads(text)
    return Record(str(raw["declaration"]), frozenset(raw.get("ous") or ()))


def _responders_to_json(team: tuple[Responder, ...] | None) -> list[dict[str, Any]] | None:
    return None if team is None else [r.to_api() for r in team]


def _responders_from_json(raw: Any) -> tuple[Responder, ...] | None:
    if raw is None:
        return None
    return tuple(
        Responder(
            name=r["name"],
            job_title=r["jobTitle"],
            email=r["email"],
            communication_preferences=(
                frozenset(r["communicationPreferences"])
                if "communicationPreferences" in r
                else None
            ),
        )
        for r in raw
    )


def to_json(entry: Entry) -> str:
    """The entry as the JSON text stored in the table."""
    t = entry.touched
    return json.dumps(
        {
            "requestId": entry.request_id,
            "requestType": entry.request_type,
            "membershipId": entry.membership_id,
            "old": entry.old,
            "new": entry.new,
            "planned": entry.planned,
            "applied": entry.applied,
            "unknown": entry.unknown,
            "phase": entry.phase,
            "ousNow": None if entry.ous_now is None else sorted(entry.ous_now),
            "lastWrite": entry.last_write,
            "previousApplied": entry.previous_applied,
            "resting": entry.resting,
            "replacement": entry.replacement,
            "recordBefore": None
            if entry.record_before is None
            else json.loads(record_to_json(entry.record_before)),
            "touched": {
                "nameBefore": t.name_before,
                "nameAfter": t.name_after,
                "teamBefore": _responders_to_json(t.team_before),
                "teamAfter": t.team_after,
                "featuresBefore": dict(t.features_before),
                "coverBefore": t.cover_before,
                "ousAdded": sorted(t.ous_added),
                "ousRemoved": sorted(t.ous_removed),
                "reactivated": t.reactivated,
                "tagsBefore": dict(t.tags_before),
                "tagsAfter": dict(t.tags_after),
            },
        },
        sort_keys=True,
    )


def from_json(text: str) -> Entry:
    """The entry stored as ``text`` (see ``to_json``)."""
    raw = json.loads(text)
    t = raw["touched"]
    return Entry(
        request_id=raw["requestId"],
        request_type=raw["requestType"],
        membership_id=raw["membershipId"],
        old=raw["old"],
        new=raw["new"],
        planned=int(raw["planned"]),
        applied=int(raw["applied"]),
        unknown=int(raw["unknown"]),
        phase=raw["phase"],
        ous_now=None if raw.get("ousNow") is None else frozenset(raw["ousNow"]),
        last_write=float(raw.get("lastWrite") or 0.0),
        previous_applied=bool(raw.get("previousApplied", True)),
        resting=bool(raw.get("resting", False)),
        replacement=bool(raw.get("replacement", False)),
        record_before=None
        if raw.get("recordBefore") is None
        else record_from_json(json.dumps(raw["recordBefore"])),
        touched=Touched(
            name_before=t["nameBefore"],
            name_after=t["nameAfter"],
            team_before=_responders_from_json(t["teamBefore"]),
            team_after=t["teamAfter"],
            features_before={str(k): bool(v) for k, v in t["featuresBefore"].items()},
            cover_before=t["coverBefore"],
            ous_added=frozenset(t["ousAdded"]),
            ous_removed=frozenset(t["ousRemoved"]),
            reactivated=bool(t["reactivated"]),
            tags_before=dict(t.get("tagsBefore") or {}),
            tags_after=dict(t.get("tagsAfter") or {}),
        ),
    )
