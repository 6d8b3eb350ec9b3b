"""Smoke test of the benchmark harness (bench/): a tiny grid through both handlers.

The handlers run in a separate process against the emulator, moto's DynamoDB
and the receiver, exactly as in ``make bench``; only the grid is small.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import calls  # noqa: E402
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


def test_bound() -> None:
    assert calls.Case("x", *calls.ou_change(12, 7)).bound == 3
    assert calls.Case("x", *calls.ou_change(0, 0)).bound == 0
    assert calls.Case("x", *calls.ou_change(6, 0)).bound == 2


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
    text = "\n".join(report.calls_section({"calls": {"rows": rows, "problems": []}}))
    assert "| ours excess |" in text
    assert "| OUs +12 -7 | Update | 3 | 3 | **0** |" in text
