"""Parse and validate the resource's declared properties.

CloudFormation does not check a custom resource's properties, so this module
is the only thing between a typo and a silent no-op. It turns the raw
``ResourceProperties`` into a ``MembershipProperties`` value or raises one
``InvalidProperties`` that lists every problem, each naming the property and
what a valid value looks like, before any call is made. An invalid value is
described (its path, its length, the rule it breaks, what to declare), and
shown only when it is an identifier of a kind that is never sensitive (an OU
id, a tag key, a communication preference) and reads as one. A value
botocore's model marks sensitive (names, emails, job titles, the membership
name) is never shown, nor is an invalid ``MembershipId``: a membership name
or a job title pasted there is the likely mistake.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidProperties
from .membership import Feature, Responder
from .service_model import SizeRule, StringRule, rules

OnDelete = Literal["Retain", "RemoveOrganizationalUnits"]
ON_DELETE_VALUES: tuple[OnDelete, ...] = ("Retain", "RemoveOrganizationalUnits")

#: Keys CloudFormation itself adds to every custom resource's properties.
CLOUDFORMATION_KEYS = frozenset({"ServiceToken", "ServiceTimeout"})
PROPERTY_KEYS = (
    "MembershipId",
    "MembershipName",
    "IncidentResponseTeam",
    "OptInFeatures",
    "CoverEntireOrganization",
    "OrganizationalUnits",
    "UndoMembershipCancellation",
    "OnDelete",
    "Tags",
)
TAG_KEYS = ("Key", "Value")
#: Tag keys AWS reserves for itself: TagResource refuses them.
RESERVED_TAG_PREFIX = "aws:"
RESPONDER_KEYS = ("Name", "JobTitle", "Email", "CommunicationPreferences")
FEATURE_KEYS = ("FeatureName", "IsEnabled")


@dataclass(frozen=True)
class MembershipProperties:
    """The declared membership. ``None`` means "not managed by this resource"."""

    membership_id: str
    membership_name: str | None = field(default=None, repr=False)
    team: tuple[Responder, ...] | None = None
    features: tuple[Feature, ...] | None = None
    cover_entire_organization: bool | None = None
    organizational_units: frozenset[str] = frozenset()
    undo_cancellation: bool = False
    on_delete: OnDelete = "Retain"
    #: Declared tags as sorted (key, value) pairs; ``None``: Tags not declared.
    tags: tuple[tuple[str, str], ...] | None = None

    @property
    def tag_map(self) -> dict[str, str] | None:
        """The declared tags by key (``None``: not managed)."""
        return None if self.tags is None else dict(self.tags)


class _Problems:
    """Collects problems so one failure reports all of them at once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)


