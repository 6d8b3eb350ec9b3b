"""Smoke test of the benchmark harness (bench/): a tiny grid through both handlers.

The handlers run in a separate process against the emulator, moto's DynamoDB
and the receiver, exactly as in ``make bench``; only the grid is small.
"""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import calls  # noqa: E402
import coldstart  # noqa: E402
import common  # noqa: E402
import naive  # noqa: E402
import report  # noqa: E402
from sirlocal.services import local_services  # noqa: E402


def test_naive_handler_sends_every_field_and_separate_add_and_remove_calls() -> None:
    old, new = calls.ou_change(12, 7)
    requests = naive.update_requests(new.properties(), old.properties())
    assert len(requests) == 3 + 2  # ceil(12/5) adds, then ceil(7/5) removes
    first = requests[0]
    assert {"membershipName", "incidentResponseTeam", "optInFeatures"} <= set(first)
    assert first["membershipAccountsConfigurationsUpdate"]["coverEntireOrganization"] is False
    assert all("membershipName" not in r for r in requests[1:])
    assert (
        sum(
            len(r["membershipAccountsConfigurationsUpdate"].get("organizationalUnitsToAdd", []))
            for r in requests
        )
        == 12
    )
    assert naive.update_requests(old.properties(), old.properties()) == [
        first | {"membershipAccountsConfigurationsUpdate": {"coverEntireOrganization": False}}
    ]


def test_bound_is_computed_from_the_declarations() -> None:
    assert calls.Case("x", *calls.ou_change(12, 7)).bound == 3
    assert calls.Case("x", *calls.ou_change(0, 0)).bound == 0
    assert calls.Case("x", *calls.ou_change(6, 0)).bound == 2
    assert calls.Case("x", *calls.ou_change(5, 5)).bound == 1
    assert calls.Case("x", *calls.ou_change(1000, 1000)).bound == 200
    name_only = calls.Case("x", *calls._fields(name=True))
    assert (name_only.adds, name_only.removes, name_only.bound) == (0, 0, 1)
    twelve = tuple(calls.ou(i) for i in range(12))
    assert calls.Case("d", calls.Spec(ous=twelve)).bound == 0  # Delete, Retain
    remove = calls.Case("d", calls.Spec(ous=twelve, on_delete="RemoveOrganizationalUnits"))
    assert (remove.removes, remove.bound) == (12, 3)
    create = calls.Case(
        "c", calls.Spec(), calls.Spec(name="n", ous=twelve), group="create", create=True
    )
    assert (create.request_type, create.adds, create.removes, create.bound) == ("Create", 12, 0, 3)
    event = create.event("https://example.invalid/r")
    assert "PhysicalResourceId" not in event
    assert "OldResourceProperties" not in event
    with pytest.raises(ValueError, match="Create case"):
        calls.Case("c", calls.Spec(ous=twelve), calls.Spec(), create=True)


def test_state_check_covers_name_team_features_and_ous() -> None:
    old, new = calls._fields(True, True, True)
    case = calls.Case("x", old, new)
    assert calls.state_matches(new.membership(), case.expected())
    for wrong in (old, replace(new, team=old.team), replace(new, triage=old.triage)):
        assert not calls.state_matches(wrong.membership(), case.expected())
    assert not calls.state_matches(replace(new, ous=()).membership(), case.expected())


def test_tiny_grid_ours_makes_no_excess_calls_and_naive_does() -> None:
    with (
        calls.tcp_nodelay(),
        local_services() as services,
        calls.Worker(calls.worker_env(services), log_name="test-bench-worker") as worker,
    ):
        calls.warm_up(services, worker)
        rows = calls.run_grid(services, worker, calls.smoke_grid())
    assert calls.problems(rows) == []
    assert [r["ours_excess"] for r in rows] == [0] * len(rows)
    assert any(r["naive_excess"] > 0 for r in rows)
    assert all(r["ours"]["gets"] == (0 if r["request_type"] == "Delete" else 1) for r in rows)
    assert {r["request_type"] for r in rows} == {"Create", "Update", "Delete"}
    text = "\n".join(report.calls_section({"calls": {"rows": rows, "problems": []}}))
    assert "| ours excess |" in text
    assert "| OUs +12 -7 | Update | 3 | 3 | **0** |" in text


