"""Long changes on the engine: wall time against calls x P, billed compute, transitions, FAILED.

What each row is: a stack Update adding or removing N OUs while the service
refuses UpdateMembership for P s after each accepted OU change (the
propagation model: ``conflict``; ``conflict + stale reads`` also shows the old
OUs to reads for those P s), with or without ``Retry-After``. Rows come in
pairs, as users meet them since pacing (``pace``, ``pace_store``): the
membership's first change (+N OUs; no pace recorded, so the Work task learns
the window from its own calls) and its next one an hour later (the same N OUs
removed: as many calls; it starts from the recorded ``pace#<MembershipId>``,
``World.paces`` here). The bound is ``calls x P``: no client can do better.
The issue's goals: wall / bound <= 1.1 under every model; Lambda time billed
<= 5 % of wall for P >= 10 s; a change that cannot fit its ServiceTimeout
refused in under 5 s. Each doomed change is measured twice: on a membership
whose pace is recorded (+20 OUs and back an hour before; the first Work step
must refuse it before any write) and as the membership's first change (no
pace: nothing is refused, and it answers FAILED when a wait would end past
its deadline, having applied some calls), each then rolled back.

How the figures are obtained (say so wherever they are quoted): on the
simulated clock of ``tests/steps_world.py``, which plays the provider's state
machine around the real code of each part (the dispatcher's
``dispatch.dispatch``, the Work task's ``work_task.run_step`` with
``MembershipService`` and ``resource.handle``, the Answer task's
``answer_task.answer_request``) with the table's in-memory twins and the
stateful test's fake service under the propagation model. Its transitions
are the definition's (statemachine/membership.asl.json; ``definition_check``
compares the harness's retry intervals and timeouts with the file, and every
state an execution entered must be one of the file's). Its clock moves only by
what the model says things take: each security-ir call 0.1 s, each Work
invocation's start (``Starts``: a cold start, billed as Lambda bills init, for
an execution's first step and after a long wait, else a warm start; ``make
bench`` takes both from its own measurements), the dispatcher 0.1 s, a Wait
state its seconds, a sleep inside the Work task its seconds (billed: the
Lambda runs). The backoff's jitter is ``random.uniform`` from a fixed seed.
So the ratios say what the code decides (when to sleep inside a billed
invocation, when to end the step and let a Wait state wait, how many steps
and transitions it takes); they are not a measurement of AWS's own latencies.

Prices (``PRICES``: us-east-1 list prices, arm64 Lambda and Standard
workflows, not re-checked offline) turn GB-seconds and transitions into cost.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from common import REPO_ROOT, log

TESTS = REPO_ROOT / "tests"
DEFINITION = REPO_ROOT / "statemachine" / "membership.asl.json"
TEMPLATE = REPO_ROOT / "template.yaml"

#: (model, Retry-After): the steps_world models (``stale`` refuses as ``conflict`` does
#: and also shows reads the OUs as they were for P s).
MODELS: tuple[tuple[str, bool], ...] = (
    ("conflict", False),
    ("conflict", True),
    ("stale", False),
    ("stale", True),
)
LABELS = {"conflict": "conflict", "stale": "conflict + stale reads"}
PERIODS: tuple[float, ...] = (1.0, 10.0, 60.0)
SIZES: tuple[int, ...] = (20, 100, 1000)
#: The resource's ServiceTimeout of the rows (CloudFormation's largest).
SERVICE_TIMEOUT = 3600
#: A row is run only if its bound fits the ServiceTimeout with the goal's 10 %.
GOAL = 1.1
BILLED_GOAL = 0.05
BILLED_GOAL_FROM_P = 10.0
REFUSAL_GOAL = 5.0
#: Changes that cannot fit: (model, Retry-After, P, N OUs, ServiceTimeout).
DOOMED: tuple[tuple[str, bool, float, int, int], ...] = (
    ("conflict", True, 60.0, 1000, 3600),
    ("conflict", False, 10.0, 100, 120),
)
#: us-east-1 list prices used for the cost columns (USD).
PRICES = {
    "lambda_gb_second_arm64": 0.0000133334,
    "lambda_request": 0.20 / 1_000_000,
    "state_transition": 0.025 / 1000,
}
SEED = 18
#: The membership's next change comes this long after its first one answered (seconds):
#: the service has long applied the first, and the recorded pace is what carries over.
NEXT_AFTER = 3600.0
#: How a doomed change's membership got its recorded pace: +this many OUs and back.
LEARN_OUS = 20


@dataclass(frozen=True)
class Starts:
    """What a Work invocation's start costs on the simulated clock (and in billed time).

    The first Work invocation of an execution, and one after a wait longer
    than ``idle_limit``, is a cold start; the others find the sandbox warm.
    Lambda does not document how long an idle sandbox is kept; 5 minutes is
    the low end of what is commonly observed.
    """

    cold: float = 0.5
    warm: float = 0.5
    idle_limit: float = 300.0
    #: Where the two figures come from (the report quotes it).
    source: str = "assumed: 0.5 s every time"

    def __call__(self, idle: float) -> float:
        return self.cold if idle > self.idle_limit else self.warm


def _harness() -> Any:
    """tests/steps_world.py (and the helpers it imports from tests/)."""
    if str(TESTS) not in sys.path:
        sys.path.append(str(TESTS))
    import steps_world  # noqa: PLC0415 - the tests' simulated engine, by path

    return steps_world


def memory_gb() -> float:
    """The functions' MemorySize (template.yaml; all the same), in GB."""
    sizes = {int(m) for m in re.findall(r"^\s+MemorySize: (\d+)\s*$", TEMPLATE.read_text(), re.M)}
    if len(sizes) != 1:
        raise RuntimeError(f"expected one MemorySize in template.yaml, found {sorted(sizes)}")
    return sizes.pop() / 1024


