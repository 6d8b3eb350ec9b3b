"""API calls and wall time per operation: ours vs the lower bound vs the naive handler.

Every count comes from the emulator's call records (real HTTP through boto3
in a separate handler process, ``worker.py``), never from the planner. Each
case seeds the membership as the old declaration left it, sends the same
CloudFormation event to each handler, checks the answer the receiver got
and the membership's final state, and counts GetMembership and
UpdateMembership calls.

The lower bound on UpdateMembership calls is ``max(ceil(adds/5),
ceil(removes/5))`` when OUs change, 1 when only other fields change, 0 when
nothing does; it is computed from each case's own declarations (``Case.bound``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from common import BENCH_DIR, LOCAL_DIR, SRC_DIR, WORK_DIR, log, summary

MEMBERSHIP_ID = "m-benchmark01"
STACK_ID = (
    "arn:aws:cloudformation:us-east-1:123456789012:stack/bench/00000000-0000-0000-0000-000000000000"
)
SERVICE_TOKEN = "arn:aws:lambda:us-east-1:123456789012:function:sir-membership-bench"
BATCH = 5
TEAM = (
    ("Primary Responder", "Security Lead", "lead@example.com"),
    ("Backup Responder", "Engineer", "backup@example.com"),
)
HANDLERS = ("ours", "naive")


def ou(i: int) -> str:
    """A valid, distinct OU id."""
    return f"ou-bnch-{i:08d}"


# --------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Spec:
    """One declaration of the resource (and, seeded, the membership it left behind)."""

    name: str = "bench-membership"
    team: tuple[tuple[str, str, str], ...] = TEAM
    triage: bool = True
    ous: tuple[str, ...] = ()
    on_delete: str = "Retain"

    def properties(self) -> dict[str, Any]:
        """ResourceProperties as CloudFormation delivers them (booleans as strings)."""
        return {
            "ServiceToken": SERVICE_TOKEN,
            "ServiceTimeout": "600",
            "MembershipId": MEMBERSHIP_ID,
            "MembershipName": self.name,
            "IncidentResponseTeam": [
                {"Name": n, "JobTitle": t, "Email": e} for n, t, e in self.team
            ],
            "OptInFeatures": [{"FeatureName": "Triage", "IsEnabled": str(self.triage).lower()}],
            "CoverEntireOrganization": "false",
            "OrganizationalUnits": list(self.ous),
            "OnDelete": self.on_delete,
        }

    def membership(self) -> dict[str, Any]:
        """The membership as GetMembership would show it after this declaration."""
        return {
            "membershipId": MEMBERSHIP_ID,
            "membershipName": self.name,
            "incidentResponseTeam": [
                {"name": n, "jobTitle": t, "email": e} for n, t, e in self.team
            ],
            "optInFeatures": [{"featureName": "Triage", "isEnabled": self.triage}],
            "membershipAccountsConfigurations": {
                "coverEntireOrganization": False,
                "organizationalUnits": list(self.ous),
            },
        }


KEPT = tuple(ou(i) for i in range(3))  # OUs declared before and after every change


def ou_change(adds: int, removes: int) -> tuple[Spec, Spec]:
    """Old and new declarations that differ by ``adds`` new and ``removes`` dropped OUs."""
    removed = tuple(ou(100_000 + i) for i in range(removes))
    added = tuple(ou(200_000 + i) for i in range(adds))
    return Spec(ous=KEPT + removed), Spec(ous=KEPT + added)


@dataclass(frozen=True)
class Case:
    """One row of the grid.

    ``old`` is the membership as the previous declaration left it (what the
    emulator is seeded with); ``new`` is the declaration sent. A Delete has no
    ``new``; a Create (``create=True``) adopts a membership seeded as ``old``
    and, like the planner, never removes OUs, so its cases keep ``old``'s OUs
    a subset of ``new``'s.
    """

    label: str
    old: Spec
    new: Spec | None = None  # None: a Delete of ``old``
    group: str = "ou"
    create: bool = False

    def __post_init__(self) -> None:
        if self.create and (self.new is None or not set(self.old.ous) <= set(self.new.ous)):
            raise ValueError(f"{self.label}: a Create case declares every OU the membership has")

    @property
    def request_type(self) -> str:
        if self.new is None:
            return "Delete"
        return "Create" if self.create else "Update"

    @property
    def adds(self) -> int:
        return 0 if self.new is None else len(set(self.new.ous) - set(self.old.ous))

    @property
    def removes(self) -> int:
        if self.new is None:
            return len(self.old.ous) if self.old.on_delete == "RemoveOrganizationalUnits" else 0
        return len(set(self.old.ous) - set(self.new.ous))

    @property
    def fields_change(self) -> bool:
        if self.new is None:
            return False
        return (self.old.name, self.old.team, self.old.triage) != (
            self.new.name,
            self.new.team,
            self.new.triage,
        )

    @property
    def bound(self) -> int:
        """The fewest UpdateMembership calls that can make this change."""
        if self.adds or self.removes:
            return max(math.ceil(self.adds / BATCH), math.ceil(self.removes / BATCH))
        return 1 if self.fields_change else 0

    @property
    def final_ous(self) -> set[str]:
        if self.new is not None:
            return set(self.new.ous)
        return set() if self.old.on_delete == "RemoveOrganizationalUnits" else set(self.old.ous)

    def expected(self) -> dict[str, Any]:
        """What GetMembership should show afterwards (OUs compared as a set)."""
        spec = self.new or self.old
        out = spec.membership()
        out["membershipAccountsConfigurations"]["organizationalUnits"] = sorted(self.final_ous)
        return out

    def event(self, response_url: str) -> dict[str, Any]:
        """The CloudFormation event for this case (a fresh RequestId every time)."""
        event: dict[str, Any] = {
            "RequestType": self.request_type,
            "ServiceToken": SERVICE_TOKEN,
            "ResponseURL": response_url,
            "StackId": STACK_ID,
            "RequestId": str(uuid.uuid4()),
            # Each case is a stack story of its own: a fresh resource, so no
            # journal entry of an earlier case applies to it.
            "LogicalResourceId": f"Membership{uuid.uuid4().hex[:12]}",
            "ResourceType": "Custom::SecurityIRMembership",
        }
        if not self.create:
            event["PhysicalResourceId"] = MEMBERSHIP_ID
        if self.new is None:
            event["ResourceProperties"] = self.old.properties()
        else:
            event["ResourceProperties"] = self.new.properties()
            if not self.create:
                event["OldResourceProperties"] = self.old.properties()
        return event


def state_matches(state: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Whether a membership's name, team, features and OUs are the expected ones."""

    def team(m: dict[str, Any]) -> list[tuple[str, str, str]]:
        return [(r["name"], r["jobTitle"], r["email"]) for r in m.get("incidentResponseTeam", [])]

    def features(m: dict[str, Any]) -> dict[str, bool]:
        return {f["featureName"]: f["isEnabled"] for f in m.get("optInFeatures", [])}

    def ous(m: dict[str, Any]) -> set[str]:
        return set(m["membershipAccountsConfigurations"]["organizationalUnits"])

    return (
        state["membershipName"] == expected["membershipName"]
        and team(state) == team(expected)
        and features(state) == features(expected)
        and ous(state) == ous(expected)
    )


