"""``python -m sir_membership``: see what a change set will do to the membership, or drift.

Reviewers approve change sets, and auditors ask whether the membership still
is what the stack declares. This module is only the shell around
``preview``: it reads (DescribeChangeSet, GetTemplate, DescribeStacks,
DescribeStackResources, GetMembership; never a write), and prints. Planning
is the function's own (``request.decide``), so the preview cannot disagree
with what the function will do.

Exit codes: 0 nothing would change / no drift; 2 changes planned / drift
found; 1 an error, or the function would fail.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from .errors import MembershipError, PermissionDenied
from .membership import MembershipState, state_from_api
from .plan import UpdateRequest
from .preview import (
    KNOWN_KEYS,
    RESOURCE_TYPE,
    Drift,
    Observed,
    Preview,
    PreviewError,
    ResourcePreview,
    StackContext,
    Step,
    assess_drift,
    check_ready,
    load_change_set,
    never_a_membership,
    offline_lookup,
    parse_template,
    preview,
    resolve_properties,
    select,
)
from .service import MembershipService

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_security_ir import SecurityIncidentResponseClient

PROG = "python -m sir_membership"
EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2
EXIT_CODES: Mapping[str, int] = {
    "skip": EXIT_OK,
    "no-change": EXIT_OK,
    "in-sync": EXIT_OK,
    "change": EXIT_CHANGES,
    "unresolved": EXIT_CHANGES,
    "drifted": EXIT_CHANGES,
    "fail": EXIT_ERROR,
}
PLAN_VERDICTS = {
    EXIT_OK: "no change to any membership (exit 0)",
    EXIT_CHANGES: "changes planned (exit 2)",
    EXIT_ERROR: "the function would fail (exit 1)",
}
#: Seconds the reads may take, retries included (MembershipService's deadline).
READ_BUDGET_SECONDS = 120.0
#: The Lambda function's security-ir client configuration (app.SECURITY_IR),
#: so reads time out and retry as the function's do; a test keeps them equal.
FUNCTION_CONFIG = Config(
    connect_timeout=3,
    read_timeout=10,
    retries={"total_max_attempts": 1, "mode": "standard"},
    user_agent_extra="sir-membership",
)
CLOUDFORMATION_CONFIG = Config(
    retries={"total_max_attempts": 5, "mode": "standard"}, user_agent_extra="sir-membership-cli"
)


class CliError(Exception):
    """A one-line reason to stop (exit 1)."""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which here would mean "changes planned"."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see {self.prog} --help)")


@dataclass(frozen=True)
class Clients:
    """Where the AWS clients come from (a region or None), so tests hand in stubbed ones."""

    cloudformation: Callable[[str | None], CloudFormationClient]
    security_ir: Callable[[str | None], SecurityIncidentResponseClient]


def _cloudformation(region: str | None) -> CloudFormationClient:
    return boto3.client("cloudformation", region_name=region, config=CLOUDFORMATION_CONFIG)


def _security_ir(region: str | None) -> SecurityIncidentResponseClient:
    return boto3.client("security-ir", region_name=region, config=FUNCTION_CONFIG)


def default_clients() -> Clients:
    """Real boto3 clients: the default credential chain (AWS_PROFILE, environment, SSO...)."""
    return Clients(_cloudformation, _security_ir)


def _parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Preview what a CloudFormation change set will do to a Security Incident "
        "Response membership, or find drift. Read-only. Exit 0: no change/drift; 2: changes "
        "planned or drift found; 1: error, or the function would fail.",
    )
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
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--logical-id", help="only this resource")
    parser.add_argument("--region", help="AWS region (default: the usual AWS configuration)")
    parser.add_argument("--json", action="store_true", help="print a JSON document")
    parser.add_argument(
        "--show-sensitive",
        action="store_true",
        help="show names, emails, job titles and the membership name (masked by default)",
    )


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
        except SystemExit as done:  # --help
            return int(done.code or 0)
        command = _plan if args.command == "plan" else _drift
        document, text, failures = command(args, clients or default_clients())
    except (CliError, PreviewError, BotoCoreError, ClientError) as error:
        err.write(f"{PROG}: error: {_one_line(error)}\n")
        return EXIT_ERROR
    out.write((json.dumps(document, indent=2) if args.json else text) + "\n")
    for failure in failures:
        err.write(f"{PROG}: {failure}\n")
    return EXIT_CODES[str(document["status"])]


def _one_line(error: Exception) -> str:
    """What went wrong and what to do, without a traceback."""
    if isinstance(error, NoCredentialsError):
        return "no AWS credentials found: set AWS_PROFILE or credentials in the environment"
    if isinstance(error, NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION"
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        return f"{error.operation_name} failed: {info.get('Code', '?')}: {info.get('Message', '')}"
    if isinstance(error, BotoCoreError):
        return f"AWS call failed: {error}"
    return str(error)


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as error:
        raise CliError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise CliError(f"{what} {path} is not JSON: {error}") from None


def _deadline(seconds: float) -> Callable[[], float]:
    end = time.monotonic() + seconds
    return lambda: end - time.monotonic()


def _get(service: MembershipService, membership_id: str) -> MembershipState:
    """GetMembership as the person previewing: a denial is theirs, not the function's role's."""
    try:
        return service.get(membership_id)
    except PermissionDenied:
        raise PermissionDenied(
            f"Access denied for security-ir:GetMembership on membership {membership_id} to the "
            "credentials running this preview: allow it, or preview offline with "
            "--change-set-file and --state-file"
        ) from None


def _api(request: UpdateRequest, show_sensitive: bool) -> dict[str, Any]:
    return request.to_api() if show_sensitive else request.masked()


# -- plan ----------------------------------------------------------------------


def _read_states(paths: Sequence[str]) -> dict[str, MembershipState]:
    states: dict[str, MembershipState] = {}
    for path in paths:
        document = _read_json(path, "state file")
        for item in document if isinstance(document, list) else [document]:
            if not isinstance(item, Mapping) or not item.get("membershipId"):
                raise CliError(
                    f"state file {path}: expected GetMembership output (an object with "
                    "membershipId) or a list of them"
                )
            try:
                states[str(item["membershipId"])] = state_from_api(item)
            except (KeyError, TypeError, ValueError, AttributeError):
                raise CliError(
                    f"state file {path}: membership {item['membershipId']} is not GetMembership "
                    "output (a responder or feature lacks a field)"
                ) from None
    return states


def _stack_missing(error: ClientError, client: CloudFormationClient, stack: str | None) -> None:
    """CloudFormation's "Stack [x] does not exist" (a ValidationError), naming the region."""
    info = error.response.get("Error", {})
    if info.get("Code") == "ValidationError" and "does not exist" in str(info.get("Message")):
        what = f"stack {stack}" if stack else "the change set's stack"
        raise CliError(
            f"{what} does not exist in {client.meta.region_name}: check "
            "--stack-name and --region (the stack's region, where its change sets live)"
        ) from None


