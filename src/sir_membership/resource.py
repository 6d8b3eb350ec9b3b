"""One CloudFormation request in, one ``Answer`` out.

``handle`` is the side-effecting work that runs at most once per request
(the shell wraps it in Powertools idempotency). ``answer_without_writes``
answers the requests that cannot lead to a write (invalid properties, a
Delete with nothing to do) before that, so they never depend on the table:
the rollback Delete of a failed Create succeeds even if it is unreachable.

Every request that may write goes through the same steps:

1. read the resource's latest journal entry and tell what the request is
   (``journal.classify``): a forward change, the rollback of that entry, or
   the clean-up of a rollback that already restored it;
2. take the lease of the membership it will write to (one writer per
   membership), then read the entry again: a request that waited plans
   against what the one before it left;
3. forward: plan, journal what the plan touches with its values before,
   then call; rollback: restore from the entry, compare-and-restore;
4. settle the answer (from here on the timer can only send this answer),
   then the bookkeeping: the entry's final phase and the lease's release.

Domain failures become FAILED answers here, so a duplicate delivery gets the
same answer back; only bugs escape as exceptions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from . import tags
from .errors import JournalUnavailable, MembershipError
from .journal import (
    AlreadyRestored,
    Entry,
    Forward,
    Mode,
    NothingApplied,
    Phase,
    Rollback,
    classify,
    declaration_digest,
    plan_rollback,
    plan_tag_rollback,
    touched_by,
)
from .journal_store import Store
from .membership import MembershipState
from .plan import Plan
from .request import Decision, Request, decide
from .response import Answer
from .service import MembershipService
from .service_model import rules

__all__ = ["Answer", "Request", "Shell", "answer_without_writes", "handle"]

logger = logging.getLogger(__name__)

#: Seconds a request keeps, after waiting for the lease, to make at least one call.
WORK_RESERVE = 20.0
#: Below this many seconds left, bookkeeping after the last write is skipped.
BOOKKEEPING_RESERVE = 8.0


@dataclass(frozen=True)
class Shell:
    """What ``handle`` needs from the imperative shell besides the service."""

    store: Store
    remaining: Callable[[], float]
    #: Hears the answer as soon as the outcome is known, before bookkeeping.
    settle: Callable[[Answer], None] = lambda _answer: None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time


def _log_plan(message: str, plan: Plan) -> None:
    logger.info(
        message,
        extra={
            "membershipId": plan.membership_id,
            "calls": len(plan.requests),
            "ousToAdd": len(plan.ous_to_add),
            "ousToRemove": len(plan.ous_to_remove),
            "changedProperties": [c.property for c in plan.changes],
        },
    )


def _failed(request: Request, error: MembershipError, *, unrestored: bool = False) -> Answer:
    logger.warning(
        "failed",
        extra={
            "errorType": type(error).__name__,
            "applied": error.applied,
            "unknown": error.unknown,
            "reason": error.reason,
        },
    )
    return Answer.failed(request.failed_physical_id(unrestored=unrestored), error.reason)


def _decide(request: Request) -> Decision | Answer:
    """The decision, or the answer when the request cannot lead to a write."""
    try:
        decision = decide(request)
    except MembershipError as error:
        return _failed(request, error)
    if decision.membership_id is None and decision.restore_failed is None:
        logger.info("nothing to do", extra={"why": decision.reason})
        return Answer.success(request.physical_id, {})
    return decision


def answer_without_writes(request: Request) -> Answer | None:
    """The answer to a request that cannot write anything, or None if it may write.

    These answers depend only on the event, so a duplicate delivery gets the
    same one without an idempotency record.
    """
    decided = _decide(request)
    return decided if isinstance(decided, Answer) else None


class _Work:
    """One request that may write: its lease, its journal entry, its answer."""

    def __init__(
        self, request: Request, decision: Decision, service: MembershipService, shell: Shell
    ) -> None:
        self.request = request
        self.decision = decision
        self.service = service
        self.shell = shell
        self.holder = f"{request.stack_id}#{request.request_id}"

    # -- steps 1 and 2 -------------------------------------------------------------

    def _mode(self) -> Mode:
        request, decision = self.request, self.decision
        entry = self.shell.store.read(request.stack_id, request.logical_id)
        return classify(request, entry, decision.restore_failed)

    def _targets(self) -> list[str]:
        """The memberships this request may write to, in the order their leases are taken.

        Taken from the event alone, so the journal is read once, under the
        leases: the declared membership, and for an Update the old
        declaration's (the rollback of a replacement that has not journaled yet,
        after a cancelled update, must wait for the membership the forward
        change is writing to). The Delete of a failed Create's ``unrestored``
        id restores the membership its properties declare.
        """
        targets = {self.decision.membership_id}
        declarations = [self.request.properties]
        if self.request.request_type == "Update":
            declarations.append(self.request.old_properties or {})
        for declared in declarations:
            if isinstance(declared, Mapping):
                named = declared.get("MembershipId")
                if isinstance(named, str) and rules().membership_id.accepts(named):
                    targets.add(named)
        return sorted(t for t in targets if t)

    def run(self) -> Answer:
        targets = self._targets()
        if not targets:
            return self._carry(self._read_mode())  # no membership: nothing to write
        held: list[str] = []
        try:
            for target in targets:
                self._acquire(target)
                held.append(target)
            # Read under the leases: what the request before this one left.
            mode = self._read_mode()
            try:
                answer = self._carry(mode)
            except MembershipError as error:
                answer = _failed(self.request, error)
            self.shell.settle(answer)  # before the release and the idempotency record
            return answer
        finally:
            if self.shell.remaining() >= BOOKKEEPING_RESERVE:
                for target in held:
                    self.shell.store.release(target, self.holder)
            elif held:  # the answer is settled; the leases lapse at this invocation's deadline
                logger.warning("little time left: the lease is left to lapse")

    def _read_mode(self) -> Mode:
        try:
            return self._mode()
        except MembershipError as error:
            raise error.noted("no change was applied") from None

    def _acquire(self, target: str) -> None:
        now, remaining = self.shell.clock(), self.shell.remaining()
        try:
            self.shell.store.acquire(
                target,
                self.holder,
                now + remaining,
                wait_until=now + remaining - WORK_RESERVE,
                sleep=self.shell.sleep,
            )
        except JournalUnavailable as error:
            raise error.noted("no change was applied") from None

    def _carry(self, mode: Mode) -> Answer:
        if isinstance(mode, AlreadyRestored):
            logger.info("the rollback already restored this membership: nothing to do")
            return Answer.success(self.request.physical_id, {})
        if isinstance(mode, NothingApplied):
            return self._nothing_applied()
        if isinstance(mode, Rollback):
            return self._rollback(mode.entry)
        if self.decision.membership_id is None:
            logger.info("no journal entry to restore: nothing to do")
            return Answer.success(self.request.physical_id, {})
        return self._forward(mode)

    def _nothing_applied(self) -> Answer:
        """Roll back a change that never wrote: read for the attributes, send nothing."""
        logger.info("the change being rolled back made no write: nothing to restore")
        declared = self.decision.membership_id
        assert declared is not None
        return Answer.success(declared, self.service.get(declared).attributes())

    # -- step 3: forward -----------------------------------------------------------

    def _forward(self, mode: Forward) -> Answer:
        request, service = self.request, self.service
        decision = self.decision if mode.previous_applied else self.decision.without_previous()
        membership_id, plan_for = decision.membership_id, decision.plan
        assert membership_id is not None
        assert plan_for is not None
        if decision.must_exist:
            state = service.get(membership_id)
        else:
            found = service.find(membership_id)
            if found is None:
                logger.info("membership no longer exists: nothing to do")
                return Answer.success(request.physical_id, {})
            state = found
        plan = plan_for(state)
        _log_plan("planned", plan)
        tag_plan = self._tag_plan(state)  # read before any write
        entry = Entry(
            request_id=request.request_id,
            request_type=request.request_type,
            membership_id=membership_id,
            old=declaration_digest(request.old_properties),
            new=declaration_digest(request.properties) if request.request_type != "Delete" else "",
            touched=touched_by(state, plan, tag_plan),
            planned=len(plan.requests),
            phase="applying" if plan.requests or tag_plan.calls else "applied",
        )
        # A Delete journals under a key of its own: the clean-up Delete of a
        # replaced membership must not overwrite the entry of the one that stays.
        logical = (
            request.logical_id
            if request.request_type != "Delete"
            else (f"{request.logical_id}#delete#{membership_id}")
        )
        journal = _Journal(self.shell.store, request, entry, logical)
        try:
            journal.save()  # before the first write: a failure at any point finds it
        except MembershipError as error:
            raise error.noted("no change was applied") from None
        if not plan.requests and tag_plan.empty:
            return self._success(state, journal)
        try:
            applied = service.apply(state, plan, journal.replanning(plan_for), journal.progress)
            self._apply_tags(membership_id, tag_plan, applied.calls)
        except MembershipError as error:
            journal.update(
                phase="failed",
                applied=max(error.applied, journal.entry.applied),
                unknown=max(error.unknown, journal.entry.unknown),
            )
            if error.may_have_written and decision.undo_on_failure:
                return self._undo(journal, error)
            if error.may_have_written:
                error = error.noted("the stack's rollback restores them from the change journal")
            self._bookkeeping(journal)
            return _failed(request, error)
        logger.info("applied", extra={"membershipId": membership_id, "calls": applied.calls})
        journal.update(phase="applied", applied=applied.calls)
        return self._success(applied.state, journal)

    def _tag_plan(self, state: MembershipState) -> tags.TagPlan:
        """The tag calls (``tags.plan_tags``); no call at all when Tags is not declared."""
        declared, previous = tags.declarations(self.request)
        if not tags.managed(declared, previous):
            return tags.TagPlan()
        arn = _arn(state)
        actual = self.service.list_tags(state.membership_id, arn)
        plan = tags.plan_tags(declared, previous, actual, arn)
        logger.info("tags planned", extra={"tagCalls": [c.summary() for c in plan.calls]})
        return plan

    def _apply_tags(self, membership_id: str, plan: tags.TagPlan, applied: int) -> None:
        """The tag calls, after the UpdateMembership calls; a failure may have set some."""
        try:
            self.service.apply_tags(membership_id, plan)
        except MembershipError as error:
            raise type(error)(
                f"{error.reason} after {applied} UpdateMembership calls were applied; "
                "some tag calls may have been applied",
                applied=applied,
                unknown=1,
            ) from None

    def _success(self, state: MembershipState, journal: _Journal) -> Answer:
        request = self.request
        if request.request_type == "Delete":
            answer = Answer.success(request.physical_id, {})
        else:
            answer = Answer.success(state.membership_id, state.attributes())
        self.shell.settle(answer)
        self._bookkeeping(journal)
        return answer

    def _undo(self, journal: _Journal, error: MembershipError) -> Answer:
        """Put back what a failed Create or replacing Update may have applied.

        CloudFormation's rollback of those (a Delete, or an Update of the old
        membership) does not reach this membership, so the function restores
        it itself, from the journal, before it answers.
        """
        request, membership_id = self.request, journal.entry.membership_id
        try:
            self._restore(journal.entry)
        except MembershipError as undo_error:
            logger.warning("undo failed", extra={"errorType": type(undo_error).__name__})
            self._bookkeeping(journal)
            after = (
                "the rollback Delete restores them from the change journal"
                if request.request_type == "Create"
                else "the stack's rollback restores them from the change journal"
            )
            noted = error.noted(
                f"undoing them failed too ({type(undo_error).__name__}): membership "
                f"{membership_id} may keep those changes; {after}"
            )
            return _failed(request, noted, unrestored=request.request_type == "Create")
        journal.update(phase="restored")
        self._bookkeeping(journal)
        if journal.entry.touched.reactivated:
            noted = error.noted(
                f"they were undone except the reactivation: membership {membership_id} stays Active"
            )
        else:
            noted = error.noted(f"they were undone, membership {membership_id} is as it was")
        return _failed(request, noted)

    # -- step 3: rollback ----------------------------------------------------------

    def _restore(self, entry: Entry) -> MembershipState | None:
        """Compare-and-restore ``entry`` on its membership; its state after, or None if gone."""
        if entry.phase == "restored":
            logger.info("already restored from the journal: nothing to do")
            return None
        now = self.service.find(entry.membership_id)
        if now is None:
            return None
        restore = plan_rollback(entry, now)
        _log_plan("restoring from the journal", restore)
        if restore.requests:
            now = self.service.apply(now, restore, lambda state: plan_rollback(entry, state)).state
        if entry.touched.tags_before:
            arn = _arn(now)
            actual = self.service.list_tags(now.membership_id, arn)
            self.service.apply_tags(now.membership_id, plan_tag_rollback(entry, actual, arn))
        return now

    def _rollback(self, entry: Entry) -> Answer:
        request = self.request
        journal = _Journal(self.shell.store, request, entry)
        try:
            restored = self._restore(entry)
        except MembershipError as error:
            noted = error.noted(
                "the change journal keeps what to restore: retry the rollback "
                "(continue the update rollback, or delete again)"
            )
            return _failed(request, noted)
        journal.update(phase="restored")
        try:  # before SUCCESS: the clean-up Delete of a replacement relies on it
            journal.save()
        except MembershipError as error:
            raise error.noted(
                "the membership was restored but the change journal could not record it: "
                "retry the rollback"
            ) from None
        declared = self.decision.membership_id
        if request.request_type == "Delete" or declared is None:
            answer = Answer.success(request.physical_id, {})
        elif restored is not None and restored.membership_id == declared:
            answer = Answer.success(declared, restored.attributes())
        else:
            answer = Answer.success(declared, self.service.get(declared).attributes())
        self.shell.settle(answer)
        return answer

    # -- step 4 --------------------------------------------------------------------

    def _bookkeeping(self, journal: _Journal) -> None:
        """The entry's final state, if there is time; the answer does not wait on it."""
        if self.shell.remaining() < BOOKKEEPING_RESERVE:
            logger.warning("little time left: the journal's final phase is not recorded")
            return
        try:
            journal.save()
        except MembershipError as error:
            logger.warning(
                "could not record the journal's final phase", extra={"reason": error.reason}
            )


