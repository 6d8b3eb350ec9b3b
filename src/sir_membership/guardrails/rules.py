"""The guardrails: pure functions from one membership resource's change to a finding.

Each rule reads the stack name, logical id, old and new declaration (with
the DeletionPolicy), the membership's actual state (or ``None`` when it
could not be read) and the settings, and returns one ``Finding``. The
function's own parser and planner decide what a declaration means and
which OUs a change removes, so a rule can never disagree with what the
function will do. A finding's text holds counts, property names and
identifiers (membership and OU ids), never a name, email, job title or
membership name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from ..errors import InvalidProperties, MembershipNotUpdatable
from ..membership import MembershipState
from ..request import Request, decide
from .declarations import RETAINED, Subject
from .settings import NO_LIMIT, Settings

Outcome = Literal["pass", "fail", "unevaluable", "skip"]
TRIAGE = "Triage"
#: The fix for a value not known where the rule runs.
FIX_HOLE = "give it a value the rules can see (check --parameters, or the hook's change set)"


@dataclass(frozen=True)
class Actual:
    """The membership as read (``state``), or why it could not be (``state`` None)."""

    state: MembershipState | None
    source: str


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one resource. ``detail`` and ``fix`` are safe to show."""

    stack: str
    logical_id: str
    rule: str
    outcome: Outcome
    detail: str
    fix: str = ""

    def line(self) -> str:
        """The one line shown for a failure or a warning."""
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"{self.stack}/{self.logical_id}: {self.rule}: {self.detail}{fix}"


Rule = Callable[[Subject, Actual, Settings], Finding]


def _finding(subject: Subject, rule: str) -> Callable[..., Finding]:
    def make(outcome: Outcome, detail: str, fix: str = "") -> Finding:
        return Finding(subject.stack, subject.logical_id, rule, outcome, detail, fix)

    return make


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def valid_declaration(subject: Subject, actual: Actual, settings: Settings) -> Finding:
    """The function fails on an invalid declaration: fail here first, with its reason."""
    make = _finding(subject, "valid-declaration")
    new = subject.new
    if new is None:
        return make("skip", "removed from the stack")
    if new.error:
        return make("fail", new.error, "correct the declaration (the function would fail so)")
    return make("pass", "valid")


def min_responders(subject: Subject, actual: Actual, settings: Settings) -> Finding:
    """A team may not shrink below what the incident response plan needs."""
    make = _finding(subject, "min-responders")
    least = settings.min_responders
    new = subject.new
    if least == 0 or new is None:
        return make("skip", "off" if least == 0 else "removed from the stack")
    hole = new.hole("IncidentResponseTeam")
    if hole:
        return make("unevaluable", f"cannot be evaluated: {hole}", FIX_HOLE)
    parsed = new.parsed
    if parsed is None or parsed.team is None:
        return make("skip", "invalid" if parsed is None else "IncidentResponseTeam not managed")
    count = len(parsed.team)
    if count < least:
        return make(
            "fail",
            f"IncidentResponseTeam declares {_plural(count, 'responder')}; "
            f"MinResponders is {least}",
            f"declare at least {least} responders",
        )
    return make("pass", f"{_plural(count, 'responder')}")


def _domain_allowed(email: str, allowed: tuple[str, ...]) -> bool:
    domain = email.rpartition("@")[2].lower()
    return any(
        fnmatchcase(domain, entry) if entry.startswith("*.") else domain == entry
        for entry in allowed
    )


def email_domains(subject: Subject, actual: Actual, settings: Settings) -> Finding:
    """Responders' addresses stay in the organization's domains (not a personal mailbox)."""
    make = _finding(subject, "responder-email-domains")
    allowed = settings.allowed_email_domains
    new = subject.new
    if not allowed or new is None:
        return make("skip", "off" if not allowed else "removed from the stack")
    hole = new.hole("IncidentResponseTeam")
    if hole:
        return make("unevaluable", f"cannot be evaluated: {hole}", FIX_HOLE)
    parsed = new.parsed
    if parsed is None or parsed.team is None:
        return make("skip", "invalid" if parsed is None else "IncidentResponseTeam not managed")
    outside = [i for i, r in enumerate(parsed.team) if not _domain_allowed(r.email, allowed)]
    if outside:
        where = ", ".join(f"[{i}]" for i in outside)
        return make(
            "fail",
            f"{len(outside)} of {_plural(len(parsed.team), 'responder')} "
            f"(IncidentResponseTeam{where}) have an email outside AllowedEmailDomains "
            f"({', '.join(allowed)})",
            "use addresses in an allowed domain, or add the domain to AllowedEmailDomains",
        )
    return make("pass", f"{_plural(len(parsed.team), 'responder')} in allowed domains")