def _intervals(retry: dict[str, Any]) -> tuple[float, ...]:
    first, rate = float(retry["IntervalSeconds"]), float(retry.get("BackoffRate", 2.0))
    return tuple(first * rate**i for i in range(int(retry["MaxAttempts"])))


def definition_check() -> list[str]:
    """Where the simulated engine's timings differ from statemachine/membership.asl.json."""
    sw = _harness()
    states = json.loads(DEFINITION.read_text())
    work, answer = states["States"]["Work"], states["States"]["Answer"]
    out = []
    if _intervals(work["Retry"][0]) != sw.WORK_RETRIES:
        out.append(f"Work's Retry {_intervals(work['Retry'][0])} != harness {sw.WORK_RETRIES}")
    if _intervals(answer["Retry"][0]) != sw.ANSWER_RETRIES:
        out.append(f"Answer's Retry {_intervals(answer['Retry'][0])} != {sw.ANSWER_RETRIES}")
    if float(states["TimeoutSeconds"]) != sw.EXECUTION_TIMEOUT:
        out.append(f"TimeoutSeconds {states['TimeoutSeconds']} != {sw.EXECUTION_TIMEOUT}")
    if float(work["TimeoutSeconds"]) < sw.WORK_TIMEOUT:
        out.append("Work's TimeoutSeconds is shorter than the Work function's timeout")
    return out


@dataclass
class Meter:
    """Billed task time, per task kind, from the harness's before/after hook."""

    clock: Any
    seconds: dict[str, float] = field(default_factory=dict)
    invocations: dict[str, int] = field(default_factory=dict)
    _began: tuple[str, float] | None = None

    def __call__(self, _execution: Any, state: str) -> None:
        if state:
            self._began = (state, self.clock.now)
            return
        if self._began is not None:
            kind = "Work" if self._began[0] == "Work" else "Answer"
            self.seconds[kind] = self.seconds.get(kind, 0.0) + self.clock.now - self._began[1]
            self.invocations[kind] = self.invocations.get(kind, 0) + 1
            self._began = None


