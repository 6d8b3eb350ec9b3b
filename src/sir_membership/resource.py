"""One CloudFormation request in, one ``Answer`` out.

``handle`` is one Work step of a request that may write (``work_task`` runs
it; the state machine runs the steps). ``answer_without_writes`` answers the
requests that cannot lead to a write (invalid properties, a Delete with
nothing to do) in the dispatcher, before any execution, so they never depend
on the table or the engine: the rollback Delete of a failed Create succeeds
even if they are unreachable.

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

When the work does not fit in this step (the service refuses or delays
calls, another request holds the lease), the step returns ``Continue``
while the request's ServiceTimeout allows (``steps``): the state machine
waits, and the next step re-reads the membership, carries on from the
journal entry, and answers in its turn. A step whose request lost its
resource's fence to a newer one stops before its next write (``Stopped``).

Domain failures become FAILED answers here, so a duplicate delivery gets the
same answer back; only bugs escape as exceptions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from . import pace, tags
from .answers import BOOKKEEPING_RESERVE, at_least, bookkeeping, failed, log_plan
from .errors import (
    NO_CHANGE,
    JournalUnavailable,
    MembershipBusy,
    MembershipError,
    OutOfTime,
    ServiceFailure,
    Superseded,
    calls_known,
    with_outcome,
)
from .journal import (
    AlreadyRestored,
    Entry,
    Forward,
    Mode,
    NothingApplied,
    Phase,
    Record,
    Rollback,
    classify,
    declaration_digest,
    touched_by,
)
from .journal_writer import JournalWriter, delete_key
from .membership import MembershipState
from .outcome import Outcome, Stopped
from .plan import Plan
from .request import Decision, Request, decide
from .request_scope import own_entry, rolls_back_adoption, write_targets
from .response import Answer
from .restore import WORK_RESERVE, Restorer, read_settled
from .service import MembershipService
from .shell import Shell
from .steps import Steps

__all__ = ["Answer", "Request", "Shell", "answer_without_writes", "handle"]

logger = logging.getLogger(__name__)

#: Under the engine, how long a step waits for a busy membership's lease
#: before it lets a Wait state wait instead (no Lambda running meanwhile).
LEASE_GLANCE = 2.0


def _decide(request: Request) -> Decision | Answer:
    """The decision, or the answer when the request cannot lead to a write."""
    try:
        decision = decide(request)
    except MembershipError as error:
        return failed(request, error)
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
        self.holder = f"{request.stack_id}#{request.logical_id}#{request.request_id}"
        self.steps = Steps.of(request.properties, shell)
        self.restorer = Restorer(request, decision, service, shell, self.steps)
        #: This request's own journal entry, written by an earlier Work step
        #: (one that asked to continue, or one that died and is retried).
        self.own: Entry | None = None
        #: The resource's declaration record as read under the leases.
        self.record: Record | None = None
        #: Whether a crashed invocation of this request may have left a call in flight.
        self.in_flight = False

    # -- steps 1 and 2 -------------------------------------------------------------

    def _mode(self) -> Mode | Outcome:
        request, decision = self.request, self.decision
        store = self.shell.store
        entry = store.read(request.stack_id, request.logical_id)
        self.record = store.read_record(request.stack_id, request.logical_id)
        own = own_entry(request, decision, store, entry)
        if own is not None:  # a retry or a later step: carry on from its own entry
            return self._continued_mode(own)
        if request.request_type == "Delete" and rolls_back_adoption(request, entry, self.shell):
            assert entry is not None
            if entry.phase == "restored":
                return AlreadyRestored(entry)
            logger.info("the operation that brought in this membership rolls back: restoring")
            return Rollback(entry)
        return classify(request, entry, decision.restore_failed, self.record)

    def _continued_mode(self, own: Entry) -> Mode | Outcome:
        """Where an earlier Work step of this request left it."""
        shell = self.shell
        if own.phase in ("applying", "applied"):
            if own.phase == "applying" and (shell.retried or shell.step == 0 or own.unknown):
                # The step that wrote it died (Step Functions retries it, or a
                # new attempt begins), or an earlier step left a call of
                # unknown outcome: a call may have been applied. Unknown until
                # proven (by a read, or by the service refusing its repeat: no
                # wait here).
                self.in_flight = True
            self.own = own
            return Forward(previous_applied=own.previous_applied)
        if own.phase in ("restoring", "restored"):
            # The request still owes CloudFormation an answer, if it still waits for one.
            logger.info("the change's rollback has begun: answering FAILED without a write")
            return Answer.failed(
                self.request.failed_physical_id(),
                "The change was superseded by its rollback before it could answer: the "
                "rollback restores what it changed from the change journal",
            )
        failed_before = with_outcome(
            "the change failed in an earlier invocation",
            calls_known(own.applied, own.planned, own.unknown),
        )
        reason = f"{failed_before}; the stack's rollback restores them from the change journal"
        # A Create's writes left for its rollback Delete: the id says so, or it restores nothing.
        return Answer.failed(self.request.failed_physical_id(unrestored=own.unresolved), reason)

    def run(self) -> Outcome:
        stopped = self._begin()
        if stopped is not None:
            return stopped
        targets = write_targets(self.request, self.decision)
        if not targets:
            return self._carry(self._read_mode())  # no membership: nothing to write
        held: list[str] = []
        try:
            try:
                for target in targets:
                    self._acquire(target)
                    held.append(target)
            except MembershipBusy as busy:
                if not self.steps.may_continue(busy):
                    raise
                return self.steps.continue_after(busy)  # nothing written: wait, then look again
            # Read under the leases: what the request before this one left.
            mode = self._read_mode()
            try:
                outcome = self._carry(mode)
            except Superseded:
                raise
            except MembershipError as error:
                outcome = failed(self.request, error)
            if isinstance(outcome, Answer):
                self.shell.settle(outcome)  # before the release and the idempotency record
            return outcome
        finally:
            if self.shell.remaining() >= BOOKKEEPING_RESERVE:
                for target in held:
                    self.shell.store.release(target, self.holder)
            elif held:  # the answer is settled; the leases lapse at this invocation's deadline
                logger.warning("little time left: the lease is left to lapse")

    def _begin(self) -> Outcome | None:
        """Count the request's time from its first delivery."""
        request = self.request
        try:
            first = self.shell.store.first_seen(
                request.stack_id, request.request_id, self.shell.clock()
            )
        except JournalUnavailable as error:
            raise error.outcome(NO_CHANGE) from None
        self.steps.started_at(first)
        self.service.cap(self.steps.time_left)
        return None

    def _read_mode(self) -> Mode | Outcome:
        try:
            return self._mode()
        except MembershipError as error:
            raise error.outcome(NO_CHANGE) from None

    def _acquire(self, target: str) -> None:
        now, remaining = self.shell.clock(), self.shell.remaining()
        # Never wait past what the request's own ServiceTimeout leaves to work;
        # under the engine, only briefly: a Wait state does the rest.
        wait_until = now + min(remaining, self.steps.time_left()) - WORK_RESERVE
        if self.shell.engine:
            wait_until = min(wait_until, now + LEASE_GLANCE)
        try:
            self.shell.store.acquire(
                target,
                self.holder,
                now + remaining,
                wait_until=wait_until,
                sleep=self.shell.sleep,
            )
        except JournalUnavailable as error:
            raise error.outcome(NO_CHANGE) from None

    def _carry(self, mode: Mode | Outcome) -> Outcome:
        if not isinstance(mode, Forward | Rollback | NothingApplied | AlreadyRestored):
            return mode
        if isinstance(mode, AlreadyRestored):
            logger.info("the rollback already restored this membership: nothing to do")
            return Answer.success(self.request.physical_id, {})
        if isinstance(mode, NothingApplied):
            return self._nothing_applied()
        if isinstance(mode, Rollback):
            return self.restorer.rollback(mode.entry)
        if self.decision.membership_id is None or self.decision.planner is None:
            # No journal entry to restore, or a Delete that retains the membership.
            logger.info("nothing to do", extra={"why": self.decision.reason or "no entry"})
            return Answer.success(self.request.physical_id, {})
        return self._forward(mode)

    def _nothing_applied(self) -> Answer:
        """Roll back a change that never wrote: read for the attributes, send nothing."""
        logger.info("the change being rolled back made no write: nothing to restore")
        declared = self.decision.membership_id
        assert declared is not None
        return Answer.success(declared, self.service.get(declared).attributes())

    # -- step 3: forward -----------------------------------------------------------

    def _forward(self, mode: Forward) -> Outcome:
        request, service, own = self.request, self.service, self.own
        decision = self.decision if mode.previous_applied else self.decision.without_previous()
        membership_id, plan_for = decision.membership_id, decision.plan
        assert membership_id is not None
        assert plan_for is not None
        # A Delete journals under a key of its own: the clean-up Delete of a
        # replaced membership must not overwrite the entry of the one that stays.
        logical = (
            request.logical_id
            if request.request_type != "Delete"
            else delete_key(request.logical_id, membership_id)
        )
        prepared = self._prepare(membership_id, logical, plan_for)
        if not isinstance(prepared, tuple):
            return prepared
        state, plan, tag_plan = prepared
        if own is None:  # before the first write: a change that cannot fit is refused
            doomed = pace.doomed(
                service.recorded_pace(membership_id),
                plan,
                self.shell.clock(),
                time_left=self.steps.time_left(),
                service_timeout=self.steps.service_timeout,
            )
            if doomed is not None:
                raise ServiceFailure(doomed)
        phase: Phase = "applying" if plan.requests or tag_plan.calls else "applied"
        touched = touched_by(state, plan, tag_plan)
        if own is not None:  # an earlier step's before-values come first
            entry = replace(
                own,
                touched=own.touched.merged(touched),
                planned=own.applied + len(plan.requests),
                phase=phase,
                unknown=max(own.unknown, int(self.in_flight)),
                resting=False,  # this step's calls are about to be in flight
            )
        else:
            entry = Entry(
                request_id=request.request_id,
                request_type=request.request_type,
                membership_id=membership_id,
                old=declaration_digest(request.old_properties),
                new=declaration_digest(request.properties)
                if request.request_type != "Delete"
                else "",
                touched=touched,
                planned=len(plan.requests),
                phase=phase,
                previous_applied=mode.previous_applied,
                record_before=self.record,
                replacement=self.decision.replacement,
            )
        journal = JournalWriter(
            self.shell.store,
            request,
            entry,
            self.shell.clock,
            logical,
            done_with_last_call=tag_plan.empty,
        )
        try:
            journal.save()  # before the first write: a failure at any point finds it
        except MembershipError as error:
            if own is None:
                raise error.outcome(NO_CHANGE) from None
            return self._before_calls_failed(error, logical)
        if not plan.requests and tag_plan.empty:
            return self._success(state, journal)
        already = own.applied if own is not None else 0
        try:
            applied = service.apply(
                state,
                plan,
                journal.replanning(plan_for),
                journal.progress,
                already=already,
                in_flight=self.in_flight,
            )
            self._apply_tags(membership_id, tag_plan, applied.calls)
        except Superseded as error:
            # The rollback (or a newer update) owns the journal entry now: write nothing.
            logger.info("superseded by a newer request of the resource: stopping")
            return Stopped(error.reason)
        except MembershipError as error:
            return self._stopped_part_way(journal, error)
        logger.info("applied", extra={"membershipId": membership_id, "calls": applied.calls})
        journal.update(phase="applied", applied=applied.calls)
        return self._success(applied.state, journal)

    def _prepare(
        self, membership_id: str, logical: str, plan_for: Callable[[MembershipState], Plan]
    ) -> tuple[MembershipState, Plan, tags.TagPlan] | Outcome:
        """The state to plan from and the plans, or the outcome when there are none."""
        try:
            state = read_settled(
                self.service,
                self.shell,
                membership_id,
                self.own,
                must_exist=self.decision.must_exist,
            )
            if state is None:
                logger.info("membership no longer exists: nothing to do")
                return Answer.success(self.request.physical_id, {})
            plan = plan_for(state)
            log_plan("planned", plan)
            return state, plan, self._tag_plan(state)  # the tags are read before any write
        except MembershipError as error:
            return self._before_calls_failed(error, logical)

    def _stopped_part_way(self, journal: JournalWriter, error: MembershipError) -> Outcome:
        """This step's calls stopped: wait for the next step, or fail with what was applied."""
        error = at_least(error, journal.entry)
        journal.update(applied=error.applied, unknown=error.unknown)
        if self.steps.may_continue(error):
            # Every call of this step is counted: none is in flight during the wait.
            journal.entry = replace(journal.entry, resting=True)
            journal.try_save("progress")
            return self.steps.continue_after(error)
        return self._forward_failed(journal, error)

    def _before_calls_failed(self, error: MembershipError, logical: str) -> Outcome:
        """A failure before this step's first call (a read, the plan, the journal).

        Waited out by the next step while it only means "not now"; otherwise,
        when earlier steps wrote, a failure part-way (undone, or left to the
        rollback), never an answer that says nothing was written.
        """
        if isinstance(error, Superseded):  # the journal write was fenced out: stop
            raise error
        if self.steps.may_continue(error):  # out of time, reads still stale, throttled
            return self.steps.continue_after(error)
        own = self.own
        if own is None:
            raise self.steps.out_of_time(error) if isinstance(error, OutOfTime) else error
        own = replace(own, unknown=max(own.unknown, int(self.in_flight)))
        journal = JournalWriter(self.shell.store, self.request, own, self.shell.clock, logical)
        return self._forward_failed(journal, at_least(error, own))

    def _forward_failed(self, journal: JournalWriter, error: MembershipError) -> Answer:
        journal.update(phase="failed")
        if isinstance(error, OutOfTime):
            error = self.steps.out_of_time(error)
        if error.may_have_written and self.decision.undo_on_failure:
            return self.restorer.undo(journal, error)
        if error.may_have_written:
            error = error.noted("the stack's rollback restores them from the change journal")
        bookkeeping(self.shell, journal)
        return failed(self.request, error)

    def _tag_plan(self, state: MembershipState) -> tags.TagPlan:
        """The tag calls (``tags.plan_tags``); no call at all when Tags is not declared."""
        declared, previous = tags.declarations(self.request)
        if not tags.managed(declared, previous):
            return tags.TagPlan()
        arn = tags.state_arn(state)
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
                with_outcome(error.reason, f"{applied} UpdateMembership calls were applied")
                + "; some tag calls may have been applied",
                applied=applied,
                unknown=1,
            ) from None

    def _success(self, state: MembershipState, journal: JournalWriter) -> Answer:
        request = self.request
        if request.request_type == "Delete":
            answer = Answer.success(request.physical_id, {})
        else:
            answer = Answer.success(state.membership_id, state.attributes())
        self.shell.settle(answer)
        bookkeeping(self.shell, journal)
        if request.request_type != "Delete":
            self._converged()
        return answer

    def _converged(self) -> None:
        """Write the declaration record: this declaration is now the converged one."""
        request = self.request
        record = Record(declaration_digest(request.properties), self.decision.declared)
        if record == self.record:
            return
        try:
            self.shell.store.write_record(request.stack_id, request.logical_id, record)
        except MembershipError as error:  # the next Update then removes no old OU: safe
            logger.warning("could not write the declaration record", extra={"reason": error.reason})


def handle(request: Request, service: MembershipService, shell: Shell) -> Outcome:
    """Carry out ``request`` and say how it went, or that another invocation will.

    Never raises ``MembershipError``.
    """
    decided = _decide(request)
    if isinstance(decided, Answer):
        return decided
    try:
        return _Work(request, decided, service, shell).run()
    except Superseded as error:  # a newer request (or its own answer) holds the fence now
        return Stopped(error.reason)
    except MembershipError as error:
        return failed(request, error)
