"""Invalid declarations: FAILED at once, naming the property, with no call made.

Each declaration is sent as a Create (which CloudFormation then rolls back
with a Delete) and as an Update of a healthy stack (rolled back with the
old declaration). The failing requests make no security-ir call at all;
the Update's rollback reads the membership but writes nothing. All run on
the same warm worker.
"""

from __future__ import annotations

import pytest
from sirlocal.driver import StackDriver, WorkerPool
from sirlocal.fixtures import A, declare, seed
from sirlocal.scenarios import BAD_INPUT_ANSWER_SECONDS, INVALID_INPUTS, BadInput, check_bad_input
from sirlocal.services import LocalServices

pytestmark = pytest.mark.e2e


def test_there_are_at_least_forty_invalid_declarations() -> None:
    assert len(INVALID_INPUTS) >= 40
    assert len({b.name for b in INVALID_INPUTS}) == len(INVALID_INPUTS)


@pytest.mark.parametrize("bad", INVALID_INPUTS, ids=[b.name for b in INVALID_INPUTS])
def test_invalid_declaration_fails_fast_without_calls(
    bad: BadInput, services: LocalServices, pool: WorkerPool
) -> None:
    services.emulator.seed(seed())
    stack = StackDriver(
        services.receiver, pool.get(0), stack_name="healthy", states=services.states
    )
    assert stack.create(declare()).stack_status == "CREATE_COMPLETE"
    before = services.emulator.state(A)
    result = check_bad_input(bad, services, pool, stack)
    assert result.problems == (), "\n".join(result.problems)
    assert result.create_seconds < BAD_INPUT_ANSWER_SECONDS
    assert result.update_seconds < BAD_INPUT_ANSWER_SECONDS
    assert services.emulator.state(A) == before