def transitions(execution: Any) -> int:
    """State transitions billed: every state entered (retries included), Route after each Work."""
    return len(execution.history) + len(execution.results)


def _world(model: str, retry_after: bool, p: float, seed: int, starts: Starts) -> Any:
    sw = _harness()
    return sw.world(
        model,
        p,
        retry_after=retry_after,
        limit=200_000,
        jitter=random.Random(seed).uniform,
        start_cost=starts,
    )


def _run(w: Any, req: Any) -> tuple[Any, Meter, float]:
    """Deliver ``req``, run its execution to the end; (chain, meter, dispatcher seconds)."""
    meter = Meter(w.clock)
    w.on_task = meter
    before = w.clock.now
    chain = w.deliver(req)
    dispatcher = w.clock.now - before
    if chain.execution is not None:
        w.finish(chain.execution)
    return chain, meter, dispatcher


def _costs(meter: Meter, dispatcher: float, moves: int, gb: float) -> dict[str, float]:
    billed = sum(meter.seconds.values()) + dispatcher
    requests = sum(meter.invocations.values()) + 1
    lambda_cost = billed * gb * PRICES["lambda_gb_second_arm64"]
    lambda_cost += requests * PRICES["lambda_request"]
    return {
        "billed_seconds": billed,
        "gb_seconds": billed * gb,
        "lambda_invocations": requests,
        "lambda_usd": lambda_cost,
        "transitions_usd": moves * PRICES["state_transition"],
    }


def _window(w: Any) -> float | None:
    """The membership's recorded propagation window (None: no pace, or no window yet)."""
    sw = _harness()
    pace = w.paces.read_pace(sw.MEMBERSHIP_ID)
    return None if pace is None else pace.window


def _label(model: str, retry_after: bool) -> str:
    return LABELS[model] + (" + Retry-After" if retry_after else "")


def _row(
    w: Any,
    req: Any,
    *,
    change: str,
    size: int,
    p: float,
    expected: set[str],
) -> dict[str, Any]:
    """Run ``req`` (a change of ``size`` OUs) on ``w`` and measure it against calls x P."""
    accepted, refused = w.sir.accepted, w.sir.refused
    window = _window(w)
    chain, meter, dispatcher = _run(w, req)
    calls = math.ceil(size / 5)
    execution = chain.execution
    moves = transitions(execution) if execution is not None else 0
    wall = chain.answered_at[0] - chain.started if chain.answered_at else None
    row: dict[str, Any] = {
        "change": change,
        "pace_before": window,
        "pace_after": _window(w),
        "p": p,
        "ous": size,
        "calls": calls,
        "bound": calls * p,
        "answers": [a.status for a in chain.answers],
        "applied": w.sir.accepted - accepted,
        "refused": w.sir.refused - refused,
        "ok": w.sir.ous == expected,
        "wall": wall,
        "work_steps": meter.invocations.get("Work", 0),
        "waits": execution.history.count("Wait") if execution is not None else 0,
        "work_seconds": meter.seconds.get("Work", 0.0),
        "answer_seconds": meter.seconds.get("Answer", 0.0),
        "dispatcher_seconds": dispatcher,
        "transitions": moves,
        "states": sorted(set(execution.history)) if execution is not None else [],
        **_costs(meter, dispatcher, moves, memory_gb()),
    }
    row["wall_over_bound"] = wall / row["bound"] if wall is not None and row["bound"] else None
    row["billed_over_wall"] = row["billed_seconds"] / wall if wall else None
    row["cost_usd"] = row["lambda_usd"] + row["transitions_usd"]
    return row