def _state_hole(actual: Actual) -> str:
    return f"the membership could not be read ({actual.source})"


def triage_stays_on(subject: Subject, actual: Actual, settings: Settings) -> Finding:
    """Triage may not be turned off."""
    make = _finding(subject, "triage-stays-on")
    new = subject.new
    if settings.allow_triage_off or new is None:
        return make("skip", "off" if settings.allow_triage_off else "removed from the stack")
    hole = new.hole("OptInFeatures")
    if hole:
        return make("unevaluable", f"cannot be evaluated: {hole}", FIX_HOLE)
    parsed = new.parsed
    declared = {f.name: f.enabled for f in (parsed.features or ())} if parsed else {}
    if declared.get(TRIAGE) is not False:
        return make("pass", "Triage is not turned off")
    if actual.state is None:
        return make("unevaluable", f"cannot be evaluated: {_state_hole(actual)}")
    if actual.state.feature_map().get(TRIAGE) is True:
        return make(
            "fail",
            f"OptInFeatures turns Triage off (on now, {actual.source})",
            "keep Triage IsEnabled true, or set AllowTriageOff",
        )
    return make("pass", "Triage is already off")


def cover_stays_on(subject: Subject, actual: Actual, settings: Settings) -> Finding:
    """Coverage of the whole organization may not be dropped."""
    make = _finding(subject, "cover-entire-organization-stays")
    new = subject.new
    if settings.allow_cover_off or new is None:
        return make("skip", "off" if settings.allow_cover_off else "removed from the stack")
    hole = new.hole("CoverEntireOrganization")
    if hole:
        return make("unevaluable", f"cannot be evaluated: {hole}", FIX_HOLE)
    parsed = new.parsed
    if parsed is None or parsed.cover_entire_organization is not False:
        return make("pass", "CoverEntireOrganization is not set to false")
    if actual.state is None:
        return make("unevaluable", f"cannot be evaluated: {_state_hole(actual)}")
    if actual.state.cover_entire_organization:
        return make(
            "fail",
            f"CoverEntireOrganization goes from true to false ({actual.source})",
            "keep CoverEntireOrganization true, or set AllowCoverEntireOrganizationOff",
        )
    return make("pass", "CoverEntireOrganization is already false")


def membership_id_fixed(subject: Subject, actual: Actual, settings: Settings) -> Finding:
    """No retargeting: the stack keeps governing the membership it governs."""
    make = _finding(subject, "membership-id-fixed")
    old, new = subject.old, subject.new
    if settings.allow_membership_id_change or old is None or new is None:
        return make("skip", "off" if settings.allow_membership_id_change else "not an update")
    hole = old.hole("MembershipId") or new.hole("MembershipId")
    if hole:
        return make("unevaluable", f"cannot be evaluated: {hole}", FIX_HOLE)
    before, after = old.properties.get("MembershipId"), new.properties.get("MembershipId")
    if before != after:
        shown = [
            v if isinstance(v, str) and len(v) <= 34 else "(not an id)" for v in (before, after)
        ]
        return make(
            "fail",
            f"MembershipId changes from {shown[0]} to {shown[1]} (a replacement: the stack "
            f"stops governing {shown[0]})",
            "keep MembershipId; to govern another membership, add a resource for it",
        )
    return make("pass", "MembershipId unchanged")


def retain_on_removal(subject: Subject, actual: Actual, settings: Settings) -> Finding:
    """A membership leaves a stack only with DeletionPolicy Retain (no Delete is sent)."""
    make = _finding(subject, "retain-on-removal")
    old, new = subject.old, subject.new
    if settings.allow_removal_without_retain or old is None or new is not None:
        return make("skip", "off" if settings.allow_removal_without_retain else "not a removal")
    if old.deletion_policy is None:
        return make(
            "unevaluable",
            f"cannot be evaluated: {old.policy_hole}",
            "declare DeletionPolicy literally",
        )
    if old.deletion_policy not in RETAINED:
        return make(
            "fail",
            f"removed from the stack with DeletionPolicy {old.deletion_policy} "
            "(CloudFormation sends the function a Delete)",
            "deploy DeletionPolicy: Retain first, then remove the resource",
        )
    return make("pass", f"removed with DeletionPolicy {old.deletion_policy}")


