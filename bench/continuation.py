"""Changes that outlast one invocation: wall time against ``calls x P``, and invocations used.

Each case is a real stack Update through the local stand-ins (the dispatcher
in a Lambda worker, the emulator under a propagation model, the local Step
Functions stand-in running the Work steps and the Answer in worker processes;
"continuations" counts the Work steps after the first), timed from the Update
event to the answer PUT. The bound is ``calls x P``: after each
accepted OU change the emulator refuses the next call for P seconds, so no
client can do better. The goal (issue 9) is ``1.1 x bound`` plus one cold
start per continuation; the cold start is the one measured in this run.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from common import log

#: (model, P seconds, Retry-After, sizes): Retry-After carries whole seconds, so
#: its P is 1 s; the others use a P short enough for +1,000 OUs to fit the bench.
CASES: tuple[tuple[str, float, bool, tuple[int, ...]], ...] = (
    ("conflict", 0.2, False, (20, 100, 1000)),
    ("conflict-stale-reads", 0.2, False, (20, 100, 1000)),
    ("conflict", 1.0, True, (20, 100)),
)
#: The function's timeout here: short, so that the larger changes need continuations.
FUNCTION_TIMEOUT = 25.0


def measure(cases: tuple[tuple[str, float, bool, tuple[int, ...]], ...] = CASES) -> dict[str, Any]:
    """Run every case; one row each."""
    from sirlocal.driver import StackDriver, WorkerPool, worker_env  # noqa: PLC0415
    from sirlocal.scenarios import A, declare, ous, seed  # noqa: PLC0415
    from sirlocal.services import local_services  # noqa: PLC0415

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with (
        local_services() as services,
        WorkerPool(worker_env(services.child_env()), timeout=FUNCTION_TIMEOUT) as pool,
    ):
        services.states.configure(env=pool.env, timeout=FUNCTION_TIMEOUT, python=pool.python)
        for model, seconds, retry_after, sizes in cases:
            for size in sizes:
                services.emulator.reset()
                services.receiver.reset()
                services.states.reset()
                services.emulator.seed_many([seed()])
                stack = StackDriver(
                    services.receiver,
                    pool.get(0),
                    stack_name=f"bench-continuation-{size}",
                    timeout=FUNCTION_TIMEOUT,
                    states=services.states,
                )
                created = stack.create(declare())
                assert created.stack_status == "CREATE_COMPLETE", created.stack_status
                services.emulator.set_propagation_model(model, seconds, retry_after=retry_after)
                log(f"continuation: +{size} OUs, {model}, P = {seconds:g} s")
                began = time.time()
                operation = stack.update(declare(OrganizationalUnits=ous(1, size + 2)))
                services.emulator.clear_faults()
                delivery = operation.deliveries[0]
                answer_seconds = delivery.answer_seconds
                updates = [
                    c for c in services.emulator.calls("UpdateMembership") if c.timestamp >= began
                ]
                applied = sum(1 for c in updates if c.status == 200)
                refused = len(updates) - applied
                calls = math.ceil(size / 5)
                attempts = [r for r in delivery.task_runs if r.state == "Work"]
                cold = [
                    a.ended - a.started
                    for a in attempts
                    if a.ended is not None and a.started is not None
                ]
                rows.append(
                    {
                        "model": model,
                        "p": seconds,
                        "retry_after": retry_after,
                        "ous": size,
                        "calls": calls,
                        "applied": applied,
                        "refused": refused,
                        "status": operation.stack_status,
                        "answers": len(delivery.accepted),
                        "invocations": len(delivery.results) + len(attempts),
                        "continuations": max(0, len(attempts) - 1),  # Work steps after the first
                        "seconds": answer_seconds,
                        "bound": calls * seconds,
                        "link_seconds": cold,
                        "ok": state_ok(services, A, size),
                    }
                )
        init = [s for w in pool.workers for s in w.init_seconds]
    cold_start = statistics.median(init) if init else 0.0
    for row in rows:
        row["goal"] = 1.1 * row["bound"] + row["continuations"] * cold_start
        row["met"] = row["seconds"] is not None and row["seconds"] <= row["goal"]
    return {
        "function_timeout": FUNCTION_TIMEOUT,
        "cold_start": cold_start,
        "rows": rows,
        "seconds": time.perf_counter() - started,
    }


def state_ok(services: Any, membership_id: str, size: int) -> bool:
    """Whether the membership holds exactly the declared OUs (and the foreign one)."""
    from sirlocal.scenarios import FOREIGN, ous  # noqa: PLC0415

    state = services.emulator.state(membership_id)
    held = set(state["membershipAccountsConfigurations"]["organizationalUnits"])
    return held == {*ous(1, size + 2), FOREIGN[0]}


def problems(section: dict[str, Any]) -> list[str]:
    """What broke: a change not answered SUCCESS once, a wrong call count or state."""
    out = []
    for r in section["rows"]:
        label = f"continuation +{r['ous']} OUs ({r['model']}, P = {r['p']:g} s)"
        if r["status"] != "UPDATE_COMPLETE" or r["answers"] != 1:
            out.append(f"{label}: {r['status']}, {r['answers']} answer(s)")
        if r["applied"] != r["calls"] or not r["ok"]:
            out.append(f"{label}: {r['applied']} calls applied of {r['calls']}, state ok {r['ok']}")
    return out
