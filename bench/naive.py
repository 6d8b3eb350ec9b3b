"""The handler a user would otherwise write (the baseline the bench compares against).

A plausible, working custom resource: a module-level boto3 client and a
cfnresponse-style answer. On Create and Update it sends every declared field
(name, team, features, coverEntireOrganization) without reading the
membership, plus the OU difference between the new and the old declaration
(``new - old`` added, ``old - new`` removed), five OUs per list as the API
allows. Adds and removes go in separate calls; the declared fields ride in
the first call. On Delete it removes the declared OUs when asked to
(``OnDelete: RemoveOrganizationalUnits``) and otherwise does nothing.

It does no duplicate-delivery protection and returns no attributes (those
would need a GetMembership). boto3's default retry mode handles throttling.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import boto3

BATCH = 5
CLIENT = boto3.client("security-ir")


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _chunks(items: Sequence[str], size: int = BATCH) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _team(raw: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    team = []
    for responder in raw:
        item: dict[str, Any] = {
            "name": responder["Name"],
            "jobTitle": responder["JobTitle"],
            "email": responder["Email"],
        }
        if "CommunicationPreferences" in responder:
            item["communicationPreferences"] = list(responder["CommunicationPreferences"])
        team.append(item)
    return team


def update_requests(
    new: Mapping[str, Any], old: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The UpdateMembership calls for a Create (``old`` None) or an Update."""
    membership_id = new["MembershipId"]
    fields: dict[str, Any] = {}
    if "MembershipName" in new:
        fields["membershipName"] = new["MembershipName"]
    if "IncidentResponseTeam" in new:
        fields["incidentResponseTeam"] = _team(new["IncidentResponseTeam"])
    if "OptInFeatures" in new:
        fields["optInFeatures"] = [
            {"featureName": f["FeatureName"], "isEnabled": _bool(f["IsEnabled"])}
            for f in new["OptInFeatures"]
        ]
    accounts: dict[str, Any] = {}
    if "CoverEntireOrganization" in new:
        accounts["coverEntireOrganization"] = _bool(new["CoverEntireOrganization"])

    new_ous = list(new.get("OrganizationalUnits") or [])
    old_ous = list((old or {}).get("OrganizationalUnits") or [])
    if old is not None and old.get("MembershipId") != membership_id:
        old_ous = []  # a different membership: nothing of the old one to remove here
    adds = [ou for ou in new_ous if ou not in set(old_ous)]
    removes = [ou for ou in old_ous if ou not in set(new_ous)]
    ou_changes = [{"organizationalUnitsToAdd": batch} for batch in _chunks(adds)]
    ou_changes += [{"organizationalUnitsToRemove": batch} for batch in _chunks(removes)]

    requests = []
    for index, change in enumerate(ou_changes or [{}]):
        request: dict[str, Any] = {"membershipId": membership_id}
        update = dict(change)
        if index == 0:
            request.update(fields)
            update = {**accounts, **update}
        if update:
            request["membershipAccountsConfigurationsUpdate"] = update
        requests.append(request)
    return requests


def delete_requests(props: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The UpdateMembership calls for a Delete."""
    if props.get("OnDelete") != "RemoveOrganizationalUnits":
        return []
    return [
        {
            "membershipId": props["MembershipId"],
            "membershipAccountsConfigurationsUpdate": {"organizationalUnitsToRemove": batch},
        }
        for batch in _chunks(list(props.get("OrganizationalUnits") or []))
    ]


def send(event: Mapping[str, Any], status: str, physical_id: str, reason: str = "") -> None:
    """cfnresponse.send, in short."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason or "See the function's logs",
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "NoEcho": False,
            "Data": {},
        }
    ).encode()
    request = urllib.request.Request(
        event["ResponseURL"],
        data=body,
        method="PUT",
        headers={"content-type": "", "content-length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def handler(event: Mapping[str, Any], context: Any) -> None:
    """Lambda entry point."""
    props = event.get("ResourceProperties") or {}
    physical_id = event.get("PhysicalResourceId") or props.get("MembershipId", "none")
    try:
        kind = event["RequestType"]
        if kind == "Delete":
            requests = delete_requests(props)
        else:
            old = event.get("OldResourceProperties") if kind == "Update" else None
            requests = update_requests(props, old)
            physical_id = props["MembershipId"]
        for request in requests:
            CLIENT.update_membership(**request)
    except Exception as error:
        send(event, "FAILED", physical_id, f"{type(error).__name__}: {error}"[:500])
        return
    send(event, "SUCCESS", physical_id)
