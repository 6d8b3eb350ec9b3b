"""``check``: the guardrails on a template, in CI, before any change set exists.

Reads the template (and the previous one, to see what changes), resolves
its intrinsics with the preview's resolver and the given parameters, takes
each membership's state from saved GetMembership output, a live
GetMembership, or (offline) the previous declaration, and runs the same
rules as the hook. Exit 0: every rule passed (warnings allowed); 1: a rule
failed, or an error.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..errors import ConfigurationError, InvalidProperties, MembershipError
from ..guardrails.declarations import Subject, template_subjects
from ..guardrails.evaluate import Verdict, evaluate
from ..guardrails.render import verdict_markdown, verdict_text
from ..guardrails.rules import Actual
from ..guardrails.settings import NAMES, Settings
from ..membership import MembershipState
from ..preview import StackContext, parse_template, state_from_declaration
from ..service import MembershipService
from .aws import READ_BUDGET_SECONDS, Clients, CliError, deadline, get_membership, read_json
from .plan import read_states

ASSUMED_OLD = "assumed: as the previous template declares it (no state given)"
ASSUMED_EMPTY = "assumed: an empty membership with no OUs (no state given)"
EXIT_PASSED, EXIT_FAILED = 0, 1


@dataclass(frozen=True)
class CheckReport:
    """The verdict and where the membership states came from."""

    verdict: Verdict
    source: str


def add_parser(commands: Any) -> None:
    """The ``check`` sub-command and its arguments."""
    check = commands.add_parser(
        "check",
        help="run the membership guardrails on a template (CI, pre-commit)",
        description="Evaluate the guardrails (the hook's rules) on a template before a change "
        "set exists. Exit 0: passed (warnings allowed); 1: a rule failed, or an error.",
    )
    check.add_argument("templates", nargs="*", metavar="TEMPLATE", help="template file(s)")
    check.add_argument(
        "--template-file", action="append", default=[], help="template file (repeatable)"
    )
    check.add_argument(
        "--previous-template-file",
        help="the template deployed now (e.g. from the main branch), to see what changes",
    )
    check.add_argument(
        "--parameters",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE|file://PATH",
        help="parameter values: Key=Value, or a JSON file (CloudFormation's "
        "[{ParameterKey, ParameterValue}] or an object)",
    )
    check.add_argument("--stack-name", help="stack name shown and matched (default: file name)")
    states = check.add_mutually_exclusive_group()
    states.add_argument(
        "--state-file", action="append", default=[], help="saved GetMembership JSON (repeatable)"
    )
    states.add_argument(
        "--membership-id",
        action="append",
        default=[],
        help="read this membership live with GetMembership (repeatable)",
    )
    check.add_argument("--region", help="AWS region for --membership-id")
    check.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"a guardrail setting ({', '.join(NAMES)})",
    )
    check.add_argument("--format", choices=("text", "markdown"), default="text")


def parse_pairs(tokens: Sequence[str], what: str) -> dict[str, str]:
    """``Key=Value`` tokens, or ``file://`` JSON documents of them."""
    out: dict[str, str] = {}
    for token in tokens:
        if token.startswith("file://"):
            out.update(_parameters_file(token.removeprefix("file://")))
            continue
        key, equals, value = token.partition("=")
        if not equals or not key:
            raise CliError(f"{what} {key or token!r} is not KEY=VALUE")
        out[key] = value
    return out


def _parameters_file(path: str) -> dict[str, str]:
    document = read_json(path, "parameters file")
    if isinstance(document, Mapping) and isinstance(document.get("Parameters"), Mapping):
        document = document["Parameters"]
    if isinstance(document, Mapping):
        return {str(k): str(v) for k, v in document.items()}
    if isinstance(document, list) and all(
        isinstance(p, Mapping) and "ParameterKey" in p for p in document
    ):
        return {str(p["ParameterKey"]): str(p.get("ParameterValue", "")) for p in document}
    raise CliError(f"parameters file {path}: expected an object or [{{ParameterKey, ...}}]")


def _template(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise CliError(f"cannot read template {path}: {error.strerror or error}") from None
    return parse_template(text)


def _assumed(subject: Subject) -> Actual:
    old = subject.old
    if old is not None and old.membership_id == subject.membership_id and not old.error:
        try:
            return Actual(state_from_declaration(old.properties), ASSUMED_OLD)
        except InvalidProperties:
            pass
    mid = subject.membership_id or "m-unknown"
    return Actual(MembershipState(mid), ASSUMED_EMPTY)


def _actuals(
    subjects: Sequence[Subject],
    saved: Mapping[str, MembershipState],
    live: Mapping[str, Actual],
) -> dict[str, Actual]:
    out = {}
    for subject in subjects:
        mid = subject.membership_id
        if mid is None:
            out[subject.logical_id] = Actual(None, "its MembershipId is not known here")
        elif mid in saved:
            out[subject.logical_id] = Actual(saved[mid], "state file")
        elif mid in live:
            out[subject.logical_id] = live[mid]
        else:
            out[subject.logical_id] = _assumed(subject)
    return out


def _read_live(clients: Clients, ids: Sequence[str], region: str | None) -> dict[str, Actual]:
    if not ids:
        return {}
    client = clients.security_ir(region)
    where = client.meta.region_name
    service = MembershipService(client, deadline(READ_BUDGET_SECONDS), region=where)
    out = {}
    for mid in dict.fromkeys(ids):
        try:
            out[mid] = Actual(get_membership(service, mid), f"GetMembership in {where}")
        except MembershipError as error:
            out[mid] = Actual(None, error.reason)
    return out


def run_check(
    clients: Clients,
    *,
    templates: Sequence[str],
    previous: str | None = None,
    parameters: Sequence[str] = (),
    stack_name: str | None = None,
    state_files: Sequence[str] = (),
    membership_ids: Sequence[str] = (),
    region: str | None = None,
    settings: Sequence[str] = (),
) -> CheckReport:
    """Every template through the rules; one verdict."""
    if not templates:
        raise CliError("name a template: check TEMPLATE or --template-file TEMPLATE")
    if previous and len(templates) > 1:
        raise CliError("--previous-template-file goes with one template")
    try:
        chosen = Settings.from_mapping(parse_pairs(settings, "--set"))
    except ConfigurationError as error:
        raise CliError(error.reason) from None
    values = parse_pairs(parameters, "--parameters")
    old = _template(previous) if previous else None
    subjects: list[Subject] = []
    for path in templates:
        stack = stack_name or Path(path).stem
        context = StackContext(stack_id="", stack_name=stack, parameters=values)
        subjects += template_subjects(
            stack, _template(path), old, context, service_tokens=chosen.service_tokens
        )
    saved = read_states(state_files)
    live = _read_live(clients, membership_ids, region)
    actuals = _actuals(subjects, saved, live)
    verdict = evaluate(subjects, actuals, chosen)
    source = "state file" if saved else "GetMembership" if live else ASSUMED_OLD
    return CheckReport(verdict, source)


def main_check(args: argparse.Namespace, clients: Clients, out: TextIO) -> int:
    """Run ``check`` from parsed arguments; write the verdict; return the exit code."""
    report = run_check(
        clients,
        templates=[*args.templates, *args.template_file],
        previous=args.previous_template_file,
        parameters=args.parameters,
        stack_name=args.stack_name,
        state_files=args.state_file,
        membership_ids=args.membership_id,
        region=args.region,
        settings=args.set,
    )
    render = verdict_markdown if args.format == "markdown" else verdict_text
    out.write(render(report.verdict, report.source) + "\n")
    return EXIT_PASSED if report.verdict.passed else EXIT_FAILED
