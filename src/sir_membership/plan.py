"""The planner: declared properties + actual state -> the fewest UpdateMembership calls.

Pure functions of data, shared by the Lambda function and the change-set
preview, so the two can never disagree.

The OU rules: Create adds ``declared - actual`` and removes nothing; Update
adds ``new - actual`` and removes ``(old - new) & actual``, so OUs that
someone associated outside this resource are never removed by a forward
change. Undo and rollback do not go through here: they restore what the
change journal recorded (``journal.plan_rollback``).

UpdateMembership takes at most five OUs to add and five to remove per call,
both in the same call, so a plan makes ``max(ceil(adds/5), ceil(removes/5))``
calls when OUs change, one when only other fields change, none when nothing
differs. Other changed fields ride in the first call.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .errors import MembershipNotUpdatable
from .membership import Feature, MembershipState, Responder
from .properties import MembershipProperties
from .service_model import rules

MASK = "***"


@dataclass(frozen=True)
class UpdateRequest:
    """One UpdateMembership call. Empty lists and ``None`` fields are not sent."""

    membership_id: str
    membership_name: str | None = field(default=None, repr=False)
    team: tuple[Responder, ...] | None = None
    features: tuple[Feature, ...] | None = None
    cover_entire_organization: bool | None = None
    ous_to_add: tuple[str, ...] = ()
    ous_to_remove: tuple[str, ...] = ()
    undo_cancellation: bool = False

    def to_api(self) -> dict[str, Any]:
        """The keyword arguments for boto3's ``update_membership``."""
        out: dict[str, Any] = {"membershipId": self.membership_id}
        if self.membership_name is not None:
            out["membershipName"] = self.membership_name
        if self.team is not None:
            out["incidentResponseTeam"] = [r.to_api() for r in self.team]
        if self.features is not None:
            out["optInFeatures"] = [f.to_api() for f in self.features]
        accounts: dict[str, Any] = {}
        if self.cover_entire_organization is not None:
            accounts["coverEntireOrganization"] = self.cover_entire_organization
        if self.ous_to_add:
            accounts["organizationalUnitsToAdd"] = list(self.ous_to_add)
        if self.ous_to_remove:
            accounts["organizationalUnitsToRemove"] = list(self.ous_to_remove)
        if accounts:
            out["membershipAccountsConfigurationsUpdate"] = accounts
        if self.undo_cancellation:
            out["undoMembershipCancellation"] = True
        return out

    def masked(self) -> dict[str, Any]:
        """``to_api()`` with names, emails and job titles replaced, for logs and previews."""
        out = self.to_api()
        if "membershipName" in out:
            out["membershipName"] = MASK
        for responder in out.get("incidentResponseTeam", ()):
            for key in ("name", "jobTitle", "email"):
                responder[key] = MASK
        return out

    def summary(self) -> dict[str, Any]:
        """Counts and ids only: what the function logs about a call."""
        return {
            "membershipId": self.membership_id,
            "fields": sorted(k for k in self.to_api() if k != "membershipId"),
            "ousToAdd": len(self.ous_to_add),
            "ousToRemove": len(self.ous_to_remove),
        }


@dataclass(frozen=True)
class Change:
    """One property-level difference, described without sensitive values."""

    property: str
    detail: str


