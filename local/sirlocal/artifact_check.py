"""A whole stack lifecycle through the handler of the *built* package.

Why: the package is pruned (botocore models, Powertools modules, data files)
and ships bytecode; an import proves little about that. This plays a stack
(create, update, an invalid update, an update that fails part-way and its
rollback, delete) through ``sir_membership.app.handler`` (the dispatcher)
and the state machine's tasks (``sir_membership.tasks``, played by the local
Step Functions stand-in), each loaded from its own ``sam build`` output, on a bare python3.13 with ``-S`` (no site-packages: only
the standard library and the package can be imported) and ``-B``, against the
local stand-ins (emulator, moto's DynamoDB for the idempotency records and
change journal and leases, the HTTPS receiver). A file the function needs that the build
dropped fails this check, with the stack's story and the worker's log.

``python -m sirlocal.artifact_check --artifact DIR --python PYTHON3.13``
(run from the development virtualenv, which has moto and the stand-ins).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sirlocal.driver import REPO_ROOT, DriverError, WorkerPool, worker_env
from sirlocal.fixtures import FOREIGN, NAMES, A, Expect, declare, ous, seed
from sirlocal.scenarios import Fault, Scenario, ScenarioResult, Step, run_scenario
from sirlocal.services import local_services

REMOVE = "RemoveOrganizationalUnits"

LIFECYCLE = Scenario(
    "artifact-lifecycle",
    "lifecycle",
    "create, update, invalid update, failed update and its rollback, delete (removes OUs)",
    (seed(A, ou_ids=[*ous(1, 4), *FOREIGN]),),
    (
        Step("cold"),
        Step("create", declare(OrganizationalUnits=ous(1, 4), OnDelete=REMOVE), "CREATE_COMPLETE"),
        Step(
            "update",
            declare(MembershipName=NAMES[1], OrganizationalUnits=ous(1, 6), OnDelete=REMOVE),
            "UPDATE_COMPLETE",
        ),
        Step(
            "update",
            declare(MembershipName=NAMES[1], OrganizationalUnits=["ou-not-an-ou"], OnDelete=REMOVE),
            "UPDATE_ROLLBACK_COMPLETE",
            reason_has=("OrganizationalUnits",),
        ),
        Step(
            "update",
            declare(MembershipName=NAMES[2], OrganizationalUnits=ous(5, 16), OnDelete=REMOVE),
            "UPDATE_ROLLBACK_COMPLETE",
            faults=(Fault("error", "UpdateMembership", on_call=2, error="AccessDeniedException"),),
            reason_has=(". 1 of 2 UpdateMembership calls were applied",),
        ),
        Step("delete", expect="DELETE_COMPLETE"),
    ),
    {A: Expect(ous=frozenset(FOREIGN), name=NAMES[1])},
    (
        "Get A",
        "Get A",
        "Update A +2 -0 name",
        "Get A",
        "Get A",
        "Update A +5 -4 name",  # +7..16 -1..4: two calls, the second denied
        "Update A +5 -0 !AccessDeniedException",
        "Get A",  # the rollback Update puts back what the first call changed
        "Update A +4 -5 name",
        "Get A",  # Delete removes the six declared OUs, five per call
        "Update A +0 -5",
        "Update A +0 -1",
    ),
)


def run(artifact: Path, tasks: Path, python: str) -> ScenarioResult:
    """Play :data:`LIFECYCLE` through the handlers in ``artifact`` (the dispatcher) and
    ``tasks`` (Work and Answer) on ``python -S -B``."""
    local = REPO_ROOT / "local"  # the worker's own module is stdlib only
    with local_services() as services:
        env = worker_env(services.child_env(), PYTHONPATH=f"{artifact}:{local}")
        task_env = {**env, "PYTHONPATH": f"{tasks}:{local}"}
        with WorkerPool(env, python=(python, "-S", "-B")) as pool:
            return run_scenario(LIFECYCLE, services, pool, stack_name="artifact", task_env=task_env)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sirlocal.artifact_check", description=__doc__)
    parser.add_argument("--artifact", type=Path, required=True, help="the built function")
    parser.add_argument(
        "--tasks-artifact",
        type=Path,
        help="the built Work function (default: WorkFunction beside --artifact)",
    )
    parser.add_argument("--python", required=True, help="a bare python3.13 (not a venv)")
    args = parser.parse_args(argv)
    artifact = args.artifact.resolve()
    tasks = (args.tasks_artifact or artifact.parent / "WorkFunction").resolve()
    for built, module in ((artifact, "app.py"), (tasks, "tasks.py")):
        if not (built / "sir_membership" / module).is_file():
            print(f"artifact-check: {built} holds no sir_membership/{module}", file=sys.stderr)
            return 2
    try:
        result = run(artifact, tasks, args.python)
    except DriverError as error:  # e.g. the handler does not import (init error)
        print(f"artifact-check: the lifecycle could not run: {error}", file=sys.stderr)
        return 1
    print(f"artifact-check: lifecycle on {artifact}: {result.outcome} ({result.seconds:.1f} s)")
    for problem in result.problems:
        print(f"artifact-check:   {problem}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