@dataclass
class _Journal:
    """The entry of the request being carried out, saved as it goes."""

    store: Store
    request: Request
    entry: Entry
    logical_id: str = ""

    def save(self) -> None:
        logical = self.logical_id or self.request.logical_id
        self.store.write(self.request.stack_id, logical, self.entry)

    def update(
        self, *, phase: Phase | None = None, applied: int | None = None, unknown: int | None = None
    ) -> None:
        entry = self.entry
        self.entry = replace(
            entry,
            phase=entry.phase if phase is None else phase,
            applied=entry.applied if applied is None else applied,
            unknown=entry.unknown if unknown is None else unknown,
        )

    def progress(self, applied: int) -> None:
        """After each applied call (informational: the before-values are already saved)."""
        self.update(applied=applied)
        if applied >= self.entry.planned:
            return  # the final phase follows at once
        try:
            self.save()
        except MembershipError as error:
            logger.warning(
                "could not record progress in the journal", extra={"reason": error.reason}
            )

    def replanning(
        self, plan_for: Callable[[MembershipState], Plan]
    ) -> Callable[[MembershipState], Plan]:
        """``plan_for``, journaling any field or OU a new plan touches before it is called."""

        def replan(state: MembershipState) -> Plan:
            plan = plan_for(state)
            merged = self.entry.touched.merged(touched_by(state, plan))
            if merged != self.entry.touched:
                self.entry = replace(
                    self.entry, touched=merged, planned=self.entry.applied + len(plan.requests)
                )
                try:
                    self.save()
                except MembershipError as error:
                    raise type(error)(
                        f"{error.reason}; stopped before touching more fields after "
                        f"{self.entry.applied} UpdateMembership calls were applied",
                        applied=self.entry.applied,
                        planned=self.entry.planned,
                    ) from None
            return plan

        return replan


def _arn(state: MembershipState) -> str:
    return state.arn or tags.membership_arn(
        "aws", state.region, state.account_id, state.membership_id
    )


def handle(request: Request, service: MembershipService, shell: Shell) -> Answer:
    """Carry out ``request`` and say how it went. Never raises ``MembershipError``."""
    decided = _decide(request)
    if isinstance(decided, Answer):
        return decided
    try:
        return _Work(request, decided, service, shell).run()
    except MembershipError as error:
        return _failed(request, error)