@dataclass(frozen=True)
class Plan:
    """The calls to make, in order, and the differences that caused them."""

    membership_id: str
    requests: tuple[UpdateRequest, ...] = ()
    changes: tuple[Change, ...] = ()
    ous_to_add: tuple[str, ...] = ()
    ous_to_remove: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nothing differs and no call is needed."""
        return not self.requests


def same_team(declared: tuple[Responder, ...], actual: tuple[Responder, ...]) -> bool:
    """Teams are sets keyed by email (case-insensitive).

    A responder whose ``CommunicationPreferences`` are not declared matches
    whatever preferences the service holds for it.
    """
    have = {r.key: r for r in actual}
    if set(have) != {r.key for r in declared} or len(actual) != len(declared):
        return False
    for want in declared:
        got = have[want.key]
        if (want.name, want.job_title) != (got.name, got.job_title):
            return False
        prefs = want.communication_preferences
        if prefs is not None and prefs != (got.communication_preferences or frozenset()):
            return False
    return True


def _keep_unmanaged_preferences(
    declared: tuple[Responder, ...], actual: tuple[Responder, ...]
) -> tuple[Responder, ...]:
    """The team to send: undeclared preferences keep the service's current ones.

    UpdateMembership replaces the whole team, so a responder sent without
    preferences would lose those set outside the stack.
    """
    have = {r.key: r.communication_preferences for r in actual}
    return tuple(
        replace(r, communication_preferences=have[r.key])
        if r.communication_preferences is None and have.get(r.key)
        else r
        for r in declared
    )


def _field_changes(desired: MembershipProperties, actual: MembershipState) -> UpdateRequest:
    """The non-OU fields that differ, as a request carrying only those."""
    request = UpdateRequest(actual.membership_id)
    if desired.membership_name is not None and desired.membership_name != actual.name:
        request = replace(request, membership_name=desired.membership_name)
    if desired.team is not None and not same_team(desired.team, actual.team):
        request = replace(request, team=_keep_unmanaged_preferences(desired.team, actual.team))
    if desired.features is not None:
        have = actual.feature_map()
        if any(have.get(f.name) != f.enabled for f in desired.features):
            request = replace(request, features=desired.features)
    cover = desired.cover_entire_organization
    if cover is not None and cover != actual.cover_entire_organization:
        request = replace(request, cover_entire_organization=cover)
    if desired.undo_cancellation and actual.status == "Cancelled":
        request = replace(request, undo_cancellation=True)
    return request


def _describe(
    request: UpdateRequest, actual: MembershipState, adds: int, removes: int
) -> tuple[Change, ...]:
    out = []
    if request.undo_cancellation:
        out.append(Change("UndoMembershipCancellation", "Cancelled -> Active"))
    if request.membership_name is not None:
        out.append(Change("MembershipName", "changed"))
    if request.team is not None:
        out.append(
            Change("IncidentResponseTeam", f"replaced ({len(actual.team)} -> {len(request.team)})")
        )
    if request.features is not None:
        have = actual.feature_map()
        detail = ", ".join(
            f"{f.name} {have.get(f.name)} -> {f.enabled}"
            for f in request.features
            if have.get(f.name) != f.enabled
        )
        out.append(Change("OptInFeatures", detail))
    if request.cover_entire_organization is not None:
        out.append(
            Change(
                "CoverEntireOrganization",
                f"{actual.cover_entire_organization} -> {request.cover_entire_organization}",
            )
        )
    if adds or removes:
        out.append(Change("OrganizationalUnits", f"+{adds} -{removes}"))
    return tuple(out)


def batches(first: UpdateRequest, adds: list[str], removes: list[str]) -> tuple[UpdateRequest, ...]:
    size = rules().ou_batch_size
    count = max(-(-len(adds) // size), -(-len(removes) // size))
    requests = [
        replace(
            first if i == 0 else UpdateRequest(first.membership_id),
            ous_to_add=tuple(adds[i * size : (i + 1) * size]),
            ous_to_remove=tuple(removes[i * size : (i + 1) * size]),
        )
        for i in range(count)
    ]
    if not requests and first.to_api().keys() != {"membershipId"}:
        requests = [first]
    return tuple(requests)


def check_status(plan: Plan, actual: MembershipState) -> Plan:
    if plan.empty:
        return plan
    if actual.status == "Terminated":
        raise MembershipNotUpdatable(
            f"Membership {actual.membership_id} is Terminated and cannot be changed: "
            "point MembershipId at an active membership"
        )
    if actual.status == "Cancelled" and not plan.requests[0].undo_cancellation:
        raise MembershipNotUpdatable(
            f"Membership {actual.membership_id} is Cancelled: set UndoMembershipCancellation "
            "to true to reactivate it before changing it"
        )
    return plan


def plan_changes(
    desired: MembershipProperties,
    actual: MembershipState,
    previous_ous: frozenset[str] = frozenset(),
) -> Plan:
    """Plan a Create (``previous_ous`` empty) or an Update (``previous_ous`` = old declaration).

    Raises ``MembershipNotUpdatable`` when
    changes are needed but the membership's status forbids them.
    """
    declared = desired.organizational_units
    adds = sorted(declared - actual.organizational_units)
    removes = sorted((previous_ous - declared) & actual.organizational_units)
    first = _field_changes(desired, actual)
    plan = Plan(
        membership_id=actual.membership_id,
        requests=batches(first, adds, removes),
        changes=_describe(first, actual, len(adds), len(removes)),
        ous_to_add=tuple(adds),
        ous_to_remove=tuple(removes),
    )
    return check_status(plan, actual)


def plan_delete(declared: MembershipProperties, actual: MembershipState) -> Plan:
    """Plan a Delete: ``Retain`` makes no call; ``RemoveOrganizationalUnits``
    removes the declared OUs that are still associated.

    A membership that is no longer Active has nothing left to clean up.
    """
    if declared.on_delete == "Retain" or actual.status != "Active":
        return Plan(actual.membership_id)
    removes = sorted(declared.organizational_units & actual.organizational_units)
    return Plan(
        membership_id=actual.membership_id,
        requests=batches(UpdateRequest(actual.membership_id), [], removes),
        changes=(Change("OrganizationalUnits", f"+0 -{len(removes)}"),) if removes else (),
        ous_to_remove=tuple(removes),
    )


def changed_by(request: UpdateRequest, before: MembershipState, after: MembershipState) -> bool:
    """Whether ``after`` shows any effect of ``request`` that ``before`` did not have.

    After a 5xx or a reset connection the call may or may not have been
    applied; reading the membership again and asking this tells which, so
    the count of applied calls (and the undo it triggers) stays true.
    """
    added = set(request.ous_to_add) & (after.organizational_units - before.organizational_units)
    removed = set(request.ous_to_remove) & (
        before.organizational_units - after.organizational_units
    )
    name = request.membership_name is not None and after.name != before.name
    cover = request.cover_entire_organization is not None and (
        after.cover_entire_organization != before.cover_entire_organization
    )
    team = request.team is not None and not same_team(after.team, before.team)
    features = request.features is not None and after.feature_map() != before.feature_map()
    status = request.undo_cancellation and after.status != before.status
    return bool(added or removed or name or cover or team or features or status)


def apply_request(state: MembershipState, request: UpdateRequest) -> MembershipState:
    """What the membership becomes once ``request`` succeeds (the service's semantics)."""
    if request.membership_name is not None:
        state = replace(state, name=request.membership_name)
    if request.team is not None:
        state = replace(state, team=request.team)
    if request.features is not None:
        merged = state.feature_map() | {f.name: f.enabled for f in request.features}
        state = replace(state, features=tuple(Feature(n, e) for n, e in sorted(merged.items())))
    if request.cover_entire_organization is not None:
        state = replace(state, cover_entire_organization=request.cover_entire_organization)
    if request.ous_to_add or request.ous_to_remove:
        ous = (state.organizational_units | set(request.ous_to_add)) - set(request.ous_to_remove)
        state = replace(state, organizational_units=frozenset(ous))
    if request.undo_cancellation:
        state = replace(state, status="Active")
    return state
