"""Shared services for the end-to-end tests: started once, reset between tests.

The emulator, the receiver and the local Step Functions endpoint (the
provider's state machine, whose tasks run in Lambda workers) run in this
process, moto and the Lambda workers as child processes; all of them are stopped at the end of the
session, also when a test fails (context managers, plus ``atexit``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sirlocal.driver import WorkerPool, worker_env
from sirlocal.scenarios import configure_tasks
from sirlocal.services import LocalServices, local_services


@pytest.fixture(scope="session")
def services() -> Iterator[LocalServices]:
    """Emulator, receiver and moto (with the idempotency table) for the whole session."""
    with local_services() as bundle:
        yield bundle


@pytest.fixture(scope="session")
def pool(services: LocalServices) -> Iterator[WorkerPool]:
    """Lambda workers running the real handler; worker 0 is started (warm) once.

    The execution's tasks (Work, Answer) run as these workers do.
    """
    with WorkerPool(worker_env(services.child_env())) as workers:
        configure_tasks(services, workers, workers.timeout)
        workers.get(0).start()
        yield workers


@pytest.fixture(autouse=True)
def clean_services(services: LocalServices, pool: WorkerPool) -> Iterator[None]:
    """Each test starts from an empty emulator, receiver and Step Functions endpoint (the
    function timeout of the pool's workers), and leaves no fault armed."""
    services.emulator.reset()
    services.receiver.reset()
    services.states.reset()
    configure_tasks(services, pool, pool.timeout)
    yield
    services.emulator.clear_faults()
    services.receiver.clear_faults()
    services.states.reset()  # no execution outlives its test
    for worker in pool.workers:
        if worker.busy:  # a test failed mid-invocation: start the next one clean
            worker.kill()
