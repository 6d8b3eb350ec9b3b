"""``plan``: read a change set (saved or live) and run it through the preview."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ..guard import is_function_arn
from ..membership import MembershipState, state_from_api
from ..pace import Pace
from ..pace_store import TablePaces
from ..preview import (
    OFFLINE_ASSUMED,
    OFFLINE_EMPTY,
    ChangeSet,
    Lookup,
    Observed,
    Preview,
    check_ready,
    load_change_set,
    offline_lookup,
    preview,
    select,
)
from ..preview.pacing import PaceLookup, with_paces
from ..preview.provider import ProviderPolicy, guard_notes, patterns_from, provider_guard
from ..preview.selection import Selection
from ..preview.tag_steps import ObservedTags, TagLookup
from .aws import (
    Clients,
    CliError,
    get_membership,
    list_tags,
    membership_service,
    one_line,
    read_allowed_stack_names,
    read_json,
    stack_missing,
)

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient


@dataclass(frozen=True)
class PlanReport:
    """The preview and where its membership states came from."""

    preview: Preview
    source: str
    #: Not errors, but what the reader should know (stderr): e.g. an unused state file.
    warnings: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """The worst resource's status: it decides the exit code."""
        return self.preview.status

    @property
    def failures(self) -> tuple[str, ...]:
        """One line per step the function would fail, for stderr."""
        return tuple(
            f"{s.logical_id}: {s.reason}" for s in self.preview.steps if s.status == "fail"
        )


def read_states(paths: Sequence[str]) -> dict[str, MembershipState]:
    """Saved GetMembership output (objects or lists of them), by membership id."""
    states: dict[str, MembershipState] = {}
    for path in paths:
        document = read_json(path, "state file")
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