def _fields(name: bool = False, team: bool = False, triage: bool = False) -> tuple[Spec, Spec]:
    old = Spec(ous=KEPT)
    new = replace(
        old,
        name="bench-membership-renamed" if name else old.name,
        team=(TEAM[0], ("Backup Responder", "Incident Commander", TEAM[1][2]))
        if team
        else old.team,
        triage=not old.triage if triage else old.triage,
    )
    return old, new


def full_grid() -> list[Case]:
    """The grid the report shows."""
    cases = [Case("no change", *ou_change(0, 0))]
    for adds, removes in [
        (1, 0),
        (0, 1),
        (5, 0),
        (0, 5),
        (6, 0),
        (0, 6),
        (12, 7),
        (100, 0),
        (0, 100),
        (100, 100),
        (1000, 0),
        (0, 1000),
        (1000, 1000),
    ]:
        cases.append(Case(f"OUs +{adds} -{removes}", *ou_change(adds, removes)))
    cases += [
        Case("name only", *_fields(name=True), group="fields"),
        Case("team only", *_fields(team=True), group="fields"),
        Case("feature only", *_fields(triage=True), group="fields"),
        Case("name + team + feature", *_fields(True, True, True), group="fields"),
    ]
    old, new = _fields(True, True, True)
    old12, new12 = ou_change(12, 7)
    cases.append(
        Case(
            "name + team + feature, OUs +12 -7",
            replace(old, ous=old12.ous),
            replace(new, ous=new12.ous),
            group="fields",
        )
    )
    cases += [
        Case(
            "Create, membership already as declared",
            Spec(),
            Spec(),
            group="create",
            create=True,
        ),
        Case(
            "Create, new name + 12 OUs",
            Spec(),
            Spec(name="bench-membership-created", ous=tuple(ou(300_000 + i) for i in range(12))),
            group="create",
            create=True,
        ),
    ]
    twelve = tuple(ou(i) for i in range(12))
    cases += [
        Case("Delete, OnDelete Retain (12 OUs)", Spec(ous=twelve), group="delete"),
        Case(
            "Delete, RemoveOrganizationalUnits (12 OUs)",
            Spec(ous=twelve, on_delete="RemoveOrganizationalUnits"),
            group="delete",
        ),
    ]
    return cases


