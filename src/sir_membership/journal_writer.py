"""The journal entry of the request being carried out, saved as it goes.

Why a class of its own: the entry is written at four moments (before the
first write, after each call, when a replan touches more, at the end) and
each has its own rule for a failed save: before a write it stops the work,
after one it is only logged (the before-values are already saved).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from .errors import MembershipError, with_outcome
from .journal import Entry, Phase, touched_by
from .journal_store import Store
from .membership import MembershipState
from .plan import Plan
from .request import Request

logger = logging.getLogger(__name__)


@dataclass
class JournalWriter:
    """``entry``, as this invocation changes it; ``save`` puts it in the table."""

    store: Store
    request: Request
    entry: Entry
    clock: Callable[[], float]
    logical_id: str = ""
    #: Whether the change is over once its last UpdateMembership call is applied
    #: (no tag call follows): that call's progress then records the final phase.
    done_with_last_call: bool = False
    _saved: Entry | None = None

    def save(self) -> None:
        logical = self.logical_id or self.request.logical_id
        self.store.write(self.request.stack_id, logical, self.entry)
        self._saved = self.entry

    @property
    def unsaved(self) -> bool:
        """Whether the entry differs from what this invocation last saved."""
        return self._saved != self.entry

    def try_save(self, what: str) -> None:
        """Save after a write: a failure is logged, the work goes on."""
        try:
            self.save()
        except MembershipError as error:
            logger.warning(
                "could not record in the journal", extra={"what": what, "reason": error.reason}
            )

    def update(
        self, *, phase: Phase | None = None, applied: int | None = None, unknown: int | None = None
    ) -> None:
        entry = self.entry
        self.entry = replace(
            entry,
            phase=entry.phase if phase is None else phase,
            applied=entry.applied if applied is None else applied,
            unknown=entry.unknown if unknown is None else unknown,
            # A call of unknown outcome was just sent: reads show it only later.
            last_write=self.clock()
            if unknown is not None and unknown > entry.unknown
            else entry.last_write,
        )

    def wrote(self, state: MembershipState) -> None:
        """Note the OUs a call of this entry left and when (see ``Entry.ous_now``)."""
        self.entry = replace(
            self.entry, ous_now=state.organizational_units, last_write=self.clock()
        )

    def progress(self, applied: int, state: MembershipState) -> None:
        """After each applied call of the change (the before-values are already saved).

        The last call's progress carries the final phase, so that it is
        recorded even when the invocation has no time left for bookkeeping:
        an entry left ``applying`` after a change that completed would make
        a later rollback of a change that wrote nothing restore over others.
        """
        last = applied >= self.entry.planned and self.done_with_last_call
        self.update(applied=applied, phase="applied" if last else None)
        self.wrote(state)
        self.try_save("progress")

    def restore_progress(self, _restored: int, state: MembershipState) -> None:
        """After each call of a rollback: its next Work step, or a retry, reads what it left."""
        self.wrote(state)
        self.try_save("the rollback's progress")

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
                        with_outcome(
                            error.reason,
                            f"{self.entry.applied} UpdateMembership calls were applied",
                        )
                        + "; the change stopped before touching more fields",
                        applied=self.entry.applied,
                        planned=self.entry.planned,
                    ) from None
            return plan

        return replan


def delete_key(logical_id: str, membership_id: str) -> str:
    """Where a Delete journals: apart, so the clean-up Delete of a replaced membership
    does not overwrite the entry of the one that stays."""
    return f"{logical_id}#delete#{membership_id}"
