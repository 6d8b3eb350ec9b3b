"""``sir-membership`` (or ``python -m sir_membership``): argument handling only.

Reviewers approve change sets, and auditors ask whether the membership still
is what the stack declares. This module parses arguments, hands them to the
reads in ``commands``, renders the result with ``preview``'s renderers and
turns its status into the exit code. Planning is the function's own
(``request.decide``), so the preview cannot disagree with what the function
will do.

Exit codes: 0 nothing would change / no drift; 2 changes planned / drift
found; 1 an error, or the function would fail.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Sequence
from typing import NoReturn, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from . import __version__
from .commands import (
    FUNCTION_CONFIG,
    Clients,
    CliError,
    DriftReport,
    PlanReport,
    default_clients,
    one_line,
    run_drift,
    run_drift_offline,
    run_plan,
)
from .commands.aws import cloudformation_client as _cloudformation
from .commands.aws import security_ir_client as _security_ir
from .commands.check import add_parser as _add_check_parser
from .commands.check import main_check
from .commands.journal import run_journal
from .preview import EXIT_CHANGES, EXIT_CODES, EXIT_ERROR, EXIT_OK, RESOURCE_TYPE, PreviewError
from .preview.render_journal import journal_json, journal_text
from .preview.render_json import drift_json, plan_json
from .preview.render_markdown import drift_markdown, plan_markdown
from .preview.render_text import drift_text, plan_text

PROG = "sir-membership"
FORMATS = ("text", "json", "markdown")

__all__ = [
    "EXIT_CHANGES",
    "EXIT_CODES",
    "EXIT_ERROR",
    "EXIT_OK",
    "FUNCTION_CONFIG",
    "PROG",
    "Clients",
    "_cloudformation",
    "_security_ir",
    "main",
]


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which here would mean "changes planned"."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see {self.prog} --help)")


def _parser(*, strict: bool = True) -> _Parser:
    """The arguments; ``strict=False`` requires nothing, to find unknown ones first."""
    parser = _Parser(
        prog=PROG,
        description="Preview what a CloudFormation change set will do to a Security Incident "
        "Response membership, or find drift. Read-only. Exit 0: no change/drift; 2: changes "
        "planned or drift found; 1: error, or the function would fail.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=strict)
    plan = commands.add_parser(
        "plan",
        help="preview a change set's UpdateMembership calls",
        description="Preview the UpdateMembership calls the function will make when the change "
        "set executes. Online: --stack-name and --change-set-name (reads DescribeChangeSet and "
        "GetMembership). Offline: --change-set-file (the JSON of aws cloudformation "
        "describe-change-set --include-property-values) and optional --state-file(s) (the JSON of "
        "aws security-ir get-membership).",
    )
    source = plan.add_mutually_exclusive_group(required=strict)
    source.add_argument("--change-set-name", help="change set name or ARN")
    source.add_argument("--change-set-file", help="saved DescribeChangeSet JSON (page or list)")
    plan.add_argument(
        "--stack-name", help="stack name or id (not needed when the change set name is an ARN)"
    )
    plan.add_argument(
        "--state-file",
        action="append",
        default=[],
        help="saved GetMembership JSON (object or list); repeatable; offline only",
    )
    plan.add_argument(
        "--allowed-stack-names",
        metavar="GLOBS",
        help="the provider stack's AllowedStackNames, to check the stack as the function will "
        "(online the default is to read it from the provider function's configuration)",
    )
    plan.add_argument(
        "--pace",
        type=float,
        metavar="SECONDS",
        help="how long the service takes to apply an OU or coverage change, to estimate each "
        "change's duration (default: the pace the provider recorded, with --table-name)",
    )
    plan.add_argument(
        "--table-name",
        help="the provider stack's IdempotencyTableName output: read each membership's recorded "
        "pace (dynamodb:GetItem; online only)",
    )
    plan.add_argument(
        "--service-token",
        help="also preview custom resources with this ServiceToken (those sharing one with a "
        f"{RESOURCE_TYPE} are previewed anyway)",
    )
    _common(plan)
    drift = commands.add_parser(
        "drift",
        help="compare deployed declarations with the live memberships",
        description="Compare each deployed membership resource's declared properties (template + "
        "parameters) with GetMembership. OUs associated outside the stack are listed apart. "
        "Online: --stack-name. Offline: --properties-file and --state-file(s) (the JSON of aws "
        "security-ir get-membership), no AWS call.",
    )
    drift.add_argument("--stack-name", help="stack name or id (online)")
    drift.add_argument(
        "--properties-file",
        help="JSON properties to use instead of the template: one resource's, or by logical id",
    )
    drift.add_argument(
        "--state-file",
        action="append",
        default=[],
        help="saved GetMembership JSON (object or list); repeatable; offline, with "
        "--properties-file",
    )
    _common(drift)
    _add_check_parser(commands)
    journal = commands.add_parser(
        "journal",
        help="show what the provider recorded of one resource",
        description="Show a resource's declaration record and latest journal entry, as the "
        "provider's table holds them, masked. Reads DescribeStacks (unless --stack-name is a "
        "StackId) and dynamodb:GetItem on the table. Exit 0: shown; 1: nothing recorded, or an "
        "error.",
    )
    journal.add_argument("--stack-name", required=True, help="stack name or StackId (ARN)")
    journal.add_argument("--logical-id", required=True, help="the resource's logical id")
    journal.add_argument(
        "--table-name", required=True, help="the provider stack's IdempotencyTableName output"
    )
    journal.add_argument("--region", help="AWS region (default: the usual AWS configuration)")
    journal.add_argument("--format", choices=("text", "json"), default="text")
    journal.add_argument(
        "--show-sensitive",
        action="store_true",
        help="show the membership name and the team before the change (masked by default)",
    )
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--logical-id", help="only this resource")
    parser.add_argument("--region", help="AWS region (default: the usual AWS configuration)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (default), json, or markdown sized for a pull-request comment",
    )
    output.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )
    parser.add_argument(
        "--show-sensitive",
        action="store_true",
        help="show names, emails, job titles and the membership name (masked by default)",
    )


def _options(parser: argparse.ArgumentParser, command: str | None) -> list[str]:
    """The option strings valid for ``command`` (and the program's own)."""
    options = [o for a in parser._actions for o in a.option_strings]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            options += [o for a in action.choices[command]._actions for o in a.option_strings]
    return options


def _unknown(extras: Sequence[str], options: Sequence[str]) -> str:
    """The unknown arguments, named, each with the closest valid option."""
    flags = [e for e in extras if e.startswith("-")] or list(extras)
    named = []
    for flag in flags:
        name = flag.split("=", 1)[0]
        close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
        named.append(f"{name} (did you mean {close[0]}?)" if close else name)
    noun = "argument" if len(named) == 1 else "arguments"
    return f"unknown {noun}: {', '.join(named)}"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Unknown arguments first, so a mistyped flag is not reported as a missing required one."""
    loose = _parser(strict=False)
    try:
        known, extras = loose.parse_known_args(argv)
    except CliError:
        extras = []  # a bad value: the strict parse below names it
    else:
        if extras:
            raise CliError(
                f"{_unknown(extras, _options(loose, known.command))} (see {PROG} --help)"
            )
    return _parser().parse_args(argv)


def no_effect(args: argparse.Namespace) -> tuple[str, ...]:
    """The flags given that do nothing in this mode, each with why (warnings, not errors)."""
    out = []
    offline = {"plan": "change_set_file", "drift": "state_file"}.get(args.command)
    if offline and getattr(args, offline):
        if args.command == "plan" and args.stack_name:
            out.append(
                "--stack-name has no effect with --change-set-file: the file names its stack"
            )
        if args.command == "drift" and args.stack_name:
            out.append(
                "--stack-name has no effect offline (--state-file): it only names the report"
            )
        if args.region:
            out.append("--region has no effect offline: no AWS call is made")
    if args.command == "plan" and args.logical_id and args.service_token:
        out.append("--service-token has no effect with --logical-id, which picks the resource")
    return tuple(out)


def _run(args: argparse.Namespace, clients: Clients) -> PlanReport | DriftReport:
    if args.command == "plan":
        return run_plan(
            clients,
            change_set_file=args.change_set_file,
            change_set_name=args.change_set_name,
            stack_name=args.stack_name,
            state_files=args.state_file,
            logical_id=args.logical_id,
            service_token=args.service_token,
            region=args.region,
            allowed_stack_names=args.allowed_stack_names,
            pace=args.pace,
            table_name=args.table_name,
        )
    if args.state_file:
        if not args.properties_file:
            raise CliError("drift offline (--state-file) needs --properties-file too")
        return run_drift_offline(
            properties_file=args.properties_file,
            state_files=args.state_file,
            logical_id=args.logical_id,
            stack_name=args.stack_name,
        )
    if not args.stack_name:
        raise CliError(
            "drift needs --stack-name (online), or --properties-file and --state-file (offline)"
        )
    return run_drift(
        clients,
        stack_name=args.stack_name,
        logical_id=args.logical_id,
        properties_file=args.properties_file,
        region=args.region,
    )


def _journal(args: argparse.Namespace, clients: Clients) -> str:
    report = run_journal(
        clients,
        stack_name=args.stack_name,
        logical_id=args.logical_id,
        table_name=args.table_name,
        region=args.region,
    )
    document = journal_json(report, bool(args.show_sensitive))
    return json.dumps(document, indent=2) if args.format == "json" else journal_text(document)


def _render(report: PlanReport | DriftReport, output: str, show: bool) -> str:
    if isinstance(report, PlanReport):
        if output == "json":
            return json.dumps(plan_json(report.preview, report.source, show), indent=2)
        if output == "markdown":
            return plan_markdown(report.preview, report.source, show)
        return plan_text(report.preview, report.source, show)
    if output == "json":
        return json.dumps(drift_json(report.context, report.reports, show), indent=2)
    render = drift_markdown if output == "markdown" else drift_text
    return render(report.context.stack_name, report.region, report.reports, show)


def main(
    argv: Sequence[str] | None = None,
    *,
    clients: Clients | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one command; return the exit code."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        try:
            args = _parse(argv)
        except SystemExit as done:  # --help, --version
            return int(done.code or 0)
        if args.command == "journal":
            out.write(_journal(args, clients or default_clients()) + "\n")
            return EXIT_OK
        if args.command == "check":
            return main_check(args, clients or default_clients(), out)
        warnings = no_effect(args)
        report = _run(args, clients or default_clients())
        text = _render(report, args.format, bool(args.show_sensitive))
    except (CliError, PreviewError, BotoCoreError, ClientError) as error:
        err.write(f"{PROG}: error: {one_line(error)}\n")
        return EXIT_ERROR
    for warning in (*warnings, *getattr(report, "warnings", ())):
        err.write(f"{PROG}: warning: {warning}\n")
    out.write(text + "\n")
    for failure in report.failures:
        err.write(f"{PROG}: {failure}\n")
    return EXIT_CODES[report.status]
