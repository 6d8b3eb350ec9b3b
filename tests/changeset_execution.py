"""CloudFormation executing a change set against the function, for the agreement tests.

This is written from CloudFormation's custom-resource contract and never
imports ``sir_membership.preview``: the preview claims to show the calls the
function makes, so the function's side of that comparison must not go
through the preview's own translation of a change set into requests.

What CloudFormation does when a change set executes, as modelled here:

* Add is a Create with the new properties; Modify is an Update with the new
  properties, the old ones and the current physical id. Both run in the
  update phase, in the order the change set lists them.
* An Update answered with a different PhysicalResourceId was a replacement:
  the old physical id gets a Delete, with the old properties, in the cleanup
  phase, unless UpdateReplacePolicy is Retain.
* Remove is a Delete with the old properties, in the cleanup phase, unless
  DeletionPolicy is Retain.
* A FAILED answer starts a rollback: nothing more of the change set is sent
  and the cleanup phase never runs (the rollback's own requests are not part
  of what the change set previews).
* Every property value reaches the function as a string.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import function_table
from memory_store import MemoryStore
from moto import mock_aws
from receiver import Receiver

from sir_membership import app, resource, tasks
from sir_membership.request import Request
from sir_membership.response import contract_problems
from sir_membership.service import MembershipService

RESOURCE_TYPE = "Custom::SecurityIRMembership"
TABLE = "sir-membership-idempotency-agreement"

#: An event in, the response body CloudFormation receives out.
Invoke = Callable[[dict[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class Sent:
    """One request CloudFormation sent, its answer, and the calls made meanwhile."""

    event: dict[str, Any] = field(repr=False)
    answer: Mapping[str, Any]
    calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        """(RequestType, LogicalResourceId, PhysicalResourceId): how the preview names a step."""
        event = self.event
        return (
            event["RequestType"],
            event["LogicalResourceId"],
            event.get("PhysicalResourceId", ""),
        )


def as_cloudformation_sends(value: Any) -> Any:
    """CloudFormation hands every scalar of a custom resource's properties over as a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): as_cloudformation_sends(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_cloudformation_sends(v) for v in value]
    return value


def _context(change: Mapping[str, Any], key: str) -> dict[str, Any]:
    raw = change.get(key)
    if raw is None:
        return {}
    decoded = json.loads(raw) if isinstance(raw, str) else dict(raw)
    assert isinstance(decoded, dict)
    return decoded


def _policy_retains(change: Mapping[str, Any], *, replaced: bool) -> bool:
    """Whether CloudFormation keeps the old resource instead of sending a Delete."""
    action = change.get("PolicyAction")
    if replaced:
        if action:
            return bool(action == "ReplaceAndRetain")
        return _context(change, "AfterContext").get("UpdateReplacePolicy") == "Retain"
    if action:
        return bool(action == "Retain")
    return _context(change, "BeforeContext").get("DeletionPolicy") == "Retain"


def execute_change_set(
    pages: Sequence[Mapping[str, Any]],
    invoke: Invoke,
    calls_so_far: Callable[[], Sequence[dict[str, Any]]] = list,
) -> list[Sent]:
    """Send the function what CloudFormation sends it when the change set executes."""
    stack_id = str(pages[0]["StackId"])
    changes = [
        c["ResourceChange"]
        for page in pages
        for c in page.get("Changes") or ()
        if c["ResourceChange"]["ResourceType"] == RESOURCE_TYPE
    ]
    sent: list[Sent] = []

    def send(request_type: str, change: Mapping[str, Any], **fields: Any) -> Mapping[str, Any]:
        properties = fields["ResourceProperties"]
        event = {
            "RequestType": request_type,
            "ServiceToken": properties["ServiceToken"],
            "ResponseURL": "https://cloudformation-custom-resource-response.example/unset",
            "StackId": stack_id,
            "RequestId": str(uuid.uuid4()),
            "LogicalResourceId": change["LogicalResourceId"],
            "ResourceType": change["ResourceType"],
            **{k: as_cloudformation_sends(v) for k, v in fields.items()},
        }
        before = len(calls_so_far())
        answer = invoke(event)
        sent.append(Sent(event, answer, list(calls_so_far()[before:])))
        return answer

    cleanup: list[tuple[Mapping[str, Any], dict[str, Any]]] = []
    for change in changes:
        before = _context(change, "BeforeContext").get("Properties")
        after = _context(change, "AfterContext").get("Properties")
        physical = change.get("PhysicalResourceId", "")
        if change["Action"] == "Add":
            answer = send("Create", change, ResourceProperties=after)
        elif change["Action"] == "Modify":
            answer = send(
                "Update",
                change,
                PhysicalResourceId=physical,
                ResourceProperties=after,
                OldResourceProperties=before,
            )
            replaced = answer["PhysicalResourceId"] != physical
            if replaced and not _policy_retains(change, replaced=True):
                cleanup.append((change, {"PhysicalResourceId": physical}))
        elif change["Action"] == "Remove":
            if not _policy_retains(change, replaced=False):
                cleanup.append((change, {"PhysicalResourceId": physical}))
            continue
        else:
            continue
        if answer["Status"] == "FAILED":
            return sent
    for change, fields in cleanup:
        before = _context(change, "BeforeContext").get("Properties")
        send("Delete", change, ResourceProperties=before, **fields)
    return sent


# -- the function, two ways ---------------------------------------------------------


def through_resource(client: Any, *, account_id: str, region: str) -> Invoke:
    """``resource.handle`` over ``client``: the function without its Lambda shell.

    The journal is kept in memory for the change set's requests.
    """
    store = MemoryStore()

    def invoke(event: dict[str, Any]) -> Mapping[str, Any]:
        service = MembershipService(
            client, lambda: 300.0, sleep=lambda _: None, account_id=account_id, region=region
        )
        answer = resource.handle(
            Request.from_event(event), service, resource.Shell(store, lambda: 300.0)
        )
        return {
            "Status": answer.status,
            "PhysicalResourceId": answer.physical_resource_id,
            "Reason": answer.reason,
        }

    return invoke


@dataclass
class _Context:
    """A Lambda context for the function that the event's ServiceToken names."""

    invoked_function_arn: str
    deadline: float = field(default_factory=lambda: time.monotonic() + 120.0)
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_name: str = "sir-membership"
    memory_limit_in_mb: int = 256
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


@contextmanager
def lambda_function(client: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    """The deployed provider's entry point, ``app.handler``, with ``client`` as its security-ir.

    The dispatcher starts the request's execution, which the in-process engine
    (tests/engine_local.py, from ``function_table``) plays through the Work and
    Answer tasks. Request records, fences and the journal go to a moto
    DynamoDB table and answers to a local ResponseURL, so each answer is the
    body CloudFormation would receive.
    """
    with mock_aws(), Receiver() as receiver:
        function_table(monkeypatch, TABLE)
        # The Work task's security-ir client (``tasks.security_ir``), run in
        # process by the engine fixture between the dispatcher and the answer.
        monkeypatch.setattr(tasks, "security_ir", lambda: client)

        def invoke(event: dict[str, Any]) -> Mapping[str, Any]:
            event = dict(event, ResponseURL=receiver.url)
            answered = len(receiver.bodies)
            app.handler(event, _Context(event["ServiceToken"]))
            assert len(receiver.bodies) == answered + 1, "the function must answer exactly once"
            body = receiver.bodies[-1]
            assert contract_problems(event, body) == []
            return body

        yield invoke