def _cold_setting(label: str, medians: dict[str, float], ratios=()) -> dict[str, object]:
    times = {name: [value] * 3 for name, value in medians.items()} | {"empty": [0.01] * 3}
    return coldstart.result_of(label, list(medians), times, times, ratios)


def test_cold_start_ratios_are_of_the_same_rounds() -> None:
    times = {"ours": [0.3, 0.4, 0.5], "bare": [0.2, 0.4, 1.0], "empty": [0.01] * 3}
    result = coldstart.result_of("x", ["ours", "bare"], times, times)
    assert result["ours_over_bare"] == pytest.approx(0.4 / 0.4)
    assert result["ours_over_bare_paired"]["median"] == pytest.approx(1.0)
    assert result["ours_over_bare_paired"]["min"] == pytest.approx(0.5)
    assert result["runs"] == 3


def test_cold_start_report_gives_the_issue_ratios_with_verdicts() -> None:
    steps = [
        "import boto3",
        "import sir_membership modules",
        "boto3.client('security-ir')",
        "boto3.client('dynamodb') (default session, for the idempotency table)",
        "COMPARE DynamoDBPersistenceLayer() left to build its own boto3 Session + dynamodb client",
        "first invocation: service_model.rules() from the client's model (shared)",
        "COMPARE a fresh botocore loader listing botocore's data and parsing the model again",
    ]
    imports = {"runs": 3, "total_ms": 1.0, "module_body_self_ms": 1.0}
    lam = {"ours": 0.21, "bare": 0.2, "bare_paused": 0.19, "ours_old": 0.6, "bare_old": 0.5}
    cold = {
        "dev": _cold_setting("dev", {"ours": 0.24, "bare": 0.2}),
        "lambda": _cold_setting("lambda", lam, coldstart.LAMBDA_RATIOS),
        "importtime": {
            name: imports | {"top_cumulative_ms": [], "top_packages_self_ms": []}
            for name in ("ours", "bare")
        },
        "only_ours_top_cumulative_ms": [],
        "replay": {
            "runs": 7,
            "setting": "lean package, -I -B",
            "steps": [{"step": s, "median": 0.01, "collector_median": 0.0} for s in steps],
            "body": {"median": 0.06, "collector_median": 0.001},
            "body_collector_on": {"median": 0.07, "collector_median": 0.01},
            "collector_pause_saves": common.summary([0.01] * 7),
        },
    }
    headline = report.cold_headline(cold)
    assert (
        "210 ms vs 600 ms on the old way's package = **0.35** (paired 0.35, CPU time 0.35; "
        "goal ≤ 0.5, goal met)" in headline
    )
    assert "(200 ms) **1.05x** (paired 1.05x, CPU time 1.05x; goal ≤ 1.10x, goal met;" in headline
    assert "190 ms: 1.11x" in headline
    assert "On the old package ours/bare was 1.20x." in headline
    slow = cold | {"lambda": _cold_setting("lambda", lam | {"ours": 0.33}, coldstart.LAMBDA_RATIOS)}
    assert "**1.65x** (paired 1.65x, CPU time 1.65x; goal ≤ 1.10x, **goal not met**" in (
        report.cold_headline(slow)
    )
    assert report._verdict(1.05, 1.10, 1.14, 1.02) == (
        "**not clear**: medians 1.05, paired 1.14, CPU time 1.02"
    )
    assert report._verdict(1.2, 1.10, 1.14, 1.3) == "**goal not met**"
    text = "\n".join(
        report.coldstart_section({"coldstart": cold, "artifact": {"services": ["dynamodb"]}})
    )
    assert "| setting | handler | runs | ms | / bare (same setting) |" in text
    assert "| ours, lean package | 3 | 210 (210-210; 210-210) | **1.05x**" in text
    assert "**Applied**" in text
    assert "the module load takes 60.0 ms, 1.0 ms of it in the collector" in text


