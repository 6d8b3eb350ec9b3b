"""What every part of the preview shares: its error, statuses and exit codes.

Kept apart so each job of the preview (reading a change set, selecting,
planning, drift, templates, rendering) is a module of its own that imports
only this, never another job's internals.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ..properties import CLOUDFORMATION_KEYS, PROPERTY_KEYS

RESOURCE_TYPE = "Custom::SecurityIRMembership"
#: A value CloudFormation fills in only when the change set executes: its own
#: placeholders and dynamic references (``{{resolve:ssm:...}}``).
PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")
SENSITIVE_PROPERTIES = frozenset({"MembershipName", "IncidentResponseTeam"})
KNOWN_KEYS = frozenset(PROPERTY_KEYS) | CLOUDFORMATION_KEYS
#: The only responder field whose value may be shown.
PUBLIC_RESPONDER_KEYS = frozenset({"CommunicationPreferences"})

Status = Literal["skip", "no-change", "change", "unresolved", "fail"]
#: Statuses from harmless to blocking; a whole preview takes its worst.
SEVERITY: tuple[Status, ...] = ("skip", "no-change", "change", "unresolved", "fail")

#: Exit codes: 0 nothing would change / no drift; 2 changes planned / drift
#: found; 1 an error, or the function would fail. CI reads 2 as "review", not
#: as a failed job.
EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2
EXIT_CODES: Mapping[str, int] = {
    "skip": EXIT_OK,
    "no-change": EXIT_OK,
    "in-sync": EXIT_OK,
    "change": EXIT_CHANGES,
    "unresolved": EXIT_CHANGES,
    "drifted": EXIT_CHANGES,
    "fail": EXIT_ERROR,
}


class PreviewError(Exception):
    """The preview cannot be made at all; ``str()`` is the one line to show."""


def worst(statuses: Sequence[Status], default: Status = "no-change") -> Status:
    """The most severe status, so one failing resource decides the exit code."""
    return max(statuses, key=SEVERITY.index, default=default)


def arn_part(arn: str, index: int) -> str:
    """One colon-separated field of an ARN (``""`` if it is not one)."""
    parts = arn.split(":")
    return parts[index] if len(parts) > 5 and parts[0] == "arn" else ""


def normal(value: Any) -> Any:
    """CloudFormation hands every scalar to a custom resource as a string."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normal(v) for v in value]
    return value