def changes(
    model: str, retry_after: bool, p: float, size: int, starts: Starts = Starts(), seed: int = SEED
) -> list[dict[str, Any]]:
    """Two rows: the membership's first change (+``size`` OUs, no pace recorded), then its next.

    The next change comes ``NEXT_AFTER`` seconds later and removes the same
    OUs again (as many calls), starting from the pace the first one recorded.
    ServiceTimeout 3600 s for both.
    """
    sw = _harness()
    started = time.perf_counter()
    w = _world(model, retry_after, p, seed, starts)
    old = sw.created(w, SERVICE_TIMEOUT)
    new = sw.declared([*sw.BASE, *sw.MORE[:size]], SERVICE_TIMEOUT)
    added = {*sw.BASE, *sw.MORE[:size]}
    first = _row(w, sw.request("Update", new, old), change="first", size=size, p=p, expected=added)
    w.clock.sleep(NEXT_AFTER)
    after = _row(
        w, sw.request("Update", old, new), change="next", size=size, p=p, expected=set(sw.BASE)
    )
    elapsed = time.perf_counter() - started
    shared = {"model": model, "label": _label(model, retry_after), "retry_after": retry_after}
    return [shared | r | {"simulation_seconds": elapsed / 2} for r in (first, after)]


def doomed(
    model: str,
    retry_after: bool,
    p: float,
    size: int,
    timeout: int,
    starts: Starts = Starts(),
    seed: int = SEED,
    *,
    paced: bool = True,
) -> dict[str, Any]:
    """A change that cannot fit its ServiceTimeout: time to its answer, then the rollback.

    ``paced``: the membership's pace is recorded (a change of ``LEARN_OUS``
    OUs and back, ``NEXT_AFTER`` s before), so the first Work step refuses
    the change before any write. Otherwise it is the membership's first
    change: nothing is refused, and it runs until a wait would end past its
    deadline.
    """
    sw = _harness()
    w = _world(model, retry_after, p, seed, starts)
    old = sw.created(w, timeout)
    if paced:
        learning = sw.declared([*sw.BASE, *sw.MORE[:LEARN_OUS]], SERVICE_TIMEOUT)
        for step in (sw.request("Update", learning, old), sw.request("Update", old, learning)):
            learned = w.run(step)
            if [a.status for a in learned.answers] != ["SUCCESS"]:
                raise RuntimeError(f"learning the pace: answered {learned.answers}")
        w.clock.sleep(NEXT_AFTER)
    window = _window(w)
    accepted, sent = w.sir.accepted, w.sir.sent
    entries = dict(w.store.entries)
    new = sw.declared([*sw.BASE, *sw.MORE[:size]], timeout)
    chain, meter, _ = _run(w, sw.request("Update", new, old))
    applied = w.sir.accepted - accepted
    failed = chain.answered_at[0] - chain.started if chain.answered_at else None
    reason = chain.answers[0].reason if chain.answers else ""
    sent_before = w.sir.sent - sent
    journal_written = dict(w.store.entries) != entries
    accepted = w.sir.accepted
    back, _, _ = _run(w, sw.request("Update", old, new))
    rolled = back.answered_at[0] - back.started if back.answered_at else None
    return {
        "model": model,
        "label": _label(model, retry_after),
        "paced": paced,
        "pace_before": window,
        "p": p,
        "ous": size,
        "calls": math.ceil(size / 5),
        "service_timeout": timeout,
        "estimate": math.ceil(size / 5) * p,
        "answers": [a.status for a in chain.answers],
        "seconds_to_failed": failed,
        "applied_before_failed": applied,
        "updates_sent_before_failed": sent_before,
        "journal_written_before_failed": journal_written,
        "writes_before_answer": applied > 0 or sent_before > 0 or journal_written,
        "work_steps": meter.invocations.get("Work", 0),
        "reason": reason,
        "rollback_answers": [a.status for a in back.answers],
        "rollback_seconds": rolled,
        "rollback_applied": w.sir.accepted - accepted,
        "rollback_reason": back.answers[0].reason if back.answers else "",
        "rolled_back": w.sir.ous == set(sw.BASE),
    }