_KEY_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_ID_LIKE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _unknown_keys(
    where: str, raw: Mapping[str, Any], accepted: Sequence[str], problems: _Problems
) -> None:
    ignored = CLOUDFORMATION_KEYS if not where else frozenset()
    for key in raw:
        if key in accepted or key in ignored:
            continue
        import difflib  # noqa: PLC0415 - only a misspelt key needs it, not a cold start

        close = difflib.get_close_matches(str(key), accepted, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        # Named only when it reads as a property name: a misplaced value (a
        # responder's name or email pasted as a key) is sensitive.
        shown = key if isinstance(key, str) and _KEY_LIKE.fullmatch(key) else "(not shown)"
        label = f"{where}.{shown}" if where else shown
        problems.add(f"unknown property {label}{hint}; accepted: {', '.join(accepted)}")


def parse_bool(value: Any) -> bool | None:
    """CloudFormation sends booleans as strings; accept both, reject the rest."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _bool(label: str, value: Any, problems: _Problems) -> bool | None:
    parsed = parse_bool(value)
    if parsed is None:
        problems.add(f"{label} must be true or false")
    return parsed


#: What to declare instead of an invalid MembershipId (never shown: see the module docstring).
MEMBERSHIP_ID_FIX = (
    "declare the membership's id (m-..., as aws security-ir list-memberships shows it), "
    "not its name"
)
EMAIL_RULE = "not an email address (the service's pattern)"
EMAIL_FIX = "declare the responder's email address"
OU_FIX = (
    "declare an OU id (ou-..., as aws organizations list-organizational-units-for-parent shows it)"
)


def _string(
    label: str,
    value: Any,
    rule: StringRule,
    problems: _Problems,
    *,
    echo: bool = False,
    pattern_rule: str = "",
    fix: str = "",
) -> str | None:
    """``value`` if ``rule`` accepts it; else None, with one problem that describes it.

    ``echo``: show an invalid value that reads as an identifier (to show the
    typo); never for a value the model marks sensitive. Otherwise the
    problem gives the value's length, the rule it breaks (``pattern_rule``
    names a pattern too long to read) and ``fix``, what to declare.
    """
    if not isinstance(value, str):
        problems.add(f"{label} must be a string ({rule.problem()})")
        return None
    if rule.accepts(value):
        return value
    if echo and not rule.sensitive and _ID_LIKE.fullmatch(value):
        problems.add(f"{label} '{value}' is invalid: expected {rule.problem()}")
        return None
    broken = rule.broken(value)
    if pattern_rule and broken.startswith("does not match"):
        broken = pattern_rule
    if not fix:
        expected = rule.problem()
        fix = f"declare {'a value ' if expected.startswith('matching') else ''}{expected}"
    problems.add(f"{label} is invalid ({len(value)} characters, not shown): {broken}; {fix}")
    return None


def _list(label: str, value: Any, size: SizeRule | None, problems: _Problems) -> list[Any] | None:
    if not isinstance(value, list):
        problems.add(f"{label} must be a list")
        return None
    if size is not None:
        low, high = size.min_items or 0, size.max_items
        if len(value) < low or (high is not None and len(value) > high):
            problems.add(f"{label} must have {low} to {high} entries, not {len(value)}")
    return value


def _responder(label: str, raw: Any, problems: _Problems) -> Responder | None:
    if not isinstance(raw, dict):
        problems.add(f"{label} must be an object with {', '.join(RESPONDER_KEYS[:3])}")
        return None
    r = rules()
    _unknown_keys(label, raw, RESPONDER_KEYS, problems)
    values = {}
    for key, rule in (("Name", r.responder_name), ("JobTitle", r.job_title), ("Email", r.email)):
        if key not in raw:
            problems.add(f"{label}.{key} is required")
        else:
            is_email = key == "Email"
            values[key] = _string(
                f"{label}.{key}",
                raw[key],
                rule,
                problems,
                pattern_rule=EMAIL_RULE if is_email else "",
                fix=EMAIL_FIX if is_email else "",
            )
    prefs: frozenset[str] | None = None
    if "CommunicationPreferences" in raw:
        plabel = f"{label}.CommunicationPreferences"
        items = _list(plabel, raw["CommunicationPreferences"], None, problems) or []
        parsed = [
            _string(f"{plabel}[{i}]", v, r.communication_type, problems, echo=True)
            for i, v in enumerate(items)
        ]
        valid = [p for p in parsed if p is not None]
        if len(set(valid)) != len(valid):
            problems.add(f"{plabel} has duplicates")
        prefs = frozenset(valid)
    name, title, email = values.get("Name"), values.get("JobTitle"), values.get("Email")
    if name is None or title is None or email is None:
        return None
    return Responder(name, title, email, prefs)


def _team(raw: Any, problems: _Problems) -> tuple[Responder, ...] | None:
    items = _list("IncidentResponseTeam", raw, rules().team_size, problems)
    if items is None:
        return None
    team = [_responder(f"IncidentResponseTeam[{i}]", v, problems) for i, v in enumerate(items)]
    seen: dict[str, int] = {}
    for i, responder in enumerate(team):
        if responder is None:
            continue
        if responder.key in seen:
            first = seen[responder.key]
            problems.add(
                f"IncidentResponseTeam[{i}].Email repeats IncidentResponseTeam[{first}].Email "
                "(emails must be unique, ignoring case)"
            )
        seen.setdefault(responder.key, i)
    if any(r is None for r in team):
        return None
    return tuple(r for r in team if r is not None)


def _features(raw: Any, problems: _Problems) -> tuple[Feature, ...] | None:
    items = _list("OptInFeatures", raw, rules().features_size, problems)
    if items is None:
        return None
    out: list[Feature] = []
    for i, item in enumerate(items):
        label = f"OptInFeatures[{i}]"
        if not isinstance(item, dict):
            problems.add(f"{label} must be an object with FeatureName and IsEnabled")
            continue
        _unknown_keys(label, item, FEATURE_KEYS, problems)
        missing = [k for k in FEATURE_KEYS if k not in item]
        for key in missing:
            problems.add(f"{label}.{key} is required")
        if missing:
            continue
        name = _string(f"{label}.FeatureName", item["FeatureName"], rules().feature_name, problems)
        enabled = _bool(f"{label}.IsEnabled", item["IsEnabled"], problems)
        if name is not None and enabled is not None:
            if any(f.name == name for f in out):
                problems.add(f"{label}.FeatureName {name} is declared twice")
            out.append(Feature(name, enabled))
    return tuple(out) if len(out) == len(items) else None


def _organizational_units(raw: Any, problems: _Problems) -> frozenset[str]:
    items = _list("OrganizationalUnits", raw, None, problems)
    if items is None:
        return frozenset()
    rule = rules().organizational_unit
    seen: set[str] = set()
    for i, value in enumerate(items):
        ou = _string(f"OrganizationalUnits[{i}]", value, rule, problems, echo=True, fix=OU_FIX)
        if ou is None:
            continue
        if ou in seen:
            problems.add(f"OrganizationalUnits[{i}] {ou} is listed twice")
        seen.add(ou)
    return frozenset(seen)


def _tags(raw: Any, problems: _Problems) -> tuple[tuple[str, str], ...] | None:
    """``Tags`` as CloudFormation resources take them: a list of {Key, Value}.

    Keys are shown in messages (they are names, like property keys); values
    are not.
    """
    r = rules()
    items = _list("Tags", raw, None, problems)
    if items is None:
        return None
    high = r.tags_size.max_items
    if high is not None and len(items) > high:
        problems.add(f"Tags must have at most {high} entries, not {len(items)}")
    out: dict[str, str] = {}
    seen: set[str] = set()
    for i, item in enumerate(items):
        label = f"Tags[{i}]"
        if not isinstance(item, dict):
            problems.add(f"{label} must be an object with Key and Value")
            continue
        _unknown_keys(label, item, TAG_KEYS, problems)
        missing = [k for k in TAG_KEYS if k not in item]
        for name in missing:
            problems.add(f"{label}.{name} is required")
        key = None
        if "Key" in item:
            key = _string(f"{label}.Key", item["Key"], r.tag_key, problems, echo=True)
        if key is not None and key.lower().startswith(RESERVED_TAG_PREFIX):
            problems.add(f"{label}.Key {key} starts with aws:, which AWS reserves: rename it")
        elif key is not None and key in seen:
            problems.add(f"{label}.Key {key} is declared twice")
        if key is not None:
            seen.add(key)
        value = None
        if "Value" in item:
            value = _string(f"{label}.Value", item["Value"], r.tag_value, problems)
        if key is not None and value is not None:
            out[key] = value
    return tuple(sorted(out.items()))


def parse_properties(raw: Mapping[str, Any] | None) -> MembershipProperties:
    """Validate ``ResourceProperties`` and return the declared membership.

    Raises ``InvalidProperties`` naming every problem found.
    """
    problems = _Problems()
    if not isinstance(raw, Mapping):
        raise InvalidProperties("Invalid properties: the resource has no Properties")
    _unknown_keys("", raw, PROPERTY_KEYS, problems)
    r = rules()
    membership_id = None
    if "MembershipId" not in raw:
        problems.add("MembershipId is required (the id of an existing membership, m-...)")
    else:
        membership_id = _string(
            "MembershipId", raw["MembershipId"], r.membership_id, problems, fix=MEMBERSHIP_ID_FIX
        )
    name = None
    if "MembershipName" in raw:
        name = _string("MembershipName", raw["MembershipName"], r.membership_name, problems)
    team = _team(raw["IncidentResponseTeam"], problems) if "IncidentResponseTeam" in raw else None
    features = _features(raw["OptInFeatures"], problems) if "OptInFeatures" in raw else None
    cover = None
    if "CoverEntireOrganization" in raw:
        cover = _bool("CoverEntireOrganization", raw["CoverEntireOrganization"], problems)
    ous = frozenset[str]()
    if "OrganizationalUnits" in raw:
        ous = _organizational_units(raw["OrganizationalUnits"], problems)
    if cover and ous:
        problems.add(
            "CoverEntireOrganization is true and OrganizationalUnits is not empty: "
            "declare one or the other"
        )
    undo = False
    if "UndoMembershipCancellation" in raw:
        undo = bool(
            _bool("UndoMembershipCancellation", raw["UndoMembershipCancellation"], problems)
        )
    on_delete: OnDelete = "Retain"
    if "OnDelete" in raw:
        value = raw["OnDelete"]
        if value in ON_DELETE_VALUES:
            on_delete = value
        else:
            problems.add(f"OnDelete must be one of {', '.join(ON_DELETE_VALUES)}")
    tags = _tags(raw["Tags"], problems) if "Tags" in raw else None
    if problems.items or membership_id is None:
        raise InvalidProperties("Invalid properties: " + "; ".join(problems.items))
    return MembershipProperties(
        membership_id=membership_id,
        membership_name=name,
        team=team,
        features=features,
        cover_entire_organization=cover,
        organizational_units=ous,
        undo_cancellation=undo,
        on_delete=on_delete,
        tags=tags,
    )
