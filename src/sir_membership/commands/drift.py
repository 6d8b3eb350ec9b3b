"""``drift``: read a deployed stack and compare each membership with its declaration."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import ClientError

from ..errors import InvalidProperties, MembershipError
from ..preview import (
    KNOWN_KEYS,
    RESOURCE_TYPE,
    Drift,
    StackContext,
    assess_drift,
    never_a_membership,
    parse_template,
    resolve_properties,
)
from ..preview.drift import declared_tags, drift_status
from ..service import MembershipService
from .aws import (
    Clients,
    CliError,
    get_membership,
    list_tags,
    membership_service,
    read_json,
    stack_missing,
)
from .plan import read_states


@dataclass(frozen=True)
class DriftReport:
    """Each selected resource's drift, and the stack it was read from."""

    context: StackContext
    region: str
    reports: tuple[Drift, ...]
    #: What the reader should know (stderr), e.g. a state file no resource uses.
    warnings: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """The stack's verdict: it decides the exit code."""
        return drift_status(self.reports)

    @property
    def failures(self) -> tuple[str, ...]:
        """One line per resource that could not be checked, for stderr."""
        return tuple(
            f"{d.logical_id}: {d.reason}"
            for d in self.reports
            if d.status in ("fail", "unresolved")
        )


def read_properties(path: str, logical_ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
    """One resource's properties, or properties by logical id."""
    document = read_json(path, "properties file")
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
        actual = get_membership(service, physical_id)
        actual_tags = None
        if _declares_tags(declared):
            actual_tags = list_tags(service, physical_id, actual.arn)
    except MembershipError as error:
        return Drift(logical_id, physical_id, "fail", reason=error.reason)
    return assess_drift(logical_id, physical_id, declared, actual, actual_tags)


def _declares_tags(declared: Mapping[str, Any]) -> bool:
    try:
        return declared_tags(declared) is not None
    except InvalidProperties:
        return False  # assess_drift reports it


def _stack_context(stack: Mapping[str, Any], name: str, resources: Sequence[Any]) -> StackContext:
    return StackContext(
        stack_id=str(stack.get("StackId", "")),
        stack_name=str(stack.get("StackName", name)),
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


def run_drift(
    clients: Clients,
    *,
    stack_name: str,
    logical_id: str | None = None,
    properties_file: str | None = None,
    region: str | None = None,
) -> DriftReport:
    """Declared properties (template + parameters, or a file) against GetMembership."""
    cloudformation = clients.cloudformation(region)
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name).get("Stacks") or []
    except ClientError as error:
        stack_missing(error, cloudformation, stack_name)
        raise
    if not stacks:
        raise CliError(f"stack {stack_name} was not found")
    resources: list[Mapping[str, Any]] = list(
        cloudformation.describe_stack_resources(StackName=stack_name).get("StackResources") or []
    )
    chosen = [
        r
        for r in resources
        if (
            r.get("LogicalResourceId") == logical_id
            if logical_id
            else r.get("ResourceType") == RESOURCE_TYPE
        )
    ]
    if not chosen:
        what = f"resource {logical_id}" if logical_id else f"{RESOURCE_TYPE} resource"
        raise CliError(f"stack {stack_name} has no {what}")
    logical_ids = [str(r.get("LogicalResourceId")) for r in chosen]
    given = read_properties(properties_file, logical_ids) if properties_file else {}
    context = _stack_context(stacks[0], stack_name, resources)
    cache: list[Mapping[str, Any]] = []

    def template() -> Mapping[str, Any]:
        if not cache:
            body = cloudformation.get_template(StackName=stack_name, TemplateStage="Processed").get(
                "TemplateBody"
            )
            cache.append(parse_template(body))
        return cache[0]

    where = str(context.pseudo("AWS::Region") or cloudformation.meta.region_name)
    service = membership_service(clients, where, str(context.pseudo("AWS::AccountId") or ""))
    reports = tuple(
        _drift_one(r, given.get(lid), template, context, service)
        for r, lid in zip(chosen, logical_ids, strict=True)
    )
    return DriftReport(context, where, reports)


#: Offline, the membership's tags are unknown: GetMembership output carries none.
TAGS_OFFLINE = (
    "Tags not compared: offline, the membership's tags are unknown (GetMembership output has "
    "none); run drift online to compare them"
)


def run_drift_offline(
    *,
    properties_file: str,
    state_files: Sequence[str],
    logical_id: str | None = None,
    stack_name: str | None = None,
) -> DriftReport:
    """Declared properties (a file) against saved GetMembership output: no AWS call.

    Each resource's membership is its declared ``MembershipId``; one whose
    state was not saved cannot be checked, and a saved state no resource
    declares is a warning (the file may be for another stack).
    """
    single = logical_id or "Membership"
    declared = read_properties(properties_file, [single])
    if logical_id is not None:
        declared = {k: v for k, v in declared.items() if k == logical_id}
        if not declared:
            raise CliError(f"properties file {properties_file} has no resource {logical_id}")
    if not declared:
        raise CliError(f"properties file {properties_file} holds no resource's properties")
    states = read_states(state_files)
    reports = []
    for lid, properties in declared.items():
        mid = properties.get("MembershipId")
        if not isinstance(mid, str) or not mid:
            reports.append(Drift(lid, "", "fail", reason="the properties declare no MembershipId"))
            continue
        if mid not in states:
            reports.append(
                Drift(
                    lid,
                    mid,
                    "fail",
                    reason=f"no saved state for membership {mid}: pass --state-file with the "
                    f"output of aws security-ir get-membership --membership-id {mid}",
                )
            )
            continue
        drift = assess_drift(lid, mid, properties, states[mid])
        if _declares_tags(properties):
            drift = replace(drift, notes=(*drift.notes, TAGS_OFFLINE))
        reports.append(drift)
    used = {str(p.get("MembershipId")) for p in declared.values()}
    warnings = tuple(
        f"--state-file ({', '.join(state_files)}) holds membership {mid}, which no resource in "
        f"{properties_file} declares: check the files are for the same stack"
        for mid in states
        if mid not in used
    )
    context = StackContext(stack_id="", stack_name=stack_name or properties_file)
    return DriftReport(context, "offline: saved GetMembership output", tuple(reports), warnings)