def measure(
    models: Sequence[tuple[str, bool]] = MODELS,
    periods: Sequence[float] = PERIODS,
    sizes: Sequence[int] = SIZES,
    doomed_cases: Sequence[tuple[str, bool, float, int, int]] = DOOMED,
    starts: Starts = Starts(),
) -> dict[str, Any]:
    """Every pair of rows whose bound fits the ServiceTimeout, and each doomed change twice."""
    started = time.perf_counter()
    # The task code's warnings (a refused call, an undo) go nowhere here rather than to
    # the bench's progress lines: the rows say what happened.
    logging.getLogger("sir_membership").addHandler(logging.NullHandler())
    rows, skipped = [], []
    for model, retry_after in models:
        for p in periods:
            for size in sizes:
                if GOAL * math.ceil(size / 5) * p > SERVICE_TIMEOUT:
                    skipped.append(
                        {
                            "model": model,
                            "label": _label(model, retry_after),
                            "retry_after": retry_after,
                            "p": p,
                            "ous": size,
                        }
                    )
                    continue
                log(f"engine: +{size} OUs, {model}, P = {p:g} s, Retry-After {retry_after}")
                rows += changes(model, retry_after, p, size, starts)
    failing = [
        doomed(*case, starts=starts, paced=paced)
        for case in doomed_cases
        for paced in (True, False)
    ]
    return {
        "how": "simulated clock (tests/steps_world.py) around the real task code",
        "definition_problems": definition_check(),
        "memory_gb": memory_gb(),
        "starts": {
            "cold": starts.cold,
            "warm": starts.warm,
            "idle_limit": starts.idle_limit,
            "source": starts.source,
        },
        "prices": PRICES,
        "service_timeout": SERVICE_TIMEOUT,
        "next_after": NEXT_AFTER,
        "learn_ous": LEARN_OUS,
        "rows": rows,
        "skipped": skipped,
        "doomed": failing,
        "seconds": time.perf_counter() - started,
    }


def problems(section: dict[str, Any]) -> list[str]:
    """What broke (not goals missed): a wrong answer, call count or state, a definition mismatch.

    A doomed change on a membership with a recorded pace must be refused
    before any write (the code promises it: ``resource`` refuses it in the
    first Work step); one taking more than 5 s is a goal missed, which the
    report says. A rollback that answers FAILED in time is a goal missed
    too, not a broken run.
    """
    out = [f"engine definition: {p}" for p in section["definition_problems"]]
    for r in section["rows"]:
        label = f"engine {r['change']} change, {r['ous']} OUs ({r['label']}, P = {r['p']:g} s)"
        if r["answers"] != ["SUCCESS"]:
            out.append(f"{label}: answers {r['answers']}")
        if r["applied"] != r["calls"] or not r["ok"]:
            out.append(f"{label}: {r['applied']} calls applied of {r['calls']}, state ok {r['ok']}")
    for d in section["doomed"]:
        pace = "pace recorded" if d["paced"] else "no pace"
        label = f"engine doomed +{d['ous']} OUs ({d['label']}, P = {d['p']:g} s, {pace})"
        if d["answers"] != ["FAILED"] or d["seconds_to_failed"] is None:
            out.append(f"{label}: answers {d['answers']}")
        elif d["seconds_to_failed"] > d["service_timeout"]:
            out.append(f"{label}: FAILED after {d['seconds_to_failed']:.0f} s, past ServiceTimeout")
        if d["paced"] and (d["pace_before"] is None or d["writes_before_answer"]):
            out.append(
                f"{label}: not refused before its first write (window {d['pace_before']}, "
                f"{d['updates_sent_before_failed']} UpdateMembership calls sent, journal written "
                f"{d['journal_written_before_failed']})"
            )
        if len(d["rollback_answers"]) != 1:
            out.append(f"{label}: the rollback got {len(d['rollback_answers'])} answers")
    return out