def test_cold_start_replay_follows_app_py() -> None:
    """The replay times app.py's module load: what app.py does, the replay does.

    app.py is the dispatcher: a table client for the request records and a
    Step Functions client, no security-ir client (the Work task has that).
    """
    app = (BENCH.parent / "src" / "sir_membership" / "app.py").read_text(encoding="utf-8")
    assert app.index("gc.disable()") < app.index("import boto3")
    assert app.index("HELPER = _Resource()") < app.index("\n_collector_resumed()\n")
    assert "gc.freeze()" in app
    for call in (
        '"dynamodb"',
        '"stepfunctions"',
        "RequestStore(",
        "JournalStore(",
        "Engine(",
        "CfnResource",
    ):
        assert call in app
    assert '"security-ir"' not in app
    assert "share_model(" not in app
    replay = coldstart._REPLAY
    body = replay[: replay.index(coldstart.FIRST)]
    for call in (
        'boto3.client("dynamodb"',
        "RequestStore(",
        "JournalStore(",
        'boto3.client("stepfunctions"',
        "Engine(",
        "CfnResource(",
        "gc.freeze()",
    ):
        assert call in body
    assert "security-ir" not in body
    assert "share_model(" not in body
    # Every module of the package that app.py imports, the replay imports before its clients.
    imported = set(re.findall(r"^from \.(\w+) import", app, re.MULTILINE))
    imported |= {
        name.strip()
        for names in re.findall(r"^from \. import ([\w, ]+)$", app, re.MULTILINE)
        for name in names.split(",")
    }
    modules = body[body.index("from sir_membership import (") : body.index('mark("import sir')]
    assert imported
    assert imported <= set(re.findall(r"\w+", modules))
    assert replay.index("gc.disable()") < replay.index("import boto3")
    assert "idempotent_function" not in replay
    assert "self_invoke" not in replay