def smoke_grid() -> list[Case]:
    """A few rows for the test suite: cheap, and enough to show excess for the naive handler."""
    return [
        Case("no change", *ou_change(0, 0)),
        Case("OUs +6 -0", *ou_change(6, 0)),
        Case("OUs +12 -7", *ou_change(12, 7)),
        Case("name only", *_fields(name=True), group="fields"),
        Case("Create, as declared", Spec(), Spec(), group="create", create=True),
        Case("Delete, OnDelete Retain", Spec(ous=KEPT), group="delete"),
    ]


# --------------------------------------------------------------------------- the handler process


@contextlib.contextmanager
def tcp_nodelay() -> Iterator[None]:
    """Send the local servers' answers at once (TCP_NODELAY) for as long as the bench runs.

    ``http.server`` leaves Nagle's algorithm on, and the emulator writes an
    answer's headers and body separately, so on a kept-alive connection
    every call waits for the client's delayed ACK (about 40 ms on Linux).
    That is a property of the stand-in, not of the service or the handler;
    ``nagle_probe`` measures it so the report can say how large it is.
    """
    from sirlocal import JSONRequestHandler  # noqa: PLC0415

    saved = JSONRequestHandler.disable_nagle_algorithm
    JSONRequestHandler.disable_nagle_algorithm = True
    try:
        yield
    finally:
        JSONRequestHandler.disable_nagle_algorithm = saved


class Worker:
    """``worker.py`` in a child process with the local services' environment."""

    def __init__(
        self,
        env: dict[str, str],
        log_name: str = "worker",
        package: Path | None = None,
        python: Sequence[str] = (),
    ) -> None:
        """``package``: a built function to run instead of src/, on ``python`` (e.g.
        ``python3.13 -S -B``: the package and the standard library only)."""
        WORK_DIR.mkdir(exist_ok=True)
        env = dict(env)
        code = SRC_DIR if package is None else package
        env["PYTHONPATH"] = ":".join(str(p) for p in (code, LOCAL_DIR, BENCH_DIR))
        self.log_path = WORK_DIR / f"{log_name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [*(python or [sys.executable]), str(BENCH_DIR / "worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            text=True,
            bufsize=1,
        )
        ready = self._read()
        if not ready.get("ready"):
            raise RuntimeError(f"worker did not start: {ready}")
        self.pid = int(ready["pid"])

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited; see {self.log_path}:\n{self.log_tail()}")
        return dict(json.loads(line))

    def log_tail(self, limit: int = 3000) -> str:
        return Path(self.log_path).read_bytes()[-limit:].decode("utf-8", "replace")

    def call(self, op: str, **kwargs: Any) -> Any:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self._process.stdin.flush()
        answer = self._read()
        if not answer.get("ok"):
            raise RuntimeError(f"worker {op} failed: {answer.get('error')}\n{self.log_tail()}")
        return answer["result"]

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            try:
                self._process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self._process.stdin.flush()
                self._process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def worker_env(services: Any) -> dict[str, str]:
    """The handler process's environment: the local services' plus Powertools' settings."""
    env = services.child_env()
    env.setdefault("POWERTOOLS_SERVICE_NAME", "sir-membership")
    env.setdefault("POWERTOOLS_LOG_LEVEL", "INFO")
    return env


# --------------------------------------------------------------------------- running cases


@dataclass
class Outcome:
    """What one handler did for one case, over its repetitions."""

    gets: int = 0
    updates: int = 0
    other: int = 0
    errors: int = 0
    seconds: list[float] = field(default_factory=list)
    security_ir_seconds: list[float] = field(default_factory=list)
    status: str = ""
    reason: str = ""
    state_ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        out = {
            k: v for k, v in self.__dict__.items() if k not in ("seconds", "security_ir_seconds")
        }
        out["seconds"] = [round(s, 6) for s in self.seconds]
        if self.seconds:
            out["wall"] = summary(self.seconds)
        return out


