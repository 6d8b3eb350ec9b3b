"""The change journal: what a request is about to change, and what it was (pure).

Why: the membership is shared, live state, and CloudFormation's rollback
only knows declarations. Restoring the old *declaration* cannot put back a
field the old declaration never mentioned (a newly declared name, team or
feature), and removing "old minus new" OUs takes away OUs that someone else
associated. So before its first write every request that may write records
an ``Entry``: for exactly the fields and OUs its plan touches, the value
*before* and (as a digest for the sensitive ones) the value it sets. Undo
and rollback restore from that record and nothing else:

* ``plan_rollback`` puts back each touched field only if it still holds the
  value the change set (compare-and-restore), so a field someone changed
  since stays as they set it; an OU is removed only if the change added it,
  so an OU associated outside the stack is never removed.
* ``classify`` tells, from an event and the resource's latest entry, whether
  a request is the rollback of that entry (an Update whose old and new
  declarations are the entry's new and old), the clean-up of a rolled back
  replacement, or a forward change; and which old OUs a forward Update may
  remove (only those of a declaration the journal shows was applied).

Storage is in ``journal_store``; this module is data and decisions only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .membership import Feature, MembershipState, Responder
from .plan import Change, Plan, UpdateRequest, apply_request, batches, check_status
from .properties import CLOUDFORMATION_KEYS
from .request import Request
from .tags import TagCall, TagChange, TagPlan

#: ``restoring`` marks an entry whose rollback has begun while its change may
#: still have a Work step running: that step then stops (the fence stops it too).
Phase = Literal["applying", "applied", "failed", "restoring", "restored"]


def declaration_digest(raw: Mapping[str, Any] | None) -> str:
    """A stable fingerprint of a declaration as CloudFormation sends it.

    ``ServiceToken`` and ``ServiceTimeout`` are left out: they say how the
    resource is served, not what it declares.
    """
    if raw is None:
        return ""
    kept = {k: v for k, v in raw.items() if k not in CLOUDFORMATION_KEYS}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def value_digest(value: Any) -> str:
    """A digest of a sensitive value, so the journal can compare without holding it."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _team_key(team: tuple[Responder, ...]) -> list[list[Any]]:
    return sorted(
        [r.key, r.name, r.job_title, sorted(r.communication_preferences or ())] for r in team
    )


def team_digest(team: tuple[Responder, ...]) -> str:
    """The team as a comparable digest (order and email case do not matter)."""
    return value_digest(_team_key(team))


@dataclass(frozen=True)
class Touched:
    """The before-values of the fields and OUs a change touches.

    Booleans (features, coverage, OU association) are only journaled when
    the change flips them, so their after-value is the negation. Name and
    team keep their before-value in plain text (they are what the membership
    held) and their after-value as a digest.
    """

    name_before: str | None = field(default=None, repr=False)
    name_after: str = ""
    team_before: tuple[Responder, ...] | None = None
    team_after: str = ""
    features_before: Mapping[str, bool] = field(default_factory=dict)
    cover_before: bool | None = None
    ous_added: frozenset[str] = frozenset()
    ous_removed: frozenset[str] = frozenset()
    reactivated: bool = False
    #: Each tag key the change sets or removes: its value before and the one
    #: set (``None``: absent). Tag values are not sensitive in the model.
    tags_before: Mapping[str, str | None] = field(default_factory=dict)
    tags_after: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when the change touches nothing."""
        return self == Touched()

    def merged(self, later: Touched) -> Touched:
        """This record extended by ``later`` (a replan): the first before-value wins."""
        seen_ous = self.ous_added | self.ous_removed
        return Touched(
            name_before=self.name_before if self.name_after else later.name_before,
            name_after=self.name_after or later.name_after,
            team_before=self.team_before if self.team_after else later.team_before,
            team_after=self.team_after or later.team_after,
            features_before={**later.features_before, **self.features_before},
            cover_before=self.cover_before if self.cover_before is not None else later.cover_before,
            ous_added=self.ous_added | (later.ous_added - seen_ous),
            ous_removed=self.ous_removed | (later.ous_removed - seen_ous),
            reactivated=self.reactivated or later.reactivated,
            tags_before={**later.tags_before, **self.tags_before},
            tags_after={**later.tags_after, **self.tags_after},
        )


def touched_by(before: MembershipState, plan: Plan, tag_plan: TagPlan | None = None) -> Touched:
    """What ``plan`` (and ``tag_plan``) change on ``before``, with ``before``'s values."""
    after = before
    for request in plan.requests:
        after = apply_request(after, request)
    named = after.name != before.name and after.name is not None
    teamed = team_digest(after.team) != team_digest(before.team)
    have, want = before.feature_map(), after.feature_map()
    return Touched(
        name_before=before.name if named else None,
        name_after=value_digest(after.name) if named else "",
        team_before=before.team if teamed else None,
        team_after=team_digest(after.team) if teamed else "",
        features_before={
            name: have.get(name, False)
            for name, enabled in want.items()
            if have.get(name, False) != enabled
        },
        cover_before=(
            before.cover_entire_organization
            if before.cover_entire_organization != after.cover_entire_organization
            else None
        ),
        ous_added=after.organizational_units - before.organizational_units,
        ous_removed=before.organizational_units - after.organizational_units,
        reactivated=before.status == "Cancelled" and after.status == "Active",
        tags_before=tag_plan.before if tag_plan else {},
        tags_after={c.key: c.after for c in tag_plan.changes} if tag_plan else {},
    )


