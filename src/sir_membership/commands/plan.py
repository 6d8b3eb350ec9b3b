"""``plan``: read a change set (saved or live) and run it through the preview."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..membership import MembershipState, state_from_api
from ..preview import (
    Observed,
    Preview,
    check_ready,
    load_change_set,
    offline_lookup,
    preview,
    select,
)
from ..preview.tag_steps import ObservedTags
from .aws import (
    Clients,
    CliError,
    get_membership,
    list_tags,
    membership_service,
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
) -> PlanReport:
    """Offline from a saved change set (and states), or online from CloudFormation."""
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
        return PlanReport(preview(change_set, selection, lookup), source)
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

    result = preview(change_set, selection, live, live_tags)
    return PlanReport(result, f"read with GetMembership in {where}")