def _describe_change_set(
    client: CloudFormationClient, stack: str | None, name: str
) -> list[dict[str, Any]]:
    """Every page, stopping at the first if the change set is not ready."""
    params: dict[str, Any] = {"ChangeSetName": name, "IncludePropertyValues": True}
    if stack:
        params["StackName"] = stack
    pages: list[dict[str, Any]] = []
    while True:
        try:
            page: dict[str, Any] = dict(client.describe_change_set(**params))
        except ClientError as error:
            _stack_missing(error, client, stack)
            if error.response.get("Error", {}).get("Code") == "ChangeSetNotFound":
                where = f"stack {stack}" if stack else "its stack"
                raise CliError(
                    f"change set {name} was not found for {where} in "
                    f"{client.meta.region_name}: check --stack-name, --change-set-name and "
                    "--region"
                ) from None
            raise
        page.pop("ResponseMetadata", None)
        if not pages:
            check_ready(load_change_set({k: v for k, v in page.items() if k != "NextToken"}))
        pages.append(page)
        token = page.get("NextToken")
        if not token:
            return pages
        params["NextToken"] = token


def _plan(args: argparse.Namespace, clients: Clients) -> tuple[dict[str, Any], str, list[str]]:
    if args.change_set_file:
        change_set = load_change_set(_read_json(args.change_set_file, "change set file"))
        check_ready(change_set)
        selection = select(change_set, logical_id=args.logical_id, service_token=args.service_token)
        saved = _read_states(args.state_file)
        lookup = offline_lookup(selection, saved)
        source = (
            "from the state file(s) where saved; otherwise assumed"
            if saved
            else "no --state-file: each membership is assumed to be as the old declaration "
            "(BeforeContext) says; a membership new to the stack is assumed empty, with no OUs"
        )
    else:
        if args.state_file:
            raise CliError("--state-file is for --change-set-file (offline) only")
        if not args.stack_name and not str(args.change_set_name).startswith("arn:"):
            raise CliError(
                "--stack-name is needed unless --change-set-name is the change set's ARN"
            )
        cloudformation = clients.cloudformation(args.region)
        change_set = load_change_set(
            _describe_change_set(cloudformation, args.stack_name, args.change_set_name)
        )
        selection = select(change_set, logical_id=args.logical_id, service_token=args.service_token)
        region = change_set.region or cloudformation.meta.region_name
        service = MembershipService(
            clients.security_ir(region),
            _deadline(READ_BUDGET_SECONDS),
            account_id=change_set.account_id,
            region=region,
        )
        where = f"GetMembership in {region}"

        def lookup(membership_id: str) -> Observed:
            return Observed(_get(service, membership_id), where)

        source = f"read with GetMembership in {region}"
    result = preview(change_set, selection, lookup)
    failures = [f"{s.logical_id}: {s.reason}" for s in result.steps if s.status == "fail"]
    show = bool(args.show_sensitive)
    return _plan_json(result, source, show), _plan_text(result, source, show), failures


