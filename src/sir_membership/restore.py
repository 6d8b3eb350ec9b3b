"""Putting a membership back from its journal entry: rollbacks and undos.

Why apart from the forward change (``resource``): restoring follows one rule
of its own, compare-and-restore from what *was* (``journal.plan_rollback``),
never from a declaration, and it has its own ways to end: a rollback that
cannot finish keeps the entry for the next retry; an undo that cannot
finish leaves the failed Create's ``unrestored`` id for the rollback Delete.

``read_settled`` is shared with later Work steps of a forward change: both
read a membership soon after their own calls, when the service may not show
them yet.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace

from . import tags
from .answers import bookkeeping, failed, log_plan
from .errors import NO_CHANGE, MembershipError, OutOfTime, Superseded, calls_known, with_outcome
from .journal import Entry, plan_rollback, plan_tag_rollback
from .journal_writer import JournalWriter
from .membership import MembershipState
from .outcome import Outcome, Stopped
from .request import Decision, Request
from .response import Answer
from .service import MembershipService
from .shell import Shell
from .steps import Steps
from .timing import TIMING

logger = logging.getLogger(__name__)

#: Seconds a request keeps, after waiting (for the lease, or for reads), to make a call.
WORK_RESERVE = TIMING.work_reserve


def read_settled(
    service: MembershipService,
    shell: Shell,
    membership_id: str,
    entry: Entry | None,
    *,
    must_exist: bool,
) -> MembershipState | None:
    """The membership as it is (None: gone and need not exist), past any stale read.

    After a call made for ``entry``, a read that does not show the OUs that
    call left (only those the entry touches count) may only be stale: the
    service shows account changes late. It is read again, with backoff,
    until it does or ``stale_read_grace`` has passed since that call; then
    the read is taken as it is (someone else changed them). After a call
    whose outcome is unknown, what it left is not known either: only a read
    made ``stale_read_grace`` after it is proof, unless a read already shows
    everything the change set out to do, so that read is waited for.
    """
    state = service.get(membership_id) if must_exist else service.find(membership_id)
    if entry is not None and entry.unknown and not _shows_all(state, entry):
        # A read that does not show the unknown call may only be stale: not proof.
        _wait_for_fresh_reads(service, shell, entry)
        state = service.get(membership_id) if must_exist else service.find(membership_id)
    if entry is None or entry.ous_now is None or entry.unknown:
        return state
    mine = entry.touched.ous_added | entry.touched.ous_removed
    attempt = 0
    while state is not None and state.organizational_units & mine != entry.ous_now & mine:
        since = shell.clock() - entry.last_write
        if since >= shell.stale_read_grace:
            logger.info("reads still differ from what the last call left: planning from them")
            break
        if service.wait_for_propagation(
            membership_id, applied=entry.applied, planned=entry.planned
        ):  # paced: slept a moment, or the step ends for a Wait state
            attempt += 1
            state = service.get(membership_id) if must_exist else service.find(membership_id)
            continue
        wait = min(0.5 * 2**attempt, 8.0, shell.stale_read_grace - since)
        if shell.remaining() - wait < service.call_reserve:
            raise OutOfTime(
                "reads of the membership do not show its last calls yet",
                applied=entry.applied,
                planned=entry.planned,
            )
        logger.info("reads do not show the last call yet (propagation): reading again")
        shell.sleep(wait)
        attempt += 1
        state = service.get(membership_id) if must_exist else service.find(membership_id)
    return state


def _shows_all(state: MembershipState | None, entry: Entry) -> bool:
    """Whether ``state`` shows every OU change ``entry`` set out to make."""
    if state is None:
        return False
    touched, ous = entry.touched, state.organizational_units
    return touched.ous_added <= ous and not touched.ous_removed & ous


def _wait_for_fresh_reads(service: MembershipService, shell: Shell, entry: Entry) -> None:
    """Wait until a read can show what a call of unknown outcome did (or did not do)."""
    wait = entry.last_write + shell.stale_read_grace - shell.clock()
    if wait <= 0:
        return
    room = shell.remaining() - service.call_reserve
    # Under the engine a wait longer than a moment is a Wait state (no Lambda
    # running, and never past the Work task's own timeout); else wait what fits
    # here, and a new invocation waits the rest.
    if shell.engine and wait > min(room, TIMING.longest_sleep):
        room = 0.0
    if wait > room:
        if room > 0:
            shell.sleep(room)
        raise OutOfTime(
            "the outcome of an earlier UpdateMembership call is unknown and reads do not "
            "show it yet",
            applied=entry.applied,
            planned=entry.planned,
            unknown=entry.unknown,
            wait=max(wait - max(room, 0.0), 0.0),
        )
    logger.info("an earlier call's outcome is unknown: waiting for reads to show it")
    shell.sleep(wait)


def _after_earlier_restores(error: MembershipError) -> MembershipError:
    """``error`` of a rollback that an earlier step (or request) may have restored with.

    Its counts are this step's only: never "no change was applied" then, and
    "K of M" says it is this step's (earlier steps restored more).
    """
    nothing = with_outcome("", NO_CHANGE)
    counted = with_outcome("", calls_known(error.applied, error.planned, error.unknown))
    if error.reason.endswith(nothing):
        reason = with_outcome(
            error.reason.removesuffix(nothing),
            "some of its restoring calls may have been applied in an earlier step",
        )
    elif counted and error.reason.endswith(counted):
        reason = error.reason + " in this Work step; earlier steps restored others"
    else:
        return error
    told = copy.copy(error)
    told.args = (reason,)
    return told


class Restorer:
    """Restores one request's journal entries (see the module docstring)."""

    def __init__(
        self,
        request: Request,
        decision: Decision,
        service: MembershipService,
        shell: Shell,
        steps: Steps,
    ) -> None:
        self.request = request
        self.decision = decision
        self.service = service
        self.shell = shell
        self.steps = steps

    def restore(self, journal: JournalWriter) -> MembershipState | None:
        """Compare-and-restore the entry on its membership; its state after, or None if gone."""
        entry = journal.entry
        if entry.phase == "restored":
            logger.info("already restored from the journal: nothing to do")
            return None
        now = read_settled(self.service, self.shell, entry.membership_id, entry, must_exist=False)
        if now is None:
            return None
        restore = plan_rollback(entry, now)
        log_plan("restoring from the journal", restore)
        if restore.requests:
            now = self.service.apply(
                now,
                restore,
                lambda state: plan_rollback(entry, state),
                journal.restore_progress,
                # Its first call may repeat one a step that died had in flight (a retried
                # step; an undo of a failed change that died unrecorded): the service's
                # refusal of each OU it moves proves they are where the restore puts them.
                in_flight=self.shell.retried or entry.phase == "failed",
            ).state
        if entry.touched.tags_before:
            arn = tags.state_arn(now)
            actual = self.service.list_tags(now.membership_id, arn)
            self.service.apply_tags(now.membership_id, plan_tag_rollback(entry, actual, arn))
        return now

    def undo(self, journal: JournalWriter, error: MembershipError) -> Answer:
        """Put back what a failed Create or replacing Update may have applied.

        CloudFormation's rollback of those (a Delete, or an Update of the old
        membership) does not reach this membership, so the function restores
        it itself, from the journal, before it answers.
        """
        request, membership_id = self.request, journal.entry.membership_id
        try:
            # The entry says the change failed before a restoring call is sent: a retry of
            # this step must not carry the change on over what the undo removed.
            journal.save()
            self.restore(journal)
        except MembershipError as undo_error:
            logger.warning("undo failed", extra={"errorType": type(undo_error).__name__})
            bookkeeping(self.shell, journal)
            after = (
                "the rollback Delete restores them from the change journal"
                if request.request_type == "Create"
                else "the stack's rollback restores them from the change journal"
            )
            noted = error.noted(
                f"undoing them failed too ({type(undo_error).__name__}): membership "
                f"{membership_id} may keep those changes; {after}"
            )
            return failed(request, noted, unrestored=request.request_type == "Create")
        journal.update(phase="restored")
        bookkeeping(self.shell, journal)
        if journal.entry.touched.reactivated:
            noted = error.noted(
                f"they were undone except the reactivation: membership {membership_id} stays Active"
            )
        else:
            noted = error.noted(f"they were undone, membership {membership_id} is as it was")
        return failed(request, noted)

    def rollback(self, entry: Entry) -> Outcome:
        """CloudFormation's rollback of ``entry``'s change: restore, then answer."""
        request = self.request
        journal = JournalWriter(self.shell.store, request, entry, self.shell.clock)
        if entry.phase == "applying":  # its change may still be running: mark it
            # A step of it that died (or runs on past the fence) may have had a call in
            # flight that its entry could not count: unknown until a read proves it, so
            # compare-and-restore waits for fresh reads (docs/journal.md).
            # A step that ended with its calls counted (resting: the execution waits)
            # left none in flight.
            in_flight = entry.applied < entry.planned and not entry.resting
            journal.update(phase="restoring", unknown=max(entry.unknown, 1) if in_flight else None)
            if journal.entry.unknown:
                # When that call was sent is not in the entry (a retried step counted it,
                # after the fact): reads are proof only a grace after now.
                journal.entry = replace(journal.entry, last_write=self.shell.clock())
            try:
                journal.save()
            except MembershipError as error:
                raise error.noted("nothing was restored yet: retry the rollback") from None
        try:
            restored = self.restore(journal)
        except Superseded as error:
            logger.info("superseded by a newer request of the resource: stopping")
            return Stopped(error.reason)
        except MembershipError as error:
            if self.steps.may_continue(error):
                journal.try_save("progress")
                return self.steps.continue_after(error)
            if isinstance(error, OutOfTime):
                error = self.steps.out_of_time(error)
            if self.shell.step or self.shell.retried or entry.phase == "restoring":
                error = _after_earlier_restores(error)
            noted = error.noted(
                "the change journal keeps what to restore: retry the rollback "
                "(continue the update rollback, or delete again)"
            )
            return failed(request, noted)
        journal.update(phase="restored")
        try:  # before SUCCESS: the clean-up Delete of a replacement relies on it
            journal.save()
            # What the resource converged before the change is what it converged now.
            self.shell.store.write_record(request.stack_id, request.logical_id, entry.record_before)
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