def _run_once(services: Any, worker: Worker, handler: str, case: Case, tag: str) -> dict[str, Any]:
    emulator, receiver = services.emulator, services.receiver
    emulator.seed(case.old.membership())
    emulator.reset_calls()
    url = receiver.url_for(f"{tag}-{uuid.uuid4().hex[:12]}")
    event = case.event(url)
    result = worker.call("invoke", handler=handler, event=event)
    calls = emulator.calls()
    counts = Counter(c.operation for c in calls)
    put = receiver.wait_for(url, timeout=10)
    body = put.body or {}
    state = emulator.state(MEMBERSHIP_ID)
    return {
        "gets": counts.pop("GetMembership", 0),
        "updates": counts.pop("UpdateMembership", 0),
        "other": sum(counts.values()),
        "errors": sum(1 for c in calls if c.error is not None or c.status is None),
        "seconds": float(result["seconds"]),
        "security_ir_seconds": float(result.get("security_ir_seconds", 0.0)),
        "status": str(body.get("Status")),
        "reason": str(body.get("Reason", ""))[:200],
        "state_ok": state_matches(state, case.expected()),
    }


def _record(outcome: Outcome, run: dict[str, Any], case: Case, handler: str) -> None:
    counts = (run["gets"], run["updates"], run["other"], run["errors"])
    if outcome.seconds and counts != (outcome.gets, outcome.updates, outcome.other, outcome.errors):
        raise RuntimeError(f"{handler} made different calls on a repeat of {case.label!r}")
    outcome.gets, outcome.updates, outcome.other, outcome.errors = counts
    outcome.seconds.append(run["seconds"])
    outcome.security_ir_seconds.append(run["security_ir_seconds"])
    outcome.status = run["status"] if outcome.status in ("", "SUCCESS") else outcome.status
    outcome.reason = outcome.reason or run["reason"]
    outcome.state_ok = outcome.state_ok and run["state_ok"]


def warm_up(services: Any, worker: Worker, handlers: Sequence[str] = HANDLERS) -> None:
    """Import each handler and run one throw-away invocation (first connections, caches)."""
    case = Case("warm-up", *ou_change(0, 0))
    for handler in handlers:
        worker.call("import", handler=handler)
        _run_once(services, worker, handler, case, f"warmup-{handler}")


def run_grid(
    services: Any,
    worker: Worker,
    cases: Sequence[Case],
    *,
    latency: float = 0.0,
    repeats: int = 1,
    big_repeats: int = 1,
    big_bound: int = 25,
) -> list[dict[str, Any]]:
    """Every case through every handler, interleaved; one row per case.

    Cases whose bound exceeds ``big_bound`` calls run ``big_repeats`` times,
    the others ``repeats`` times. Handlers alternate which goes first.
    """
    services.emulator.set_latency(latency)
    rows = []
    order = itertools.cycle([HANDLERS, tuple(reversed(HANDLERS))])
    try:
        for index, case in enumerate(cases):
            outcomes = {h: Outcome() for h in HANDLERS}
            reps = repeats if case.bound <= big_bound else big_repeats
            for rep in range(reps):
                for handler in next(order):
                    run = _run_once(services, worker, handler, case, f"{handler}-{index}-{rep}")
                    _record(outcomes[handler], run, case, handler)
            rows.append(_row(case, outcomes, latency))
            log(_progress(rows[-1]))
    finally:
        services.emulator.set_latency(0.0)
    return rows


def _row(case: Case, outcomes: dict[str, Outcome], latency: float) -> dict[str, Any]:
    ours, naive = outcomes["ours"], outcomes["naive"]
    row: dict[str, Any] = {
        "case": case.label,
        "group": case.group,
        "request_type": case.request_type,
        "adds": case.adds,
        "removes": case.removes,
        "fields_change": case.fields_change,
        "bound": case.bound,
        "latency": latency,
        "ours": ours.to_dict(),
        "naive": naive.to_dict(),
        "ours_excess": ours.updates - case.bound,
        "naive_excess": naive.updates - case.bound,
    }
    if ours.seconds and naive.seconds:
        ours_wall = row["ours"]["wall"]["median"]
        naive_wall = row["naive"]["wall"]["median"]
        row["wall"] = {
            "ours": ours_wall,
            "naive": naive_wall,
            "bound": case.bound * latency,
            "ours_calls_floor": (ours.gets + ours.updates) * latency,
            "ours_over_naive": ours_wall / naive_wall if naive_wall else None,
            "ours_over_bound": ours_wall / (case.bound * latency)
            if case.bound and latency
            else None,
            "ours_minus_bound": ours_wall - case.bound * latency,
            "ours_minus_floor": ours_wall - (ours.gets + ours.updates) * latency,
        }
    return row


def _progress(row: dict[str, Any]) -> str:
    text = (
        f"{row['case']}: bound {row['bound']}, ours {row['ours']['updates']} "
        f"(+{row['ours']['gets']} get), naive {row['naive']['updates']}"
    )
    if "wall" in row:
        text += f"; wall ours {row['wall']['ours'] * 1000:.0f} ms, naive {row['wall']['naive'] * 1000:.0f} ms"
    return text


