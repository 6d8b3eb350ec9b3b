"""``make bench``: measure the provider and write bench/results.md and bench/results.json.

Run from the repository root as
``PYTHONPATH=src:local .venv/bin/python bench/run.py --sam .venv-tools/bin/sam``.
Every figure in the results is measured by this run (ratios within it);
the Markdown is printed on stdout too, progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import artifact
import calls
import coldstart
import engine_bench
import report
import scale
from common import BENCH_DIR, REPO_ROOT, WORK_DIR, log, machine

BIG_REPEATS = 1  # runs of a grid row whose bound exceeds --big-bound (10+ s each at 50 ms/call)
RETAIN_LIMIT = 1.0  # seconds; the issue asks for a Delete with Retain well under a second
PLOT_INSTALL_TIMEOUT = 180  # seconds; past that the report says there is no plot


def nagle_probe(calls_per_setting: int = 10) -> dict[str, float]:
    """Median GetMembership time against a fresh emulator with Nagle on and off."""
    import boto3  # noqa: PLC0415
    from sirlocal import JSONRequestHandler  # noqa: PLC0415
    from sirlocal.emulator import SecurityIREmulator  # noqa: PLC0415

    out = {}
    saved = JSONRequestHandler.disable_nagle_algorithm
    try:
        with SecurityIREmulator() as emulator:
            emulator.seed({"membershipId": calls.MEMBERSHIP_ID})
            for label, nodelay in (("nagle_on", False), ("nodelay", True)):
                JSONRequestHandler.disable_nagle_algorithm = nodelay
                client = boto3.client(
                    "security-ir",
                    endpoint_url=emulator.endpoint_url,
                    region_name="us-east-1",
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                )
                client.get_membership(membershipId=calls.MEMBERSHIP_ID)  # connect
                times = []
                for _ in range(calls_per_setting):
                    started = time.perf_counter()
                    client.get_membership(membershipId=calls.MEMBERSHIP_ID)
                    times.append(time.perf_counter() - started)
                out[label] = statistics.median(times)
                client.close()
    finally:
        JSONRequestHandler.disable_nagle_algorithm = saved
    return out


def services_stage(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that needs the emulator, moto and the receiver."""
    from sirlocal.services import local_services  # noqa: PLC0415

    out: dict[str, Any] = {}
    with calls.tcp_nodelay(), local_services() as services:
        with calls.Worker(calls.worker_env(services), log_name="worker-grid") as worker:
            started = time.perf_counter()
            first = {}
            for handler in calls.HANDLERS:
                imported = worker.call("import", handler=handler)["seconds"]
                case = calls.Case("first invocation", *calls.ou_change(0, 0))
                url = services.receiver.url_for(f"first-{handler}-{uuid.uuid4().hex[:8]}")
                first[handler] = {
                    "import_seconds": imported,
                    "first_invocation_seconds": worker.call(
                        "invoke", handler=handler, event=case.event(url)
                    )["seconds"],
                }
            calls.warm_up(services, worker)
            cases = calls.smoke_grid() if args.quick else calls.full_grid()
            rows = calls.run_grid(
                services,
                worker,
                cases,
                latency=args.latency,
                repeats=args.repeats,
                big_repeats=BIG_REPEATS,
                big_bound=args.big_bound,
            )
            out["calls"] = {
                "latency": args.latency,
                "repeats": args.repeats,
                "big_repeats": BIG_REPEATS,
                "big_bound": args.big_bound,
                "rows": rows,
                "problems": calls.problems(rows),
                "first_invocation": first,
                "seconds": time.perf_counter() - started,
            }
        # The dispatcher and its execution's tasks run in one process here, and each
        # function's lean package holds only what its own handler reaches: src/.
        package = None
        python: tuple[str, ...] = ()
        with calls.Worker(
            calls.worker_env(services), log_name="worker-warm", package=package, python=python
        ) as worker:
            log(f"warm overhead ({'the lean package' if package else 'src/'})")
            out["warm"] = calls.warm_overhead(services, worker, n=args.warm_n)
            out["warm"]["code"] = "lean package, python -S -B" if package else "src/ (dev venv)"
        log("peak RSS of one invocation")
        out["rss"] = scale.invocation_rss(services)
    return out


