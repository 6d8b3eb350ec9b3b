"""The security-ir fake of the simulated-clock tests: one membership by the emulator's rules.

Apart from the tests so the harness (``steps_world``) and the stateful tests
can share it: GetMembership and UpdateMembership on one membership, every
call validated against botocore's model and applied with the emulator's own
rules (``sirlocal.emulator.apply_update``), with faults injected per call.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError
from sirlocal.emulator import ServiceError, apply_update, service_model, validate

MEMBERSHIP_ID = "m-stateful0001"
STACK = "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1"
POOL = [f"ou-st01-{i:08d}" for i in range(12)]  # what the stack may declare
THEIRS = [f"ou-f0re-{i:08d}" for i in range(4)]  # only ever associated by the third party
NAMES = ("Zero Membership", "One Membership", "Two Membership", "Their Membership")
PEOPLE = [
    {"name": f"Person {c}", "jobTitle": f"Title {c}", "email": f"{c.lower()}@example.com"}
    for c in "ABCDE"
]
TEAMS = (PEOPLE[0:2], PEOPLE[1:3], PEOPLE[2:5])


def _client_error(code: str, status: int, operation: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


@dataclass
class Faults:
    """What goes wrong during one request."""

    #: UpdateMembership number (1-based, within the request) -> what happens to it.
    updates: dict[int, str] = field(default_factory=dict)
    #: From this read on (1-based, within the request), GetMembership is denied.
    reads_fail_from: int | None = None
    journal_down: bool = False
    #: Seconds each Work step has (the Work function's timeout; 300 in the template).
    budget: float = 300.0


class FakeSecurityIR:
    """GetMembership / UpdateMembership on one membership, by the emulator's rules."""

    def __init__(self, membership: dict[str, Any]) -> None:
        self.membership = membership
        self.faults = Faults()
        self.reads = 0
        self.sent = 0
        self.update_shape = service_model().operation_model("UpdateMembership").input_shape

    def start(self, faults: Faults) -> None:
        self.faults, self.reads, self.sent = faults, 0, 0

    def get_membership(self, membershipId: str) -> dict[str, Any]:
        assert membershipId == MEMBERSHIP_ID
        self.reads += 1
        start = self.faults.reads_fail_from
        if start is not None and self.reads >= start:
            raise _client_error("AccessDeniedException", 403, "GetMembership")
        return copy.deepcopy(self.membership)

    def update_membership(self, **params: Any) -> dict[str, Any]:
        assert validate(self.update_shape, params) == [], "a request the model rejects"
        self.sent += 1
        fault = self.faults.updates.get(self.sent)
        if fault == "deny":
            raise _client_error("AccessDeniedException", 403, "UpdateMembership")
        if fault == "throttle":
            raise _client_error("ThrottlingException", 400, "UpdateMembership")
        if fault == "5xx-lost":
            raise _client_error("InternalServerException", 500, "UpdateMembership")
        try:
            updated, _ = apply_update(self.membership, params)
        except ServiceError as error:  # the planner broke a service rule: a bug
            raise AssertionError(f"the service would reject this call: {error.code}") from None
        self.membership = updated
        if fault == "5xx-applied":
            raise _client_error("InternalServerException", 500, "UpdateMembership")
        if fault == "timeout-applied":
            # Applied, but the answer never came, and no read works afterwards.
            self.faults.reads_fail_from = self.reads + 1
            raise ReadTimeoutError(endpoint_url="https://security-ir.emulated")
        return {}
