"""The reliability report's Markdown, from run results only (no figure is typed in here).

Why separate from :mod:`sirlocal.reliability`: running scenarios needs live
services; rendering is a pure function of their results, so a test can
render a small run and check the table's shape and that nothing sensitive
reaches it.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sirlocal.driver import REPO_ROOT
from sirlocal.scenarios import ScenarioResult


@dataclass(frozen=True)
class BadInputRow:
    """One invalid declaration: its problems, answer times, writes and whether A was kept."""

    name: str
    problems: tuple[str, ...]
    create_seconds: float
    update_seconds: float
    writes: int
    write_attempts: int
    state_kept: bool
    calls_ok: bool


@dataclass(frozen=True)
class Measurement:
    """When, where and how the run was made (the report's header)."""

    date: str
    commit: str
    python: str
    platform: str
    cpus: int
    seconds: float
    command: str
    subset: bool = False

    @classmethod
    def here(cls, seconds: float, command: str, subset: bool = False) -> Measurement:
        """This machine, this checkout, now."""
        return cls(
            datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            _commit(),
            platform.python_version(),
            platform.platform(terse=True),
            _cpus(),
            seconds,
            command,
            subset,
        )


def _cpus() -> int:
    """CPUs this process may use (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _commit() -> str:
    """The checkout's commit, flagged when src/, local/ or tests/ have uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD") or "unknown"
        dirty = git("status", "--porcelain", "--", "src", "local", "tests")
    except OSError:
        return "unknown (no git)"
    return f"{commit} with uncommitted changes in src/, local/ or tests/" if dirty else commit


def _cell(text: object) -> str:
    """A Markdown table cell: pipes escaped, one line."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _seconds(value: float) -> str:
    """A duration readable at both scales (bad input answers in ms, hangs in s); 0: none."""
    if value in (0.0, float("inf")):
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def verdict(result: ScenarioResult) -> str:
    """The row's result: ok, problems, or how a known issue stands today."""
    if result.known_issue:
        return (
            "known issue, still reproduced" if result.problems else "ok; known issue not reproduced"
        )
    return "ok" if result.ok else "**problems**"


def scenario_table(
    results: Sequence[ScenarioResult],
    calls_checked: set[str],
    stand_ins: Mapping[str, str],
) -> list[str]:
    """One row per scenario, every figure from its :class:`ScenarioResult`."""
    lines = [
        "| Scenario | Played on | Group | Faults injected | Outcome | Writes made / attempts "
        "| Final state correct | Calls as expected | Slowest answer | Run time | Result |",
        "|---|---|---|---|---|---:|---|---|---:|---:|---|",
    ]
    for r in results:
        calls = _yes(r.calls_ok) if r.name in calls_checked else "not checked"
        lines.append(
            "| "
            + " | ".join(
                _cell(c)
                for c in (
                    f"`{r.name}`: {r.title}",
                    "stand-ins" if r.name in stand_ins else "ministack",
                    r.group,
                    r.faults,
                    r.outcome,
                    f"{r.writes} / {r.write_attempts}",
                    _yes(r.final_ok),
                    calls,
                    _seconds(r.slowest_answer),
                    f"{r.seconds:.1f} s",
                    verdict(r),
                )
            )
            + " |"
        )
    return lines


def where_section(results: Sequence[ScenarioResult], stand_ins: Mapping[str, str]) -> list[str]:
    """Which scenarios ministack played, and why each of the others needs the stand-ins."""
    on_ministack = [r.name for r in results if r.name not in stand_ins]
    by_reason: dict[str, list[str]] = {}
    for r in results:
        if r.name in stand_ins:
            by_reason.setdefault(stand_ins[r.name], []).append(r.name)
    lines = [
        "## Where each scenario runs",
        "",
        f"{len(on_ministack)} of {len(results)} scenarios run on ministack (its CloudFormation, "
        "Lambda, Step Functions, DynamoDB and CloudWatch Logs, IAM enforced, the provider "
        "deployed by `sam build` and `sam deploy`; `sirlocal.ministack_scenarios`). The "
        f"{len(results) - len(on_ministack)} others need the project's stand-ins (its "
        "CloudFormation driver, Step Functions stand-in, receiver and moto), each for the "
        "reason given (`stand_in_reason`):",
        "",
    ]
    for reason, names in by_reason.items():
        lines.append(f"- {_cell(reason)}: " + ", ".join(f"`{n}`" for n in names))
    return lines


def bad_input_section(rows: Sequence[BadInputRow]) -> list[str]:
    """The invalid declarations summarised as one row, then any that had problems."""
    if not rows:
        return []
    clean = sum(1 for r in rows if not r.problems)
    quiet = sum(1 for r in rows if r.calls_ok)
    kept = sum(1 for r in rows if r.state_kept)
    lines = [
        "## Bad input",
        "",
        "Each invalid declaration is sent as a Create (then rolled back) and as an Update of a "
        "healthy stack (then rolled back). It must be answered FAILED at once with a reason that "
        "names the property, with no security-ir call during the failing request and no write.",
        "",
        "| Declarations | Answered as expected | No call during the failed request "
        "| Writes made / attempts | Membership unchanged | Slowest Create answer "
        "| Slowest Update answer |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(rows)} | {clean} | {quiet} | {sum(r.writes for r in rows)} / "
        f"{sum(r.write_attempts for r in rows)} | {kept} "
        f"| {_seconds(max(r.create_seconds for r in rows))} "
        f"| {_seconds(max(r.update_seconds for r in rows))} |",
    ]
    failed = [r for r in rows if r.problems]
    if failed:
        lines += ["", "Declarations with problems:", ""]
        lines += [f"- `{r.name}`: {_cell('; '.join(r.problems))}" for r in failed]
    return lines


def totals(results: Sequence[ScenarioResult], bad: Sequence[BadInputRow]) -> str:
    """The one-line summary (also printed by the command)."""
    failed = [r for r in results if r.problems]
    known = sum(1 for r in failed if r.known_issue)
    text = (
        f"{len(results)} scenarios: {len(results) - len(failed)} with every check held, "
        f"{len(failed)} with problems ({known} of them known issues); "
        f"writes made / attempted: {sum(r.writes for r in results)} / "
        f"{sum(r.write_attempts for r in results)}"
    )
    gone = sum(1 for r in results if r.known_issue and not r.problems)
    if gone:
        text += f"; {gone} known issue(s) not reproduced"
    if bad:
        clean = sum(1 for r in bad if not r.problems)
        text += f"; bad input: {clean} of {len(bad)} declarations answered as expected"
    return text


STATEFUL_REPORT = Path(__file__).resolve().parents[2] / "docs" / "stateful.json"


def stateful_section(path: Path = STATEFUL_REPORT) -> list[str]:
    """The long run of the stateful property test (``make stateful``), as it recorded itself."""
    if not path.exists():
        return ["", "## Stateful property test", "", "Not run yet: `make stateful` writes it."]
    run = json.loads(path.read_text(encoding="utf-8"))
    lines = [
        "",
        "## Stateful property test",
        "",
        "`tests/test_stateful.py` plays random sequences of stack operations (Create, Update, "
        "Delete with both OnDelete values), faults (a refusal at call k, a 5xx that was or was "
        "not applied, a read timeout after an applied call, reads failing, the journal's table "
        'down, deadlines), "a later resource failed" rollbacks, rollbacks that fail and are '
        "continued, and third-party changes, checking after every step that a completed "
        "rollback restores every field the change set (unless the third party changed it "
        "since), that the third party's OUs are never removed, one answer per request and no "
        "live lease left behind. `make test` runs 60 examples; this is the long run "
        f"(`make stateful`): {run['examples']} examples of up to {run['steps_per_example']} "
        f"steps, {run['seconds']:.0f} s, {run['date']}, commit {run['commit']}, no failure.",
        "",
        "| exercised | count |",
        "|---|---|",
    ]
    lines += [f"| {_cell(k)} | {v} |" for k, v in run["counts"].items()]
    return lines


def render(
    results: Sequence[ScenarioResult],
    bad: Sequence[BadInputRow],
    measured: Measurement,
    calls_checked: set[str],
    stand_ins: Mapping[str, str] | None = None,
) -> str:
    """``docs/reliability.md``: header, totals, the table, where each scenario runs, bad
    input, problems, known issues. ``stand_ins``: the scenarios played on the project's
    stand-ins, with the reason (the others ran on ministack); None: all of them."""
    where = {r.name: "" for r in results} if stand_ins is None else stand_ins
    subset = " (a subset of the runs)" if measured.subset else ""
    lines = [
        "# Reliability",
        "",
        "Every end-to-end scenario, played through the real handlers the way CloudFormation "
        "plays a stack: on ministack (a third-party local AWS) where it can play it, else "
        "against the project's stand-ins (a CloudFormation driver, moto's DynamoDB, an HTTPS "
        "receiver for the answers, a Step Functions stand-in that plays the provider's state "
        "machine with its Work and Answer tasks in worker processes), with the Security IR "
        "emulator behind both (docs/local.md). "
        f"Every figure below comes from one run of the command named here{subset}.",
        "",
        f"- Measured: {measured.date}, commit {measured.commit}",
        f"- Machine: Python {measured.python} on {measured.platform}, {measured.cpus} CPUs",
        f"- Command: `{measured.command}`, {measured.seconds:.0f} s in all",
        "",
        f"**Totals:** {totals(results, bad)}.",
        "",
        "Writes are UpdateMembership calls the emulator applied / all it received (refused, "
        "reset and hung ones included). The slowest answer is the longest time from an "
        "invocation to its accepted response PUT.",
        "",
        *scenario_table(results, calls_checked, where),
    ]
    if stand_ins is not None:
        lines += ["", *where_section(results, stand_ins)]
    if bad:
        lines += ["", *bad_input_section(bad)]
    lines += stateful_section()
    failed = [r for r in results if r.problems]
    if failed:
        lines += ["", "## Problems", ""]
        for r in failed:
            lines.append(f"- `{r.name}`:")
            lines += [f"  - {_cell(p)}" for p in r.problems]
    only_here = [r for r in results if r.reliability_only]
    if only_here:
        lines += [
            "",
            "## Not in `make test`",
            "",
            "These scenarios wait real seconds by design, so `make test` leaves them to this "
            "report; each reason names what plays the same behaviour in `make test`.",
            "",
        ]
        lines += [f"- `{r.name}`: {_cell(r.reliability_only)}" for r in only_here]
    issues = [r for r in results if r.known_issue]
    if issues:
        lines += ["", "## Known issues", ""]
        for r in issues:
            state = "still reproduced" if r.problems else "not reproduced in this run"
            lines.append(f"- `{r.name}` ({state}): {_cell(r.known_issue)}")
    return "\n".join(lines) + "\n"