def problems(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Anything that makes the figures untrustworthy (a failed answer, a wrong final state)."""
    out = []
    for row in rows:
        for handler in HANDLERS:
            outcome = row[handler]
            if outcome["status"] != "SUCCESS":
                out.append(
                    f"{row['case']}: {handler} answered {outcome['status']} ({outcome['reason']})"
                )
            if not outcome["state_ok"]:
                out.append(f"{row['case']}: {handler} left the membership in the wrong state")
            if outcome["errors"]:
                out.append(f"{row['case']}: {handler} had {outcome['errors']} failed calls")
    return out


# --------------------------------------------------------------------------- warm overhead


def _rename_events(url_for: Any, n: int) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs of (our Update event, the bare handler's event), each renaming the membership."""
    first, second = "bench-membership", "bench-membership-b"
    case = Case("rename", Spec(name=first, ous=KEPT), Spec(name=second, ous=KEPT))
    for _ in range(n):
        # Ours renames first -> second; the bare handler renames it back.
        yield (
            case.event(url_for(f"warm-{uuid.uuid4().hex[:12]}")),
            {
                "membershipId": MEMBERSHIP_ID,
                "membershipName": first,
            },
        )


def warm_overhead(services: Any, worker: Worker, n: int = 60, warmup: int = 5) -> dict[str, Any]:
    """Per-event handler time at latency 0: ours (idempotency on moto) vs the bare handler."""
    emulator, receiver = services.emulator, services.receiver
    emulator.set_latency(0.0)
    emulator.seed(Spec(name="bench-membership", ous=KEPT).membership())
    worker.call("import", handler="ours")
    worker.call("import", handler="bare")
    ours_runs: list[dict[str, Any]] = []
    bare_runs: list[dict[str, Any]] = []
    urls: list[str] = []

    def url_for(name: str) -> str:
        url = receiver.url_for(name)
        urls.append(url)
        return url

    for i, (ours_event, bare_event) in enumerate(_rename_events(url_for, warmup + n)):
        emulator.reset_calls()
        ours = worker.call("invoke", handler="ours", event=ours_event)
        ours_calls = Counter(c.operation for c in emulator.calls())
        bare = worker.call("invoke", handler="bare", event=bare_event)
        if i >= warmup:
            if ours_calls != Counter({"GetMembership": 1, "UpdateMembership": 1}):
                raise RuntimeError(f"warm event made {dict(ours_calls)}, expected 1 get + 1 update")
            ours_runs.append(ours)
            bare_runs.append(bare)
    failed = [
        u for u in urls if (receiver.wait_for(u, timeout=10).body or {}).get("Status") != "SUCCESS"
    ]
    put_url = receiver.url_for(f"put-only-{uuid.uuid4().hex[:12]}")
    puts = worker.call("put", url=put_url, n=n)

    def med(runs: list[dict[str, Any]], key: str) -> float:
        return float(summary([r[key] for r in runs])["median"])

    ours_s = summary([r["seconds"] for r in ours_runs])
    bare_s = summary([r["seconds"] for r in bare_runs])
    breakdown = {
        "security_ir_calls_per_event": med(ours_runs, "security_ir_calls"),
        "security_ir_calls": med(ours_runs, "security_ir_seconds"),
        "dynamodb_calls": med(ours_runs, "dynamodb_seconds"),
        "dynamodb_calls_per_event": med(ours_runs, "dynamodb_calls"),
        "journal_calls": med(ours_runs, "journal_seconds"),
        "journal_calls_per_event": med(ours_runs, "journal_calls"),
        "lease_calls": med(ours_runs, "lease_seconds"),
        "lease_calls_per_event": med(ours_runs, "lease_calls"),
        "answer_put": float(summary(puts)["median"]),
    }
    breakdown["rest"] = (
        ours_s["median"]
        - breakdown["security_ir_calls"]
        - breakdown["dynamodb_calls"]
        - breakdown["answer_put"]
    )
    return {
        "n": n,
        "warmup": warmup,
        "ours": ours_s,
        "bare": bare_s,
        "bare_security_ir_calls": med(bare_runs, "security_ir_seconds"),
        "bare_security_ir_calls_per_event": med(bare_runs, "security_ir_calls"),
        "ours_over_bare": ours_s["median"] / bare_s["median"],
        "ours_minus_bare": ours_s["median"] - bare_s["median"],
        "ours_breakdown": breakdown,
        "failed_answers": len(failed),
    }