def _removed_by_plan(subject: Subject, state: MembershipState) -> int:
    """The OUs the function's own plan removes, from ``state`` (0 if it would fail)."""
    old, new = subject.old, subject.new
    if new is None:
        assert old is not None
        request = Request(
            "Delete", "", "", subject.logical_id, str(old.membership_id), old.properties
        )
    elif old is None:
        return 0
    else:
        request = Request(
            "Update",
            "",
            "",
            subject.logical_id,
            str(old.membership_id),
            new.properties,
            old.properties,
        )
    try:
        decision = decide(request)
        planner = decision.plan
        return 0 if planner is None else len(planner(state).ous_to_remove)
    except (InvalidProperties, MembershipNotUpdatable):
        return 0  # nothing is removed: the function fails before any call


def _ous_without_state(subject: Subject, limit: int) -> tuple[Outcome, str, str] | None:
    """The verdict when the declarations alone decide it (``None``: the state must)."""
    old, new = subject.old, subject.new
    assert old is not None
    keys = ("MembershipId", "OrganizationalUnits", "OnDelete")
    hole = old.hole(*keys) or (new.hole(*keys) if new is not None else "")
    if hole:
        return "unevaluable", f"cannot be evaluated: {hole}", FIX_HOLE
    if new is not None and new.error:
        return "skip", "invalid: the function removes nothing", ""
    if new is None and old.deletion_policy in RETAINED:
        return "pass", "retained: CloudFormation sends no Delete", ""
    old_ous = old.parsed.organizational_units if old.parsed else frozenset()
    new_ous = new.parsed.organizational_units if new and new.parsed else frozenset()
    if len(old_ous - new_ous) <= limit:
        return "pass", f"at most {len(old_ous - new_ous)} OUs removed", ""
    if new is None and old.deletion_policy is None:
        return "unevaluable", f"cannot be evaluated: {old.policy_hole}", ""
    return None


def max_ous_removed(subject: Subject, actual: Actual, settings: Settings) -> Finding:
    """At most N OUs leave coverage in one change, counted as the function plans."""
    make = _finding(subject, "max-ous-removed")
    limit = settings.max_ous_removed
    if limit == NO_LIMIT or subject.old is None:
        return make("skip", "off" if limit == NO_LIMIT else "new to the stack: removes nothing")
    decided = _ous_without_state(subject, limit)
    if decided is not None:
        return make(*decided)
    if actual.state is None:
        return make("unevaluable", f"cannot be evaluated: {_state_hole(actual)}")
    removed = _removed_by_plan(subject, actual.state)
    if removed > limit:
        covered = len(actual.state.organizational_units)
        return make(
            "fail",
            f"removes {removed} of {covered} OUs from coverage ({actual.source}); "
            f"MaxOrganizationalUnitsRemoved is {limit}",
            f"remove at most {limit} OUs per change (deploy in steps), or raise "
            "MaxOrganizationalUnitsRemoved",
        )
    return make("pass", f"removes {removed} OUs ({actual.source})")


def on_delete_remove_allowed(subject: Subject, actual: Actual, settings: Settings) -> Finding:
    """``OnDelete: RemoveOrganizationalUnits`` (coverage removed on delete) is opted into per resource."""
    make = _finding(subject, "on-delete-remove-allowed")
    new = subject.new
    if new is None:
        return make("skip", "removed from the stack")
    hole = new.hole("OnDelete")
    if hole:
        return make("unevaluable", f"cannot be evaluated: {hole}", FIX_HOLE)
    parsed = new.parsed
    if parsed is None or parsed.on_delete != "RemoveOrganizationalUnits":
        return make("pass", "OnDelete is not RemoveOrganizationalUnits")
    name = f"{subject.stack}/{subject.logical_id}"
    if any(fnmatchcase(name, pattern) for pattern in settings.allow_on_delete_remove):
        return make("pass", "RemoveOrganizationalUnits allowed by AllowOnDeleteRemove")
    return make(
        "fail",
        "OnDelete is RemoveOrganizationalUnits without an allow",
        f"set OnDelete: Retain, or add {name} to AllowOnDeleteRemove",
    )


#: Every rule, in the order findings are shown.
RULES: tuple[tuple[str, Rule], ...] = (
    ("valid-declaration", valid_declaration),
    ("min-responders", min_responders),
    ("responder-email-domains", email_domains),
    ("triage-stays-on", triage_stays_on),
    ("max-ous-removed", max_ous_removed),
    ("cover-entire-organization-stays", cover_stays_on),
    ("membership-id-fixed", membership_id_fixed),
    ("retain-on-removal", retain_on_removal),
    ("on-delete-remove-allowed", on_delete_remove_allowed),
)
RULE_NAMES = tuple(name for name, _ in RULES)
