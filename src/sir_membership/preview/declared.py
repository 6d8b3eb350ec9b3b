"""Declared changes: what the template changes, property by property, masked.

This is the declaration, not the live state; the calls come from the
function's own planner (``steps``). Nothing here shows a name, email, job
title or membership name unless a caller asks for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..plan import MASK
from ..properties import CLOUDFORMATION_KEYS, PROPERTY_KEYS
from .base import KNOWN_KEYS, PUBLIC_RESPONDER_KEYS, SENSITIVE_PROPERTIES, normal


def mask_property(key: str, value: Any) -> Any:
    """A property's value fit for a log or a terminal.

    Keys the function does not know are masked as a whole: a misspelled
    ``IncidentResponseTeam`` holds the same emails.
    """
    if value is None or key in ("MembershipId", "OrganizationalUnits", "OptInFeatures"):
        return value
    if key == "IncidentResponseTeam" and isinstance(value, list):
        return [
            {k: v if k in PUBLIC_RESPONDER_KEYS else MASK for k, v in r.items()}
            if isinstance(r, Mapping)
            else MASK
            for r in value
        ]
    if key in SENSITIVE_PROPERTIES or key not in KNOWN_KEYS:
        return MASK
    return value


def _team_keys(team: Any) -> dict[str, Any]:
    if not isinstance(team, list):
        return {}
    return {
        str(r.get("Email", "")).lower(): normal(r)
        for r in team
        if isinstance(r, Mapping) and r.get("Email")
    }


@dataclass(frozen=True)
class DeclaredChange:
    """One property that differs between the old and the new declaration."""

    key: str
    kind: Literal["added", "removed", "modified"]
    before: Any = field(default=None, repr=False)
    after: Any = field(default=None, repr=False)

    @property
    def ous_added(self) -> tuple[str, ...]:
        """OUs newly declared (the declaration, not what the service has)."""
        return tuple(sorted(_ou_set(self.after) - _ou_set(self.before)))

    @property
    def ous_removed(self) -> tuple[str, ...]:
        """OUs no longer declared."""
        return tuple(sorted(_ou_set(self.before) - _ou_set(self.after)))

    def summary(self) -> str:
        """A description without sensitive values."""
        if self.key == "OrganizationalUnits":
            parts = [f"+{ou}" for ou in self.ous_added] + [f"-{ou}" for ou in self.ous_removed]
            return " ".join(parts) or self.kind
        if self.key == "IncidentResponseTeam":
            return self._team_summary()
        if self.key in SENSITIVE_PROPERTIES or self.key not in KNOWN_KEYS:
            return f"{self.kind} (value hidden)"
        return f"{_compact(self.before)} -> {_compact(self.after)}"

    def _team_summary(self) -> str:
        old, new = _team_keys(self.before), _team_keys(self.after)
        count = [len(v) if isinstance(v, list) else 0 for v in (self.before, self.after)]
        changed = sum(1 for k in old.keys() & new.keys() if old[k] != new[k])
        return (
            f"{count[0]} -> {count[1]} responders: {len(new.keys() - old.keys())} added, "
            f"{len(old.keys() - new.keys())} removed, {changed} changed (values hidden)"
        )

    def to_json(self, show_sensitive: bool) -> dict[str, Any]:
        """The change as data; values masked unless ``show_sensitive``."""
        shown = (
            (self.before, self.after)
            if show_sensitive
            else (
                mask_property(self.key, self.before),
                mask_property(self.key, self.after),
            )
        )
        out: dict[str, Any] = {
            "property": self.key,
            "change": self.kind,
            "summary": self.summary(),
            "before": shown[0],
            "after": shown[1],
        }
        if self.key == "OrganizationalUnits":
            out["added"] = list(self.ous_added)
            out["removed"] = list(self.ous_removed)
        return out


def _ou_set(value: Any) -> frozenset[str]:
    return frozenset(str(v) for v in value) if isinstance(value, list) else frozenset()


def _compact(value: Any) -> str:
    return "(absent)" if value is None else json.dumps(normal(value), separators=(",", ":"))


def declared_changes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> tuple[DeclaredChange, ...]:
    """What the template changes, key by key, in the order the function documents them.

    OUs compare as sets: their order means nothing to the function.
    """
    old, new = before or {}, after or {}
    known = (*PROPERTY_KEYS, *sorted(CLOUDFORMATION_KEYS))
    keys = [*known, *sorted(k for k in {*old, *new} if k not in known)]
    out = []
    for key in keys:
        if key not in old and key not in new:
            continue
        b, a = old.get(key), new.get(key)
        if key not in old:
            out.append(DeclaredChange(key, "added", None, a))
        elif key not in new:
            out.append(DeclaredChange(key, "removed", b, None))
        elif key == "OrganizationalUnits" and isinstance(a, list) and isinstance(b, list):
            if _ou_set(a) != _ou_set(b):
                out.append(DeclaredChange(key, "modified", b, a))
        elif normal(a) != normal(b):
            out.append(DeclaredChange(key, "modified", b, a))
    return tuple(out)