def test_engine_bench_measures_a_first_change_then_the_next_from_its_recorded_pace() -> None:
    """A membership's first change learns the window; the next one starts from it.

    Both against calls x P, with the billed time, the transitions and a
    doomed change measured both ways: refused before any write when the pace
    is recorded, FAILED at its deadline as a first change.
    """
    import copy  # noqa: PLC0415

    import engine_bench  # noqa: PLC0415

    section = engine_bench.measure(
        models=(("conflict", False),),
        periods=(60.0,),
        sizes=(20,),
        doomed_cases=(("conflict", False, 10.0, 100, 120),),
    )
    assert section["definition_problems"] == []
    first, after = section["rows"]
    assert (first["change"], after["change"]) == ("first", "next")
    for row in (first, after):
        assert (row["answers"], row["applied"], row["calls"], row["ok"]) == (
            ["SUCCESS"],
            4,
            4,
            True,
        )
        # Work, Wait and Route per step that waits; the last Work, Route, Answer, Done.
        assert row["transitions"] == 3 * row["work_steps"] + 1
        assert row["waits"] == row["work_steps"] - 1
        assert row["gb_seconds"] == pytest.approx(row["billed_seconds"] * 256 / 1024)
    # The first change has no pace: it probes for the window (refusals, extra steps) and
    # records one within the model's P and 10 % of it.
    assert first["pace_before"] is None
    assert first["refused"] >= 2
    assert first["work_steps"] > first["calls"]
    assert 60.0 <= first["pace_after"] <= 66.0
    # The next one starts from that window: a refusal at most, one step per call or so.
    assert after["pace_before"] == first["pace_after"]
    assert after["refused"] <= 1 < first["refused"]
    assert after["work_steps"] <= after["calls"] + 1
    assert after["wall_over_bound"] <= 1.1
    assert after["billed_over_wall"] <= 0.05, "waiting is a Wait state, not billed time"
    assert after["billed_seconds"] < first["billed_seconds"]
    paced, unpaced = section["doomed"]
    # With a recorded pace: refused by the first Work step, before any call or journal write.
    assert (paced["paced"], paced["answers"], paced["work_steps"]) == (True, ["FAILED"], 1)
    assert paced["pace_before"] is not None
    assert paced["seconds_to_failed"] < 5.0
    assert (paced["updates_sent_before_failed"], paced["applied_before_failed"]) == (0, 0)
    assert not paced["journal_written_before_failed"]
    assert paced["reason"].startswith("The change needs 20 UpdateMembership calls, 19 of them")
    assert (paced["rollback_answers"], paced["rolled_back"]) == (["SUCCESS"], True)
    # As a first change nothing is refused: it writes, and answers FAILED at its deadline.
    assert (unpaced["paced"], unpaced["pace_before"], unpaced["answers"]) == (
        False,
        None,
        ["FAILED"],
    )
    assert 5.0 < unpaced["seconds_to_failed"] < unpaced["service_timeout"]
    assert unpaced["applied_before_failed"] >= 1
    assert unpaced["journal_written_before_failed"]
    assert "of 20 UpdateMembership calls were applied" in unpaced["reason"]
    assert len(unpaced["rollback_answers"]) == 1
    assert engine_bench.problems(section) == []
    text = "\n".join(report.engine_section({"engine": section}))
    assert "| conflict | 60 s | 20 | first: +20 | none | 4 / 4 |" in text
    assert f"| conflict | 60 s | 20 | next: -20 | {first['pace_after']:.1f} s | 4 / 4 |" in text
    assert "| conflict | 10 s | 100 | 120 s | none | 200 s | FAILED |" in text
    assert "they agree" in text
    assert "before any UpdateMembership call or journal write" in text
    headline = report.engine_headline(section)
    assert "goal ≤ 1.1: met" in headline
    assert "(goal: refused in under 5 s, met)" in headline
    # A row past a goal is named, not averaged away.
    slow = copy.deepcopy(section)
    slow["rows"][1]["wall_over_bound"] = 1.5
    assert "**not met** on 1 of 2 rows: P = 60 s (every model)" in report.engine_headline(slow)
    broken = copy.deepcopy(section)
    broken["doomed"][0]["updates_sent_before_failed"] = 1
    broken["doomed"][0]["writes_before_answer"] = True
    assert any("not refused before its first write" in p for p in engine_bench.problems(broken))


def test_engine_bench_with_retry_after_waits_in_wait_states_one_step_per_call() -> None:
    import engine_bench  # noqa: PLC0415

    for row in engine_bench.changes("conflict", True, 10.0, 20):
        assert (row["answers"], row["applied"], row["ok"]) == (["SUCCESS"], 4, True)
        # Each refusal with Retry-After 10 s is a Wait state, not a sleep: one Work step per call.
        assert (row["work_steps"], row["waits"], row["transitions"]) == (4, 3, 3 * 3 + 4)
        assert row["wall"] >= row["bound"] - 10.0  # the first call goes at once
        assert row["billed_seconds"] < 0.1 * row["wall"]
    first, after = engine_bench.changes("conflict", True, 10.0, 20)
    assert first["refused"] == 1, "one refusal tells the window (Retry-After)"
    assert after["refused"] == 0


def test_engine_bench_charges_a_cold_start_once_per_execution_and_after_long_waits() -> None:
    import engine_bench  # noqa: PLC0415

    def billed(starts: Any) -> float:
        row = engine_bench.changes("conflict", True, 10.0, 20, starts)[0]
        assert (row["answers"], row["work_steps"]) == (["SUCCESS"], 4)
        return float(row["billed_seconds"])

    free = billed(engine_bench.Starts(cold=0.0, warm=0.0))
    assert billed(engine_bench.Starts(cold=2.0, warm=0.0)) == pytest.approx(free + 2.0)
    assert billed(engine_bench.Starts(cold=0.0, warm=1.0)) == pytest.approx(free + 3.0)
    # Waits of 10 s are longer than an idle limit of 5 s: every step starts cold.
    assert billed(engine_bench.Starts(cold=2.0, warm=0.0, idle_limit=5.0)) == pytest.approx(
        free + 8.0
    )
