"""A CloudFormation request, and what it asks of the membership (pure).

``decide`` turns a request into a ``Decision``: which membership to read and
how to plan against what it finds. The Lambda function and the change-set
preview both go through it, so the preview shows exactly what the function
will do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .errors import InvalidProperties
from .membership import MembershipState
from .plan import Plan, plan_changes, plan_delete
from .properties import parse_properties
from .service_model import rules

RequestType = Literal["Create", "Update", "Delete"]


@dataclass(frozen=True)
class Request:
    """The parts of a CloudFormation event the resource uses (no ResponseURL)."""

    request_type: RequestType
    stack_id: str
    request_id: str
    logical_id: str
    physical_id: str = ""
    properties: Mapping[str, Any] = field(default_factory=dict, repr=False)
    old_properties: Mapping[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Request:
        """Pick the fields out of a raw event."""
        request_type = event.get("RequestType")
        if request_type not in ("Create", "Update", "Delete"):
            raise InvalidProperties(f"Unsupported RequestType {request_type!r}")
        return cls(
            request_type=request_type,
            stack_id=str(event.get("StackId", "")),
            request_id=str(event.get("RequestId", "")),
            logical_id=str(event.get("LogicalResourceId", "")),
            physical_id=str(event.get("PhysicalResourceId", "")),
            properties=event.get("ResourceProperties") or {},
            old_properties=event.get("OldResourceProperties"),
        )

    def failed_physical_id(self, *, unrestored: bool = False) -> str:
        """The id to answer with on failure (see ``failed_physical_id``)."""
        return failed_physical_id(
            {
                "RequestType": self.request_type,
                "PhysicalResourceId": self.physical_id,
                "LogicalResourceId": self.logical_id,
                "RequestId": self.request_id,
            },
            unrestored=unrestored,
        )


#: Marks the id of a failed Create whose writes were all undone (or never made).
FAILED_MARK = "-failed-"
#: Marks the id of a failed Create that may have left writes not yet restored:
#: the rollback Delete of this id restores them from the change journal.
UNRESTORED_MARK = "-unrestored-"


def failed_physical_id(event: Mapping[str, Any], *, unrestored: bool = False) -> str:
    """The id to answer with on failure, from a raw (possibly malformed) event.

    A failed Create has no membership of its own: a stable id that is not a
    membership id lets the Delete CloudFormation sends next succeed without a
    call (and without the table), and a duplicate gets the same id. When the
    failed Create may have left changes that its own undo could not put
    back, the id says so (``unrestored``), and that Delete restores them.
    Failed Updates and Deletes keep the current id so nothing gets replaced.
    """
    physical = event.get("PhysicalResourceId")
    if event.get("RequestType") in ("Update", "Delete") and physical:
        return str(physical)
    logical = event.get("LogicalResourceId") or "resource"
    mark = UNRESTORED_MARK if unrestored else FAILED_MARK
    return f"{logical}{mark}{str(event.get('RequestId', ''))[:36]}"


def unrestored_request_id(physical_id: str) -> str | None:
    """The request id in an ``unrestored`` failed-Create id, else None."""
    if UNRESTORED_MARK not in physical_id:
        return None
    return physical_id.rsplit(UNRESTORED_MARK, 1)[1]


def _old_ous(raw: Mapping[str, Any] | None, membership_id: str) -> frozenset[str]:
    """The previous declaration's OUs, if it was valid and for the same membership.

    Invalid old properties were never applied (their Create or Update failed
    before any write), so there is nothing of theirs to remove.
    """
    try:
        old = parse_properties(raw)
    except InvalidProperties:
        return frozenset()
    return old.organizational_units if old.membership_id == membership_id else frozenset()


@dataclass(frozen=True)
class Decision:
    """What a request asks for, before the membership is read.

    ``membership_id`` is None when nothing is to be done (``reason`` says
    why), except that the journal may name changes to restore
    (``restore_failed``). ``plan`` maps the membership's actual state to the calls to make;
    it is called again after an ambiguous failure.
    """

    membership_id: str | None
    planner: Callable[[MembershipState, frozenset[str]], Plan] | None = None
    must_exist: bool = True
    replacement: bool = False
    create: bool = False
    reason: str = ""
    #: The OUs declared now and, for an Update of the same membership, before:
    #: the planner may remove only ``previous - declared``.
    declared: frozenset[str] = frozenset()
    previous: frozenset[str] = frozenset()
    #: The request id of a failed Create whose leftovers this Delete restores.
    restore_failed: str | None = None

    @property
    def plan(self) -> Callable[[MembershipState], Plan] | None:
        """The planner for this request, given the membership's actual state."""
        if self.planner is None:
            return None
        planner, previous = self.planner, self.previous
        return lambda state: planner(state, previous)

    def without_previous(self) -> Decision:
        """The same decision when the old declaration was never applied.

        Its OUs were never this resource's doing (the journal has no record
        of it being applied), so none of them may be removed.
        """
        return replace(self, previous=frozenset())

    @property
    def undo_on_failure(self) -> bool:
        """Whether the function must undo a failure part-way itself.

        CloudFormation rolls a failed Create back with a Delete, and a failed
        replacing Update with an Update of the old membership: neither reaches
        what was already changed on this membership. A failed Update of the
        same membership is undone by CloudFormation's rollback Update.
        """
        return self.must_exist and (self.replacement or self.create)

    @property
    def rolled_back_by_update(self) -> bool:
        """An Update of the same membership: CloudFormation's rollback is an Update too."""
        return self.must_exist and not (self.replacement or self.create)


def decide(request: Request) -> Decision:
    """The pure part of handling a request. Raises ``InvalidProperties`` for Create/Update."""
    if request.request_type == "Delete":
        return _decide_delete(request)
    desired = parse_properties(request.properties)
    replaced = request.request_type == "Update" and desired.membership_id != request.physical_id
    previous = frozenset[str]()
    if request.request_type == "Update" and not replaced:
        previous = _old_ous(request.old_properties, desired.membership_id)
    return Decision(
        desired.membership_id,
        lambda state, previous: plan_changes(desired, state, previous),
        replacement=replaced,
        create=request.request_type == "Create",
        declared=desired.organizational_units,
        previous=previous,
    )


def _decide_delete(request: Request) -> Decision:
    physical = request.physical_id
    failed = unrestored_request_id(physical)
    if failed is not None:
        return Decision(None, reason="a failed Create left changes", restore_failed=failed)
    if not rules().membership_id.accepts(physical):
        return Decision(None, reason="the resource never became a membership")
    try:
        declared = parse_properties(request.properties)
    except InvalidProperties:
        return Decision(None, reason="invalid properties: the membership is retained")
    if declared.membership_id != physical:
        return Decision(None, reason="OnDelete is Retain: the membership is kept as it is")
    if declared.on_delete == "Retain":
        # Still read against the journal: the Delete of a Create that is being
        # rolled back restores what the Create changed, whatever OnDelete says.
        return Decision(
            physical, must_exist=False, reason="OnDelete is Retain: the membership is kept as it is"
        )
    return Decision(
        physical, lambda state, _previous: plan_delete(declared, state), must_exist=False
    )