@dataclass(frozen=True)
class Record:
    """The resource's declaration record: the declaration it last converged.

    Why apart from ``Entry``: an entry holds before-values (names, emails)
    and expires; this holds only a digest and OU ids and never expires, so
    that "which old OUs may this request remove" is answered from knowledge,
    never from the absence of an entry. Written by every request that
    converges a declaration, even with zero calls; put back by a rollback.
    """

    declaration: str
    ous: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Entry:
    """The journal's record of one request's change to one membership.

    One entry per resource (stack and logical id): the latest request that
    may write. ``old``/``new`` are digests of the declarations before and
    after the change, so the rollback Update (old and new swapped) finds it.
    """

    request_id: str
    request_type: str
    membership_id: str
    old: str
    new: str
    touched: Touched = Touched()
    planned: int = 0
    applied: int = 0
    unknown: int = 0
    phase: Phase = "applying"
    #: The OUs the membership holds after the last call made for this entry
    #: (by its change or its rollback), as the function's model says, and
    #: when that call was made: a read that differs soon after may only be
    #: stale (the service shows account changes late), and is read again.
    ous_now: frozenset[str] | None = None
    last_write: float = 0.0
    #: Whether the old declaration's OUs may be removed (``Forward``), as the
    #: request's first invocation decided: a retry or a later link of the
    #: same request carries on with the same verdict.
    previous_applied: bool = True
    #: The declaration record before this change (None: there was none), so
    #: that its rollback puts the record back too.
    record_before: Record | None = None
    #: The request's last Work step ended with every call it made counted (it
    #: returned a wait): no call is in flight until a next step saves the
    #: entry again, so an answer given meanwhile counts none as unknown.
    resting: bool = False
    #: This Update moved the resource to a new MembershipId (a replacement). If its
    #: stack update then fails, CloudFormation sends the new id no rollback Update: it
    #: deletes it in the clean-up, and that Delete restores this entry.
    replacement: bool = False

    @property
    def declared_now(self) -> str:
        """The digest of the declaration the membership carries after this entry.

        The old one when the change was restored, or failed without writing;
        else the new one (also part-way: its rollback is then still due).
        """
        return self.old if self.phase == "restored" or self.wrote_nothing else self.new

    @property
    def wrote_nothing(self) -> bool:
        """Known to have changed nothing: it failed, and no call was or may have been applied.

        Only a failed entry's counts are final (an ``applying`` entry may be
        behind its invocation), so only then is compare-and-restore skipped:
        a field holding the value this change would have set was set by
        someone else.
        """
        return self.phase == "failed" and not self.applied and not self.unknown

    @property
    def settled(self) -> bool:
        """Whether the entry's change is over and its effect known (applied, restored, none)."""
        return self.phase in ("applied", "restored") or self.wrote_nothing

    @property
    def unresolved(self) -> bool:
        """Whether a failed change may have left writes that were not restored."""
        return self.phase == "failed" and bool(self.applied or self.unknown)


@dataclass(frozen=True)
class Forward:
    """A forward change: plan as declared; ``previous_applied`` says whether the
    old declaration's OUs may be removed (the journal shows it was applied)."""

    previous_applied: bool = True


@dataclass(frozen=True)
class Rollback:
    """Restore ``entry``'s membership from the journal, and nothing else."""

    entry: Entry


@dataclass(frozen=True)
class NothingApplied:
    """The rollback of a change that never wrote (it failed before its first call).

    The request's new declaration is the one the journal shows applied, its
    old one was never journaled, and no write happens without an entry: so
    there is nothing to put back, and nothing is sent (a forward plan here
    would overwrite fields someone changed since, or remove OUs that the
    failed change had only declared).
    """

    entry: Entry


@dataclass(frozen=True)
class AlreadyRestored:
    """The Delete that cleans up a rolled back replacement: already restored."""

    entry: Entry


Mode = Forward | Rollback | NothingApplied | AlreadyRestored


