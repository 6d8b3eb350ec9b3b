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
    run_plan,
)
from .commands.aws import cloudformation_client as _cloudformation
from .commands.aws import security_ir_client as _security_ir
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


def _parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Preview what a CloudFormation change set will do to a Security Incident "
        "Response membership, or find drift. Read-only. Exit 0: no change/drift; 2: changes "
        "planned or drift found; 1: error, or the function would fail.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser(
        "plan",
        help="preview a change set's UpdateMembership calls",
        description="Preview the UpdateMembership calls the function will make when the change "
        "set executes. Online: --stack-name and --change-set-name (reads DescribeChangeSet and "
        "GetMembership). Offline: --change-set-file (the JSON of aws cloudformation "
        "describe-change-set --include-property-values) and optional --state-file(s) (the JSON of "
        "aws security-ir get-membership).",
    )
    source = plan.add_mutually_exclusive_group(required=True)
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
        "--service-token",
        help="also preview custom resources with this ServiceToken (those sharing one with a "
        f"{RESOURCE_TYPE} are previewed anyway)",
    )
    _common(plan)
    drift = commands.add_parser(
        "drift",
        help="compare deployed declarations with the live memberships",
        description="Compare each deployed membership resource's declared properties (template + "
        "parameters) with GetMembership. OUs associated outside the stack are listed apart.",
    )
    drift.add_argument("--stack-name", required=True, help="stack name or id")
    drift.add_argument(
        "--properties-file",
        help="JSON properties to use instead of the template: one resource's, or by logical id",
    )
    _common(drift)
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
            args = _parser().parse_args(argv)
        except SystemExit as done:  # --help, --version
            return int(done.code or 0)
        if args.command == "journal":
            out.write(_journal(args, clients or default_clients()) + "\n")
            return EXIT_OK
        report = _run(args, clients or default_clients())
        text = _render(report, args.format, bool(args.show_sensitive))
    except (CliError, PreviewError, BotoCoreError, ClientError) as error:
        err.write(f"{PROG}: error: {one_line(error)}\n")
        return EXIT_ERROR
    out.write(text + "\n")
    for failure in report.failures:
        err.write(f"{PROG}: {failure}\n")
    return EXIT_CODES[report.status]