def _step_json(step: Step, show: bool) -> dict[str, Any]:
    plan = step.plan
    return {
        "requestType": step.request.request_type,
        "physicalResourceId": step.request.physical_id,
        "membershipId": step.membership_id,
        "cleanup": step.cleanup,
        "replacement": step.replacement,
        "status": step.status,
        "reason": step.reason,
        "stateSource": step.source,
        "changes": [{"property": c.property, "detail": c.detail} for c in plan.changes]
        if plan
        else [],
        "organizationalUnitsToAdd": list(plan.ous_to_add) if plan else [],
        "organizationalUnitsToRemove": list(plan.ous_to_remove) if plan else [],
        "requests": [_api(r, show) for r in step.requests],
    }


def _plan_json(result: Preview, source: str, show: bool) -> dict[str, Any]:
    cs = result.change_set
    return {
        "command": "plan",
        "status": result.status,
        "changeSet": {
            "name": cs.name,
            "stackName": cs.stack_name,
            "stackId": cs.stack_id,
            "status": cs.status,
            "executionStatus": cs.execution_status,
        },
        "stateSource": source,
        "notes": list(result.notes),
        "resources": [
            {
                "logicalId": r.target.logical_id,
                "resourceType": r.target.resource_type,
                "action": r.target.action,
                "physicalResourceId": r.target.physical_id,
                "replacement": any(s.replacement for s in r.steps),
                "cloudFormationReplacement": r.target.replacement,
                "policyAction": r.target.policy_action,
                "status": r.status,
                "notes": list(r.notes),
                "declaredChanges": [c.to_json(show) for c in r.declared],
                "steps": [_step_json(s, show) for s in r.steps],
            }
            for r in result.resources
        ],
        "updateMembershipRequests": [_api(r, show) for r in result.requests],
        "ignored": [
            {
                "logicalId": i.logical_id,
                "resourceType": i.resource_type,
                "action": i.action,
                "customResource": i.custom,
            }
            for i in result.ignored
        ],
    }


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[" + ", ".join(value) + "]"
    return json.dumps(value, separators=(",", ":"))