def classify(
    request: Request,
    entry: Entry | None,
    restore_failed: str | None = None,
    record: Record | None = None,
) -> Mode:
    """How a request relates to the resource's latest journal entry.

    * An Update whose (old, new) declarations are the entry's (new, old) is
      its rollback (CloudFormation's rollback of a failed or a succeeded
      Update, or of a replacement). An Update that exactly reverses the
      previous one is indistinguishable and is treated the same way.
    * An Update back to the declaration the journal shows applied, from one
      it never journaled, is the rollback of a change that never wrote.
    * The Delete of a failed Create's ``unrestored`` id restores that
      Create's entry (``restore_failed`` is the id's request id).
    * The Delete of a membership that a restored entry had set the new
      declaration on is the clean-up of that rollback: nothing to do.
    * Anything else is forward; an Update's old OUs are removable only if the
      declaration record (or, with none, the journal) shows the old
      declaration was converged. With neither (a resource of an older
      version) they are removable, as they were then.
    """
    new, old = declaration_digest(request.properties), declaration_digest(request.old_properties)
    if entry is None:
        return _forward_without_entry(request.request_type, old, record)
    if request.request_type == "Update":
        if (old, new) == (entry.new, entry.old):
            return Rollback(entry)
        if new == entry.declared_now != old and entry.settled:
            return NothingApplied(entry)
        converged = record.declaration if record is not None else entry.declared_now
        return Forward(previous_applied=old == converged)
    if request.request_type == "Delete":
        return _classify_delete(request.physical_id, new, entry, restore_failed)
    return Forward()


def _forward_without_entry(request_type: str, old: str, record: Record | None) -> Forward:
    """No entry (expired, or never written): the record alone tells what was converged."""
    if record is not None and request_type == "Update":
        return Forward(previous_applied=old == record.declaration)
    return Forward()


def _classify_delete(physical_id: str, new: str, entry: Entry, restore_failed: str | None) -> Mode:
    if restore_failed is not None and restore_failed == entry.request_id[:36]:
        return Rollback(entry)
    cleanup = entry.phase == "restored" and entry.new not in ("", entry.old)
    if cleanup and physical_id == entry.membership_id and new == entry.new:
        return AlreadyRestored(entry)
    return Forward()


def plan_rollback(entry: Entry, now: MembershipState) -> Plan:
    """The calls that put back what ``entry`` changed, compare-and-restore.

    A field is restored only while it still holds the value the change set;
    an OU the change added is removed while associated, an OU it removed is
    associated again while missing. Nothing the change did not touch is
    sent. A reactivation cannot be undone (the service has no call for it).
    """
    if entry.wrote_nothing:
        return Plan(now.membership_id)
    touched = entry.touched
    first = UpdateRequest(now.membership_id)
    changes: list[Change] = []
    if touched.name_before is not None and value_digest(now.name) == touched.name_after:
        first = replace(first, membership_name=touched.name_before)
        changes.append(Change("MembershipName", "restored"))
    if touched.team_before is not None and team_digest(now.team) == touched.team_after:
        first = replace(first, team=touched.team_before)
        changes.append(
            Change(
                "IncidentResponseTeam", f"restored ({len(now.team)} -> {len(touched.team_before)})"
            )
        )
    have = now.feature_map()
    features = tuple(
        Feature(name, before)
        for name, before in sorted(touched.features_before.items())
        if have.get(name, False) == (not before)
    )
    if features:
        first = replace(first, features=features)
        changes.append(
            Change(
                "OptInFeatures",
                ", ".join(f"{f.name} {not f.enabled} -> {f.enabled}" for f in features),
            )
        )
    cover = touched.cover_before
    if cover is not None and now.cover_entire_organization == (not cover):
        first = replace(first, cover_entire_organization=cover)
        changes.append(Change("CoverEntireOrganization", f"{not cover} -> {cover}"))
    removes = sorted(touched.ous_added & now.organizational_units)
    adds = sorted(touched.ous_removed - now.organizational_units)
    if adds or removes:
        changes.append(Change("OrganizationalUnits", f"+{len(adds)} -{len(removes)}"))
    plan = Plan(
        membership_id=now.membership_id,
        requests=batches(first, adds, removes),
        changes=tuple(changes),
        ous_to_add=tuple(adds),
        ous_to_remove=tuple(removes),
    )
    return check_status(plan, now)


def plan_tag_rollback(entry: Entry, actual: Mapping[str, str], resource_arn: str) -> TagPlan:
    """The tag calls that put back what ``entry`` changed, compare-and-restore.

    A key goes back to its value before (or is removed if it was absent)
    only while it still holds the value the change set.
    """
    if entry.wrote_nothing:
        return TagPlan()
    touched = entry.touched
    back = {
        key: before
        for key, before in sorted(touched.tags_before.items())
        if actual.get(key) == touched.tags_after.get(key) and actual.get(key) != before
    }
    to_set = {k: v for k, v in back.items() if v is not None}
    to_remove = tuple(k for k, v in back.items() if v is None)
    calls: list[TagCall] = []
    if to_remove:
        calls.append(TagCall("UntagResource", resource_arn, keys=to_remove))
    if to_set:
        calls.append(TagCall("TagResource", resource_arn, tags=tuple(to_set.items())))
    changes = tuple(TagChange(k, actual.get(k), v) for k, v in back.items())
    return TagPlan(tuple(calls), changes)
