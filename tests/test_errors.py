"""The shape of every reason: ``<what failed>: <fix>. <what was applied>; <what happens to it>``."""

from __future__ import annotations

import pytest

from sir_membership.errors import NO_CHANGE, OutOfTime, ServiceFailure, calls_applied, with_outcome


@pytest.mark.parametrize(
    ("applied", "planned", "outcome"),
    [
        (0, 0, ""),
        (0, 2, "no change was applied"),
        (1, 2, "1 of 2 UpdateMembership calls were applied"),
    ],
)
def test_calls_applied(applied: int, planned: int, outcome: str) -> None:
    assert calls_applied(applied, planned) == outcome


def test_the_outcome_is_a_sentence_of_its_own() -> None:
    assert with_outcome("X was denied: allow X", NO_CHANGE) == (
        "X was denied: allow X. No change was applied"
    )
    assert with_outcome("X was denied: allow X", "") == "X was denied: allow X"


def test_a_fix_or_a_second_cause_goes_before_the_count_and_a_note_after() -> None:
    error = OutOfTime(
        with_outcome("ran out of time before UpdateMembership could be sent", calls_applied(1, 2)),
        applied=1,
        planned=2,
    )
    fixed = error.fixed("raise the function's Timeout").noted("the rollback restores them")
    assert fixed.reason == (
        "ran out of time before UpdateMembership could be sent: raise the function's Timeout. "
        "1 of 2 UpdateMembership calls were applied; the rollback restores them"
    )
    assert (fixed.applied, fixed.planned) == (1, 2)
    assert error.also("lambda:InvokeFunction denied").reason == (
        "ran out of time before UpdateMembership could be sent; lambda:InvokeFunction denied. "
        "1 of 2 UpdateMembership calls were applied"
    )
    bare = ServiceFailure("could not read the journal: check the table")
    assert bare.outcome(NO_CHANGE).reason == (
        "could not read the journal: check the table. No change was applied"
    )