def describe_change_set(
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
            stack_missing(error, client, stack)
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


def service_tokens(selection: Selection) -> tuple[str, ...]:
    """The provider functions the selected resources are served by (function ARNs only)."""
    tokens = [
        (props or {}).get("ServiceToken")
        for target in selection.targets
        for props in (target.after, target.before)
    ]
    return tuple(dict.fromkeys(t for t in tokens if isinstance(t, str) and is_function_arn(t)))


def provider_policies(
    tokens: Sequence[str], given: str | None, read: Clients | None
) -> dict[str, ProviderPolicy]:
    """Each provider's AllowedStackNames: given, read from the function (``read``), or unknown."""
    policies = {}
    for token in tokens:
        if given is not None:
            policies[token] = ProviderPolicy(patterns_from(given), "from --allowed-stack-names")
        elif read is None:
            policies[token] = ProviderPolicy(None, "offline")
        else:
            value, source = read_allowed_stack_names(read, token)
            patterns = patterns_from(value) if value is not None else None
            policies[token] = ProviderPolicy(patterns, source)
    return policies


def unused_states(
    paths: Sequence[str], saved: Mapping[str, MembershipState], result: Preview
) -> tuple[str, ...]:
    """A warning per saved membership no resource uses, and per one planned without a state.

    A state file for another membership (or stack) would otherwise be
    silently unused, and the plan would rest on an assumed state.
    """
    declared = {
        str(value)
        for resource in result.resources
        for value in (
            resource.target.physical_id,
            (resource.target.after or {}).get("MembershipId"),
            (resource.target.before or {}).get("MembershipId"),
        )
        if value
    }
    warnings = [
        f"--state-file ({', '.join(paths)}) holds membership {mid}, which no previewed "
        "resource uses: check the file is for this stack"
        for mid in saved
        if mid not in declared
    ]
    assumed = {
        s.membership_id
        for s in result.steps
        if s.membership_id and s.source in (OFFLINE_ASSUMED, OFFLINE_EMPTY)
    }
    warnings += [
        f"membership {mid} is in no --state-file: the plan assumes its state (see [state: ...])"
        for mid in sorted(m for m in assumed if m is not None)
    ]
    return tuple(warnings)


def run_plan(
    clients: Clients,
    *,
    change_set_file: str | None = None,
    change_set_name: str | None = None,
    stack_name: str | None = None,
    state_files: Sequence[str] = (),
    logical_id: str | None = None,
    service_token: str | None = None,
    region: str | None = None,
    allowed_stack_names: str | None = None,
    pace: float | None = None,
    table_name: str | None = None,
) -> PlanReport:
    """Offline from a saved change set (and states), or online from CloudFormation.

    Either way each request first meets the provider's guard as far as it is
    known (``preview.provider``): online, AllowedStackNames is read from the
    provider function unless ``allowed_stack_names`` is given. With a pace
    (``pace`` seconds, or each membership's as the table ``table_name``
    records it) each change shows how long its calls take.
    """
    paces = pace_lookup(clients, pace, table_name, region, online=not change_set_file)
    report = _run_plan(
        clients,
        change_set_file=change_set_file,
        change_set_name=change_set_name,
        stack_name=stack_name,
        state_files=state_files,
        logical_id=logical_id,
        service_token=service_token,
        region=region,
        allowed_stack_names=allowed_stack_names,
    )
    if paces is None:
        return report
    return replace(report, preview=with_paces(report.preview, paces))


def pace_lookup(
    clients: Clients,
    pace: float | None,
    table_name: str | None,
    region: str | None,
    *,
    online: bool,
) -> PaceLookup | None:
    """Where each membership's pace comes from: ``--pace``, the provider's table, or nowhere."""
    if pace is not None:
        if not 0 < pace <= 3600:
            raise CliError("--pace must be a number of seconds between 0 and 3600")
        given = (Pace(window=pace), "given with --pace")
        return lambda _membership_id: given
    if table_name is None:
        return None
    if not online:
        raise CliError(
            "--table-name reads the provider's table: online only (offline, pass --pace SECONDS)"
        )
    book = TablePaces(clients.dynamodb(region), table_name)

    def recorded(membership_id: str) -> tuple[Pace, str] | None:
        try:
            found = book.read_pace(membership_id)
        except (ClientError, BotoCoreError) as error:
            raise CliError(
                f"cannot read the pace of membership {membership_id} in table {table_name}: "
                f"{one_line(error)}; the credentials running this command need "
                "dynamodb:GetItem on it"
            ) from None
        if found is None or not found.known:
            return None
        return found, f"recorded in table {table_name}"

    return recorded


def _run_plan(
    clients: Clients,
    *,
    change_set_file: str | None,
    change_set_name: str | None,
    stack_name: str | None,
    state_files: Sequence[str],
    logical_id: str | None,
    service_token: str | None,
    region: str | None,
    allowed_stack_names: str | None,
) -> PlanReport:
    if change_set_file:
        change_set = load_change_set(read_json(change_set_file, "change set file"))
        check_ready(change_set)
        selection = select(change_set, logical_id=logical_id, service_token=service_token)
        saved = read_states(state_files)
        lookup = offline_lookup(selection, saved)
        source = (
            "from the state file(s) where saved; otherwise assumed"
            if saved
            else "no --state-file: each membership is assumed to be as the old declaration "
            "(BeforeContext) says; a membership new to the stack is assumed empty, with no OUs"
        )
        policies = provider_policies(service_tokens(selection), allowed_stack_names, None)
        result = _guarded(change_set, selection, lookup, policies)
        warnings = unused_states(state_files, saved, result) if saved else ()
        return PlanReport(result, source, warnings)
    if state_files:
        raise CliError("--state-file is for --change-set-file (offline) only")
    if not stack_name and not str(change_set_name).startswith("arn:"):
        raise CliError("--stack-name is needed unless --change-set-name is the change set's ARN")
    cloudformation = clients.cloudformation(region)
    change_set = load_change_set(
        describe_change_set(cloudformation, stack_name, str(change_set_name))
    )
    selection = select(change_set, logical_id=logical_id, service_token=service_token)
    where = change_set.region or cloudformation.meta.region_name
    service = membership_service(clients, where, change_set.account_id)
    read = f"GetMembership in {where}"

    def live(membership_id: str) -> Observed:
        return Observed(get_membership(service, membership_id), read)

    def live_tags(membership_id: str, arn: str) -> ObservedTags:
        return ObservedTags(
            list_tags(service, membership_id, arn), f"ListTagsForResource in {where}"
        )

    policies = provider_policies(service_tokens(selection), allowed_stack_names, clients)
    result = _guarded(change_set, selection, live, policies, live_tags)
    return PlanReport(result, f"read with GetMembership in {where}")


def _guarded(
    change_set: ChangeSet,
    selection: Selection,
    lookup: Lookup,
    policies: Mapping[str, ProviderPolicy],
    tag_lookup: TagLookup | None = None,
) -> Preview:
    """The preview with the provider's guard first, and a note on what it checked."""
    result = preview(change_set, selection, lookup, tag_lookup, provider_guard(policies))
    return replace(result, notes=(*guard_notes(policies), *result.notes))