def _call_line(api: Mapping[str, Any], show: bool) -> str:
    """One call on one line; a masked team is only counted (``--json`` has it in full)."""
    parts = []
    for key, value in api.items():
        if key == "incidentResponseTeam" and not show:
            parts.append(f"{key}=[{len(value)} responders, masked]")
        elif key == "membershipAccountsConfigurationsUpdate" and isinstance(value, Mapping):
            parts += [f"{k}={_value(v)}" for k, v in value.items()]
        else:
            parts.append(f"{key}={_value(value)}")
    return " ".join(parts)


def _action_label(resource: ResourcePreview) -> str:
    if any(s.replacement for s in resource.steps):
        return f"{resource.target.action} (replacement)"
    return resource.target.action


def _result_label(resource: ResourcePreview) -> str:
    status = resource.status
    calls = sum(len(s.requests) for s in resource.steps)
    return {
        "fail": "FAILS (reason below)",
        "change": f"{calls} UpdateMembership call{'s' if calls != 1 else ''}",
        "no-change": "no call: already as declared",
        "skip": "no call",
        "unresolved": "unknown until the change set executes",
    }[status]


def _memberships(resource: ResourcePreview) -> str:
    ids = [s.membership_id or s.request.physical_id for s in resource.steps]
    return " / ".join(dict.fromkeys(i for i in ids if i)) or "-"


def _step_lines(step: Step, show: bool) -> list[str]:
    kind = step.request.request_type + (" (cleanup)" if step.cleanup else "")
    target = step.membership_id or step.request.physical_id or "-"
    head = f"  {kind} {target}"
    if step.source:
        head += f" [state: {step.source}]"
    lines = [head]
    if step.status in ("skip", "fail", "unresolved"):
        label = {"skip": "no call", "fail": "FAILS", "unresolved": "UNRESOLVED"}[step.status]
        return [*lines, f"    {label}: {step.reason}" if step.reason else f"    {label}"]
    plan = step.plan
    if plan is None or not plan.requests:
        return [*lines, "    no call: the membership is already as declared"]
    lines += _table([(f"    {c.property}", c.detail) for c in plan.changes])
    if plan.ous_to_add:
        lines.append("      OUs to add:    " + ", ".join(plan.ous_to_add))
    if plan.ous_to_remove:
        lines.append("      OUs to remove: " + ", ".join(plan.ous_to_remove))
    lines.append("    UpdateMembership calls, in order:")
    lines += [
        f"      {i}. {_call_line(_api(r, show), show)}" for i, r in enumerate(plan.requests, 1)
    ]
    return lines


def _resource_lines(resource: ResourcePreview, show: bool) -> list[str]:
    target = resource.target
    head = f"{target.logical_id} ({target.resource_type}): {_action_label(resource)}"
    if target.replacement:
        head += f"; CloudFormation Replacement: {target.replacement}"
    lines = [head]
    if resource.declared:
        lines.append(
            "  Declared properties, new in the template:"
            if target.action == "Add"
            else "  Declared properties, old -> new template (not the live state):"
        )
        rows = []
        for change in resource.declared:
            rows.append((f"    {change.key}", change.summary()))
            if show and "hidden" in change.summary():
                rows.append(("", f"{_value(change.before)} -> {_value(change.after)}"))
        lines += _table(rows)
    for step in resource.steps:
        lines += _step_lines(step, show)
    lines += [f"  Note: {note}" for note in resource.notes]
    return lines


def _plan_text(result: Preview, source: str, show: bool) -> str:
    cs = result.change_set
    status = ", ".join(s for s in (cs.status, cs.execution_status) if s) or "status unknown"
    lines = [f"Change set {cs.name} on stack {cs.stack_name or '?'} ({status})"]
    lines.append(f"Membership state: {source}")
    lines += [f"Note: {note}" for note in result.notes]
    rows = [("LOGICAL ID", "ACTION", "MEMBERSHIP", "RESULT")]
    rows += [
        (r.target.logical_id, _action_label(r), _memberships(r), _result_label(r))
        for r in result.resources
    ]
    lines += ["", *_table(rows)]
    for resource in result.resources:
        lines += ["", *_resource_lines(resource, show)]
    if result.ignored:
        ignored = ", ".join(
            f"{i.logical_id} ({i.resource_type} {i.action})" for i in result.ignored
        )
        lines += ["", f"Not memberships, not previewed: {ignored}"]
        if any(i.custom for i in result.ignored):
            lines.append(
                "  (custom resources among them: pass --service-token or --logical-id to "
                "preview one as a membership)"
            )
    if not show:
        lines += [
            "",
            "Names, emails, job titles and the membership name are masked "
            "(--show-sensitive shows them).",
        ]
    verdict = PLAN_VERDICTS[EXIT_CODES[result.status]]
    lines += ["", f"Result: {verdict}"]
    return "\n".join(lines)