def plot(results_path: Path, png: Path) -> str:
    """Draw the PNG with matplotlib installed on demand into bench/.work/plot-deps."""
    deps = WORK_DIR / "plot-deps"
    requirements = BENCH_DIR / "requirements-plot.txt"
    marker = deps / ".installed"
    if not marker.exists() or marker.read_text() != requirements.read_text():
        log("installing matplotlib for the plot (bench/.work/plot-deps)")
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "--target", str(deps), "--upgrade", "-r", str(requirements)],
                capture_output=True, text=True, timeout=PLOT_INSTALL_TIMEOUT, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"no plot: matplotlib could not be installed ({type(error).__name__}: {error})"
        if done.returncode != 0:
            return f"no plot: matplotlib could not be installed ({done.stderr.strip()[-300:]})"
        marker.write_text(requirements.read_text())
    env = {
        "PYTHONPATH": str(deps),
        "PATH": "/usr/bin:/bin",
        "MPLBACKEND": "Agg",
        "HOME": str(WORK_DIR),
    }
    try:
        done = subprocess.run(
            [sys.executable, str(BENCH_DIR / "plot.py"), str(results_path), str(png)],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"no plot: {type(error).__name__}: {error}"
    if done.returncode != 0:
        return f"no plot: {done.stderr.strip()[-300:]}"
    return ""


def _command(argv: list[str] | None) -> str:
    """The command line of this run, as typed from the repository root."""
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(REPO_ROOT)
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(REPO_ROOT)
    words = [str(python), str(script), *(sys.argv[1:] if argv is None else argv)]
    pythonpath = os.environ.get("PYTHONPATH", "")
    return (f"PYTHONPATH={pythonpath} " if pythonpath else "") + shlex.join(words)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sam", help="sam executable (for the artifact's size)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR, help="where results.* go")
    parser.add_argument("--latency", type=float, default=0.05, help="emulator seconds per call")
    parser.add_argument("--repeats", type=int, default=3, help="runs per small grid row")
    parser.add_argument("--big-bound", type=int, default=25, help="rows above this run once")
    parser.add_argument("--cold-runs", type=int, default=21)
    parser.add_argument("--artifact-cold-runs", type=int, default=21)
    parser.add_argument("--warm-n", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="small grid and few runs (a check)")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.cold_runs, args.artifact_cold_runs, args.warm_n = 1, 3, 3, 10
    started = time.perf_counter()
    WORK_DIR.mkdir(exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "command": _command(argv),
        "via_make": (sys.argv[1:] if argv is None else argv) == ["--sam", ".venv-tools/bin/sam"],
    }

    log("artifact size (sam build)")
    results["artifact"] = artifact.measure(args.sam)
    built = Path(results["artifact"]["path"]) if results["artifact"].get("measured") else None
    if built is not None and ".aws-sam" in built.parts:
        built = None  # a fallback build, maybe stale or touched by other tools

    old = Path(results["artifact"]["old"]["path"]) if built is not None else None
    args.package = built

    log("cold start")
    results["coldstart"] = coldstart.run(
        built, old, runs=args.cold_runs, artifact_runs=args.artifact_cold_runs
    )

    log("planner scale")
    sizes = scale.SIZES[:3] if args.quick else scale.SIZES
    results["scale"] = {"planner": scale.planner(sizes)}

    log("Nagle probe")
    results["nagle"] = nagle_probe()
    log("calls, wall time, warm overhead, RSS (local services)")
    staged = services_stage(args)
    results["calls"] = staged["calls"]
    results["warm"] = staged["warm"]
    results["scale"]["rss"] = staged["rss"]
    log("long changes on the engine (simulated clock)")
    results["engine"] = engine_bench.measure(starts=engine_starts(results))

    results["problems"] = problems(results)
    results["seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "results.json"
    png = args.out / "results.png"
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    results["plot"] = "no plot (--no-plot)" if args.no_plot else plot(json_path, png)
    if results["plot"]:
        png.unlink(missing_ok=True)
    results["seconds"] = time.perf_counter() - started
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    markdown = report.render(results, png_name=None if results["plot"] else png.name)
    (args.out / "results.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    log(f"done in {results['seconds']:.0f} s: {args.out / 'results.md'}, {json_path}")
    if results["problems"]:
        log("PROBLEMS: " + "; ".join(results["problems"]))
        return 1
    return 0


def engine_starts(results: dict[str, Any]) -> engine_bench.Starts:
    """A Work invocation's start on the engine's simulated clock, from this run's figures.

    Cold: the tasks' package's cold start as on Lambda (section 3). Warm: what
    the dispatcher, Work and Answer add together to a warm event (section 4,
    ours - bare): more than one Work step alone adds, so billed time errs high.
    """
    lam = results["coldstart"].get("lambda") or {}
    warm = results["warm"]["ours_minus_bare"]
    if "tasks" in lam:
        return engine_bench.Starts(
            cold=lam["tasks"]["median"],
            warm=warm,
            source="cold: the tasks' lean package as on Lambda, section 3; warm: the "
            "dispatcher, Work and Answer together on a warm event, section 4 (ours - bare), "
            "more than one Work step adds",
        )
    return engine_bench.Starts(
        warm=warm,
        source="cold: 0.5 s assumed (no tasks package measured); warm: section 4 (ours - bare)",
    )


def problems(results: dict[str, Any]) -> list[str]:
    """What makes this run fail: a wrong answer or state, or a call above the bound."""
    out = list(results["calls"]["problems"])
    out += engine_bench.problems(results["engine"])
    out += [
        f"{r['case']}: ours made {r['ours_excess']} UpdateMembership calls above the bound"
        for r in results["calls"]["rows"]
        if r["ours_excess"] > 0
    ]
    out += [
        f"{r['case']}: ours took {r['wall']['ours']:.2f} s (a Delete with Retain must take well "
        f"under {RETAIN_LIMIT:.0f} s)"
        for r in results["calls"]["rows"]
        if r["request_type"] == "Delete" and not r["bound"] and r["wall"]["ours"] >= RETAIN_LIMIT
    ]
    if results["warm"]["failed_answers"]:
        out.append(f"warm overhead: {results['warm']['failed_answers']} answers not SUCCESS")
    out += [
        f"rss: {r['declared']} OUs left the membership in the wrong state (answered "
        f"{r.get('status')}: {r.get('reason', '')})"
        for r in results["scale"]["rss"]
        if r["handler"] == "ours" and not r["state_ok"]
    ]
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT / "src"))
    sys.exit(main())
