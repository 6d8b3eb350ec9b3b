"""How cost grows with the number of declared OUs.

* The planner: ``plan_changes`` on an Update where half of the declared OUs
  are new and a tenth of the old ones are removed; time (median of repeats)
  and peak traced memory (tracemalloc, in a separate run so tracing does not
  slow the timed one). Property parsing (every OU id checked against the
  model's pattern) is timed alongside, since every request pays it too.
* One invocation's peak RSS: a fresh handler process imports the handler,
  reads ``getrusage`` (after import), handles one event against the local
  services, and reads it again (the peak over the invocation).
"""

from __future__ import annotations

import gc
import itertools
import time
import tracemalloc
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from calls import MEMBERSHIP_ID, Case, Spec, Worker, ou, worker_env
from common import log, summary

from sir_membership.membership import state_from_api
from sir_membership.plan import plan_changes
from sir_membership.properties import parse_properties

SIZES = (10, 100, 1_000, 10_000, 100_000)


def declarations(n: int) -> tuple[Spec, Spec]:
    """Old and new declarations: ``n`` OUs declared, half of them new, ``n/10`` removed."""
    kept = tuple(ou(i) for i in range(n - n // 2))
    added = tuple(ou(1_000_000 + i) for i in range(n // 2))
    removed = tuple(ou(2_000_000 + i) for i in range(n // 10))
    return Spec(ous=kept + removed), Spec(ous=kept + added)


def _timed(function: Callable[[], Any], min_total: float = 0.3, max_runs: int = 50) -> list[float]:
    """Run ``function`` at least 3 times and until ``min_total`` seconds have passed."""
    runs: list[float] = []
    while len(runs) < 3 or (sum(runs) < min_total and len(runs) < max_runs):
        gc.collect()
        started = time.perf_counter()
        function()
        runs.append(time.perf_counter() - started)
    return runs


def _peak_bytes(function: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = function()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del result
    return peak - base


def planner(sizes: Sequence[int] = SIZES) -> list[dict[str, Any]]:
    """Planner time and peak memory per declared-set size."""
    rows = []
    for n in sizes:
        old, new = declarations(n)
        raw_new, raw_old = new.properties(), old.properties()
        desired = parse_properties(raw_new)
        previous = parse_properties(raw_old).organizational_units
        actual = state_from_api(old.membership())

        def plan(desired: Any = desired, actual: Any = actual, previous: Any = previous) -> Any:
            return plan_changes(desired, actual, previous)

        result = plan()
        expected_calls = max(-(-(n // 2) // 5), -(-(n // 10) // 5))
        if len(result.requests) != expected_calls:
            raise RuntimeError(
                f"n={n}: {len(result.requests)} calls planned, expected {expected_calls}"
            )
        plan_runs = _timed(plan)
        parse_runs = _timed(lambda raw=raw_new: parse_properties(raw))
        row = {
            "declared": n,
            "adds": n // 2,
            "removes": n // 10,
            "planned_calls": len(result.requests),
            "plan_seconds": summary(plan_runs)["median"],
            "plan_runs": len(plan_runs),
            "plan_peak_bytes": _peak_bytes(plan),
            "parse_seconds": summary(parse_runs)["median"],
            "parse_peak_bytes": _peak_bytes(lambda raw=raw_new: parse_properties(raw)),
        }
        rows.append(row)
        log(
            f"planner n={n}: plan {row['plan_seconds'] * 1000:.2f} ms, "
            f"peak {row['plan_peak_bytes'] / 1024:.0f} KiB; parse {row['parse_seconds'] * 1000:.2f} ms"
        )
    for previous_row, row in itertools.pairwise(rows):
        row["plan_growth"] = row["plan_seconds"] / previous_row["plan_seconds"]
        row["plan_peak_growth"] = row["plan_peak_bytes"] / max(1, previous_row["plan_peak_bytes"])
        row["size_growth"] = row["declared"] / previous_row["declared"]
    return rows


def one_more(n: int) -> tuple[Spec, Spec]:
    """Old and new declarations: ``n`` OUs declared, one of them new (one call)."""
    kept = tuple(ou(i) for i in range(n - 1))
    return Spec(ous=kept), Spec(ous=(*kept, ou(3_000_000)))


#: (declared OUs, how they change) per RSS row: "one" adds one OU (one call),
#: "half" is ``declarations`` (half new, a tenth removed: n/10 calls).
RSS_CASES = ((3, "one"), (1_000, "half"), (10_000, "half"), (100_000, "one"))


def invocation_rss(
    services: Any, cases: Sequence[tuple[int, str]] = RSS_CASES
) -> list[dict[str, Any]]:
    """Peak RSS of a fresh handler process around one Update event, per declared-set size.

    Peak = VmHWM of the handler process (see ``worker.memory`` for why not
    ru_maxrss alone); both are kept in the results.
    """
    out = []
    with Worker(worker_env(services), log_name="rss-bare") as worker:
        worker.call("import", handler="bare")
        bare = worker.call("rusage")
    out.append({"handler": "bare", "declared": None, "after_import": bare})
    for n, change in cases:
        old, new = declarations(n) if change == "half" else one_more(n)
        case = Case(f"rss {n}", old, new)
        services.emulator.seed(old.membership())
        services.emulator.reset_calls()
        url = services.receiver.url_for(f"rss-{uuid.uuid4().hex[:12]}")
        with Worker(worker_env(services), log_name=f"rss-{n}") as worker:
            worker.call("import", handler="ours")
            imported = worker.call("rusage")
            seconds = worker.call("invoke", handler="ours", event=case.event(url))["seconds"]
            after = worker.call("rusage")
        body = services.receiver.wait_for(url, timeout=10).body or {}
        # A FAILED answer is kept (the run's problems name it), not raised: the
        # other rows and sections still say what they measured.
        state = services.emulator.state(MEMBERSHIP_ID)
        ous = state["membershipAccountsConfigurations"]["organizationalUnits"]
        # A request too large for its request record is refused before any write
        # (request_store.EVENT_LIMIT_BYTES): then the membership must be as it was.
        too_large = body.get("Status") == "FAILED" and "the provider's table can record" in str(
            body.get("Reason", "")
        )
        row = {
            "handler": "ours",
            "declared": len(new.ous),
            "adds": case.adds,
            "removes": case.removes,
            "calls": len(services.emulator.calls()),
            "seconds": seconds,
            "after_import": imported,
            "after_invocation": after,
            "peak_delta_kb": after["vmhwm_kb"] - imported["vmhwm_kb"],
            "refused_too_large": too_large,
            "state_ok": set(ous) == set(old.ous if too_large else new.ous),
            "status": str(body.get("Status")),
            "reason": str(body.get("Reason", ""))[:300],
        }
        out.append(row)
        log(
            f"rss ours n={len(new.ous)}: after import {imported['vmhwm_kb']} KiB, "
            f"peak after one event {after['vmhwm_kb']} KiB ({len(services.emulator.calls())} calls)"
        )
    return out