# -- drift ---------------------------------------------------------------------


def _read_properties(path: str, logical_ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
    """One resource's properties, or properties by logical id."""
    document = _read_json(path, "properties file")
    if isinstance(document, Mapping) and isinstance(document.get("Properties"), Mapping):
        document = document["Properties"]
    if not isinstance(document, Mapping):
        raise CliError(f"properties file {path}: expected a JSON object")
    if any(key in KNOWN_KEYS for key in document):
        if len(logical_ids) != 1:
            raise CliError(
                f"properties file {path} holds one resource's properties but "
                f"{len(logical_ids)} memberships are selected: pass --logical-id"
            )
        return {logical_ids[0]: document}
    return {str(k): v for k, v in document.items() if isinstance(v, Mapping)}


def _drift_one(
    resource: Mapping[str, Any],
    declared: Mapping[str, Any] | None,
    template: Callable[[], Mapping[str, Any]],
    context: StackContext,
    service: MembershipService,
) -> Drift:
    logical_id = str(resource.get("LogicalResourceId", ""))
    physical_id = str(resource.get("PhysicalResourceId") or "")
    if never_a_membership(physical_id):
        return Drift(
            logical_id,
            physical_id,
            "fail",
            reason=f"the resource never became a membership (physical id {physical_id or 'none'}"
            f", status {resource.get('ResourceStatus', '?')})",
        )
    if declared is None:
        resolved = resolve_properties(template(), logical_id, context)
        if resolved.unresolved:
            return Drift(
                logical_id,
                physical_id,
                "unresolved",
                reason=f"cannot resolve {'; '.join(resolved.unresolved)}: pass --properties-file "
                "with the properties as deployed",
            )
        declared = resolved.properties
    try:
        actual = _get(service, physical_id)
    except MembershipError as error:
        return Drift(logical_id, physical_id, "fail", reason=error.reason)
    return assess_drift(logical_id, physical_id, declared, actual)


def _drift(args: argparse.Namespace, clients: Clients) -> tuple[dict[str, Any], str, list[str]]:
    cloudformation = clients.cloudformation(args.region)
    try:
        stacks = cloudformation.describe_stacks(StackName=args.stack_name).get("Stacks") or []
    except ClientError as error:
        _stack_missing(error, cloudformation, args.stack_name)
        raise
    if not stacks:
        raise CliError(f"stack {args.stack_name} was not found")
    stack: Mapping[str, Any] = stacks[0]
    resources: list[Mapping[str, Any]] = list(
        cloudformation.describe_stack_resources(StackName=args.stack_name).get("StackResources")
        or []
    )
    chosen = [
        r
        for r in resources
        if (
            r.get("LogicalResourceId") == args.logical_id
            if args.logical_id
            else r.get("ResourceType") == RESOURCE_TYPE
        )
    ]
    if not chosen:
        what = f"resource {args.logical_id}" if args.logical_id else f"{RESOURCE_TYPE} resource"
        raise CliError(f"stack {args.stack_name} has no {what}")
    logical_ids = [str(r.get("LogicalResourceId")) for r in chosen]
    given = _read_properties(args.properties_file, logical_ids) if args.properties_file else {}
    context = StackContext(
        stack_id=str(stack.get("StackId", "")),
        stack_name=str(stack.get("StackName", args.stack_name)),
        parameters={
            str(p.get("ParameterKey")): str(p.get("ResolvedValue") or p.get("ParameterValue", ""))
            for p in stack.get("Parameters") or ()
        },
        physical_ids={
            str(r.get("LogicalResourceId")): str(r.get("PhysicalResourceId"))
            for r in resources
            if r.get("PhysicalResourceId")
        },
        notification_arns=tuple(stack.get("NotificationARNs") or ()),
    )
    cache: list[Mapping[str, Any]] = []

    def template() -> Mapping[str, Any]:
        if not cache:
            body = cloudformation.get_template(
                StackName=args.stack_name, TemplateStage="Processed"
            ).get("TemplateBody")
            cache.append(parse_template(body))
        return cache[0]

    region = str(context.pseudo("AWS::Region") or cloudformation.meta.region_name)
    service = MembershipService(
        clients.security_ir(region),
        _deadline(READ_BUDGET_SECONDS),
        account_id=str(context.pseudo("AWS::AccountId") or ""),
        region=region,
    )
    reports = [
        _drift_one(r, given.get(lid), template, context, service)
        for r, lid in zip(chosen, logical_ids, strict=True)
    ]
    show = bool(args.show_sensitive)
    status = _drift_status(reports)
    document = {
        "command": "drift",
        "status": status,
        "stackName": context.stack_name,
        "stackId": context.stack_id,
        "resources": [_drift_json(d, show) for d in reports],
    }
    failures = [
        f"{d.logical_id}: {d.reason}" for d in reports if d.status in ("fail", "unresolved")
    ]
    return document, _drift_text(context, region, reports, status, show), failures


def _drift_status(reports: Sequence[Drift]) -> str:
    if any(d.status in ("fail", "unresolved") for d in reports):
        return "fail"
    return "drifted" if any(d.status == "drifted" for d in reports) else "in-sync"


def _drift_json(drift: Drift, show: bool) -> dict[str, Any]:
    return {
        "logicalId": drift.logical_id,
        "physicalResourceId": drift.physical_id,
        "status": drift.status,
        "reason": drift.reason,
        "differences": [{"property": c.property, "detail": c.detail} for c in drift.differences],
        "organizationalUnitsNotAssociated": list(drift.ous_missing),
        "organizationalUnitsOutsideStack": list(drift.ous_outside),
        "notes": list(drift.notes),
        "requests": [_api(r, show) for r in drift.requests],
    }


def _drift_text(
    context: StackContext, region: str, reports: Sequence[Drift], status: str, show: bool
) -> str:
    lines = [f"Stack {context.stack_name} ({region}): {len(reports)} membership resource(s)", ""]
    labels = {
        "in-sync": "in sync",
        "drifted": "drifted",
        "unresolved": "cannot tell (see below)",
        "fail": "FAILS (see below)",
    }
    rows = [("LOGICAL ID", "MEMBERSHIP", "RESULT")]
    rows += [(d.logical_id, d.physical_id or "-", labels[d.status]) for d in reports]
    lines += _table(rows)
    for drift in reports:
        lines += ["", f"{drift.logical_id} -> {drift.physical_id or '-'}: {labels[drift.status]}"]
        if drift.reason:
            lines.append(f"  {drift.reason}")
        lines += _table([(f"  {c.property}", c.detail) for c in drift.differences])
        if drift.ous_missing:
            lines.append("    declared, not associated: " + ", ".join(drift.ous_missing))
        if drift.ous_outside:
            lines.append(
                "  Associated outside the stack (informational; the resource never removes "
                "them): " + ", ".join(drift.ous_outside)
            )
        lines += [f"  Note: {note}" for note in drift.notes]
        if drift.requests:
            lines.append(
                "  Calls that restore the declaration (the function sends them on this "
                "resource's next Update):"
            )
            lines += [
                f"    {i}. {_call_line(_api(r, show), show)}"
                for i, r in enumerate(drift.requests, 1)
            ]
    verdict = {
        "in-sync": "no drift (exit 0)",
        "drifted": "drift found (exit 2)",
        "fail": "drift could not be checked for every resource (exit 1)",
    }[status]
    lines += ["", f"Result: {verdict}"]
    return "\n".join(lines)
