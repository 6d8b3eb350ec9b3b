"""The guardrails' parameters: one name per rule, one safe default each.

The same names are the hook template's parameters (``guardrails.yaml``,
passed to the hook function as environment variables of the same name) and
the ``check`` command's ``--set NAME=VALUE``, so a setting means one thing
wherever the rules run. Values are parsed here, once; a bad value is a
``ConfigurationError`` naming the parameter and what it accepts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..errors import ConfigurationError

#: No limit on the OUs one change may remove (``MaxOrganizationalUnitsRemoved``).
NO_LIMIT = -1
_DOMAIN = re.compile(r"(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)+")
_GLOB = re.compile(r"[-A-Za-z0-9*?\[\]!/]+")
_TOKEN = re.compile(r"arn:aws[a-z-]*:(lambda|sns):[a-z0-9-]+:\d{12}:[A-Za-z0-9_:.-]+")


@dataclass(frozen=True)
class Parameter:
    """One setting: its name (template parameter / ``--set``), default and meaning."""

    name: str
    field: str
    default: str
    description: str


PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        "MinResponders",
        "min_responders",
        "2",
        "Fewest responders a declared IncidentResponseTeam may have (2 is the service's own "
        "minimum; raise it to what your incident response plan needs; 0 turns the rule off).",
    ),
    Parameter(
        "AllowedEmailDomains",
        "allowed_email_domains",
        "",
        "Comma-separated e-mail domains responders must use (example.com; *.example.com "
        "for its subdomains). Empty: any domain.",
    ),
    Parameter(
        "AllowTriageOff",
        "allow_triage_off",
        "false",
        "true lets a change turn the Triage feature off.",
    ),
    Parameter(
        "MaxOrganizationalUnitsRemoved",
        "max_ous_removed",
        "5",
        "Most OUs one change may remove from coverage, counted against the membership's "
        "actual OUs as the function plans (-1: no limit).",
    ),
    Parameter(
        "AllowCoverEntireOrganizationOff",
        "allow_cover_off",
        "false",
        "true lets CoverEntireOrganization go from true to false.",
    ),
    Parameter(
        "AllowMembershipIdChange",
        "allow_membership_id_change",
        "false",
        "true lets a resource's MembershipId change (a replacement: the stack stops "
        "governing the old membership).",
    ),
    Parameter(
        "AllowRemovalWithoutRetain",
        "allow_removal_without_retain",
        "false",
        "true lets a membership resource leave a stack whose DeletionPolicy is not Retain "
        "or RetainExceptOnCreate.",
    ),
    Parameter(
        "AllowOnDeleteRemove",
        "allow_on_delete_remove",
        "",
        "Comma-separated STACK/LOGICAL_ID globs allowed to declare OnDelete: "
        "RemoveOrganizationalUnits. Empty: none.",
    ),
    Parameter(
        "FailOnUnevaluable",
        "fail_on_unevaluable",
        "false",
        "true fails a rule that cannot be evaluated (an unresolved Ref, a NoEcho parameter, "
        "a membership that cannot be read); false warns.",
    ),
    Parameter(
        "ServiceTokens",
        "service_tokens",
        "",
        "Comma-separated provider function ARNs: AWS::CloudFormation::CustomResource and "
        "other Custom:: resources with one of these ServiceTokens are memberships too.",
    ),
)
NAMES = tuple(p.name for p in PARAMETERS)


@dataclass(frozen=True)
class Settings:
    """Parsed settings; the defaults are ``PARAMETERS``' defaults."""

    min_responders: int = 2
    allowed_email_domains: tuple[str, ...] = ()
    allow_triage_off: bool = False
    max_ous_removed: int = 5
    allow_cover_off: bool = False
    allow_membership_id_change: bool = False
    allow_removal_without_retain: bool = False
    allow_on_delete_remove: tuple[str, ...] = ()
    fail_on_unevaluable: bool = False
    service_tokens: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> Settings:
        """Settings from parameter names to text (missing names keep their defaults)."""
        unknown = sorted(set(values) - set(NAMES))
        if unknown:
            raise ConfigurationError(
                f"unknown guardrail setting {', '.join(unknown)}; known: {', '.join(NAMES)}"
            )
        parsed: dict[str, Any] = {}
        for parameter in PARAMETERS:
            text = values.get(parameter.name, parameter.default)
            parsed[parameter.field] = _parse(parameter, str(text).strip())
        return cls(**parsed)


def _parse(parameter: Parameter, text: str) -> Any:
    default = {f.name: f.default for f in fields(Settings)}[parameter.field]
    name = parameter.name
    if isinstance(default, bool):
        if text.lower() not in ("true", "false"):
            raise ConfigurationError(f"{name} must be true or false")
        return text.lower() == "true"
    if isinstance(default, int):
        low = 0 if parameter.field == "min_responders" else NO_LIMIT
        if not re.fullmatch(r"-?\d{1,4}", text) or int(text) < low:
            raise ConfigurationError(f"{name} must be a whole number of at least {low}")
        return int(text)
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    pattern = {
        "allowed_email_domains": _DOMAIN,
        "allow_on_delete_remove": _GLOB,
        "service_tokens": _TOKEN,
    }[parameter.field]
    if parameter.field == "allowed_email_domains":
        items = tuple(item.lower() for item in items)
    bad = [item for item in items if not pattern.fullmatch(item)]
    if bad:
        raise ConfigurationError(
            f"{name} has {len(bad)} malformed entr(ies): {parameter.description}"
        )
    return items
