"""The stack: one custom resource played through create, update, delete and rollbacks.

Why: a stack's operations decide which requests the function gets and in
which order (a failed Create rolls back with a Delete, a failed Update with
the old and new properties swapped, a replacement deletes the old resource in
the clean-up); :class:`StackDriver` sends them as CloudFormation does and
records the stack events it would show.
"""

from __future__ import annotations

import contextlib
import copy
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sirlocal.driver.deliveries import (
    Answer,
    Delivery,
    Executions,
    Operation,
    PendingDelivery,
    StackEvent,
)
from sirlocal.driver.errors import DriverError, NoResponse
from sirlocal.driver.events import (
    FUNCTION_ARN,
    NO_RESPONSE_REASON,
    REGION,
    RESOURCE_TYPE,
    RequestType,
    cfn_properties,
)
from sirlocal.driver.workers import LambdaWorker
from sirlocal.receiver import ResponseReceiver, normalize_path
from sirlocal.worker import ACCOUNT_ID


class StackDriver:
    """One stack holding one ``Custom::SecurityIRMembership``, played like CloudFormation.

    ``strict`` (default) raises :class:`ContractViolation` when an answer
    breaks the contract and :class:`NoResponse` when none arrives; with
    ``strict=False`` a missing answer becomes CloudFormation's timeout failure.
    With ``states`` (``services.states``), an answer sent by the request's
    execution is waited for, up to the resource's ServiceTimeout.
    """

    def __init__(
        self,
        receiver: ResponseReceiver,
        worker: LambdaWorker,
        *,
        stack_name: str = "sir-membership-stack",
        logical_id: str = "Membership",
        timeout: float | None = None,
        strict: bool = True,
        states: Executions | None = None,
    ) -> None:
        self.receiver = receiver
        self.states = states
        self.worker = worker
        self.stack_name = stack_name
        self.logical_id = logical_id
        self.timeout = worker.timeout if timeout is None else timeout
        self.strict = strict
        self.stack_id = ""
        self.status = "NONE"
        self.physical_id: str | None = None
        self.properties: dict[str, Any] | None = None  # as CloudFormation sends them
        self.attributes: dict[str, Any] = {}
        self.events: list[StackEvent] = []
        self.operations: list[Operation] = []
        self.deliveries: list[Delivery] = []
        self._operation: Operation | None = None
        #: The rollback Update to send again (old, new, physical id) after UPDATE_ROLLBACK_FAILED.
        self._failed_rollback: tuple[dict[str, Any], dict[str, Any], str] | None = None

    # events and deliveries -----------------------------------------------------

    def event(
        self,
        request_type: RequestType,
        properties: Mapping[str, Any],
        *,
        physical_id: str | None = None,
        old_properties: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """The event CloudFormation would send (``properties`` already in CloudFormation form)."""
        if not self.stack_id:
            self.stack_id = f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{self.stack_name}/{uuid.uuid4()}"
        request_id = request_id or str(uuid.uuid4())
        event: dict[str, Any] = {
            "RequestType": request_type,
            "ServiceToken": properties.get("ServiceToken", FUNCTION_ARN),
            "ResponseURL": "",
            "StackId": self.stack_id,
            "RequestId": request_id,
            "LogicalResourceId": self.logical_id,
            "ResourceType": RESOURCE_TYPE,
        }
        if request_type != "Create":
            event["PhysicalResourceId"] = physical_id or ""
        event["ResourceProperties"] = copy.deepcopy(dict(properties))
        if request_type == "Update":
            event["OldResourceProperties"] = copy.deepcopy(dict(old_properties or {}))
        name = f"{self.stack_id}|{self.logical_id}|{request_id}"
        event["ResponseURL"] = self.receiver.url_for(name, event=event)
        return event

    def deliver(
        self,
        event: Mapping[str, Any],
        *,
        workers: Sequence[LambdaWorker] | None = None,
        timeout: float | None = None,
    ) -> Delivery:
        """Invoke ``event`` on each of ``workers`` at once (default: this stack's worker).

        Waits for every invocation to end (killing it at its deadline) and
        returns the PUTs made to the event's ResponseURL meanwhile. Raises
        :class:`ContractViolation` in strict mode when an answer breaks the contract.
        """
        return self.begin(event, workers=workers, timeout=timeout).finish()

    def begin(
        self,
        event: Mapping[str, Any],
        *,
        workers: Sequence[LambdaWorker] | None = None,
        timeout: float | None = None,
        aws_request_id: str | None = None,
    ) -> PendingDelivery:
        """Start invoking ``event`` and return at once; ``finish()`` waits as :meth:`deliver`.

        Why: CloudFormation does not wait for an invocation it gave up on (a
        cancelled update): the next request can arrive while it still runs.
        ``aws_request_id``: the Lambda request id (a retry keeps the first one's).
        """
        chosen = list(workers) if workers else [self.worker]
        seconds = self.timeout if timeout is None else timeout
        path = normalize_path(str(event["ResponseURL"]))
        before = len(self.receiver.requests(path))
        started = time.time()
        invocations = [w.invoke(event, seconds, request_id=aws_request_id) for w in chosen]
        return PendingDelivery(self, dict(event), path, before, started, seconds, invocations)

    def deliver_crashing(
        self,
        event: Mapping[str, Any],
        crash_when: Callable[[], bool],
        error: str = "Lambda.ServiceException",
    ) -> Delivery:
        """Invoke ``event``; once ``crash_when()`` holds, kill the sandbox of the request's
        running task (a Work step).

        The sandbox dies mid-step (out of memory, a runtime crash, a lost
        host): the task sees ``error``, and the definition decides what
        follows (a Lambda service error is retried: the step runs again in a
        fresh sandbox; a function error such as ``Runtime.ExitError`` is
        caught and answered). One :class:`Delivery` holds the dispatcher's
        invocation, every task attempt and every PUT. If the request is
        answered before ``crash_when()`` holds, nothing is killed.
        """
        if self.states is None:
            raise DriverError("deliver_crashing needs the local Step Functions endpoint")
        pending = self.begin(event)
        request_id = str(event["RequestId"])
        path = normalize_path(str(event["ResponseURL"]))
        killed = False
        while not crash_when():
            answered = any(p.accepted for p in self.receiver.requests(path)[pending.before :])
            if answered or (not pending.running() and not self.states.busy(request_id)):
                break
            time.sleep(0.01)
        else:
            deadline = time.time() + 5.0
            while not killed and time.time() < deadline:
                killed = self.states.kill_running(request_id, error)
                time.sleep(0.01)
        delivery = pending.finish()
        delivery.retried = killed
        return delivery

    def _answer(
        self,
        event: dict[str, Any],
        crash_when: Callable[[], bool] | None = None,
        crash_error: str = "Lambda.ServiceException",
    ) -> tuple[Answer, Delivery]:
        if crash_when is None:
            delivery = self.deliver(event)
        else:
            delivery = self.deliver_crashing(event, crash_when, crash_error)
        assert self._operation is not None
        self._operation.deliveries.append(delivery)
        answer = delivery.answer
        if answer is None:
            if self.strict:
                raise NoResponse([f"no answer to {event['RequestType']} before the deadline"])
            fallback = event.get("PhysicalResourceId") or event["RequestId"]
            answer = Answer("FAILED", str(fallback), NO_RESPONSE_REASON, {})
        self._operation.answers.append(answer)
        return answer, delivery

    def _record(
        self, status: str, reason: str = "", *, stack: bool = False, physical_id: str | None = None
    ) -> None:
        if stack:
            logical, kind, physical = self.stack_name, "AWS::CloudFormation::Stack", self.stack_id
            self.status = status
            self.receiver.set_stack_status(self.stack_id, status)  # for DescribeStacks
        else:
            logical, kind = self.logical_id, RESOURCE_TYPE
            physical = physical_id if physical_id is not None else (self.physical_id or "")
        event = StackEvent(time.time(), logical, kind, status, physical, reason)
        self.events.append(event)
        if self._operation is not None:
            self._operation.events.append(event)

    @contextlib.contextmanager
    def _operate(self, action: str) -> Iterator[Operation]:
        operation = Operation(action)
        self._operation = operation
        started = time.monotonic()
        try:
            yield operation
        finally:
            operation.seconds = time.monotonic() - started
            operation.stack_status = self.status
            self.operations.append(operation)
            self._operation = None

    # stack operations ----------------------------------------------------------

    def create(
        self, properties: Mapping[str, Any], *, later_failure: str | None = None
    ) -> Operation:
        """Create the stack with the resource declared as ``properties``.

        ``later_failure``: another resource of the new stack fails after this
        one was created, so CloudFormation rolls the stack back
        (``ROLLBACK_IN_PROGRESS``) and deletes this resource too.
        """
        if self.status not in ("NONE", "DELETE_COMPLETE", "ROLLBACK_COMPLETE"):
            raise DriverError(f"cannot create: the stack is {self.status}")
        self.stack_id = ""
        self.physical_id, self.properties, self.attributes = None, None, {}
        declared = cfn_properties(properties)
        with self._operate("Create") as operation:
            event = self.event("Create", declared)
            self._record("CREATE_IN_PROGRESS", "User Initiated", stack=True)
            self._record("CREATE_IN_PROGRESS", physical_id="")
            answer, _ = self._answer(event)
            if answer.ok and later_failure is None:
                self.physical_id, self.properties = answer.physical_id, declared
                self.attributes = dict(answer.data)
                self._record("CREATE_COMPLETE")
                self._record("CREATE_COMPLETE", stack=True)
                return operation
            failed = self.logical_id
            if answer.ok and later_failure is not None:
                self._record("CREATE_COMPLETE", physical_id=answer.physical_id)
                failed = "LaterResource"
                failure = StackEvent(
                    time.time(), failed, "AWS::SSM::Parameter", "CREATE_FAILED", "", later_failure
                )
                self.events.append(failure)
                operation.events.append(failure)
            else:
                self._record("CREATE_FAILED", answer.reason, physical_id=answer.physical_id)
            self._record(
                "ROLLBACK_IN_PROGRESS",
                f"The following resource(s) failed to create: [{failed}]. "
                "Rollback requested by user.",
                stack=True,
            )
            if self._delete_resource(answer.physical_id, declared):
                self._record("ROLLBACK_COMPLETE", stack=True)
            else:  # the stack keeps a resource CloudFormation could not delete
                self.physical_id, self.properties = answer.physical_id, declared
                self._record("ROLLBACK_FAILED", stack=True)
            return operation

    def update(
        self,
        properties: Mapping[str, Any],
        *,
        later_failure: str | None = None,
        force: bool = False,
        crash_when: Callable[[], bool] | None = None,
        crash_error: str = "Lambda.ServiceException",
        after_answer: Callable[[], None] | None = None,
    ) -> Operation:
        """Update the resource to ``properties``.

        ``later_failure``: another resource of the stack fails after this one
        was updated, so CloudFormation rolls this one back too. Unchanged
        properties send nothing (as CloudFormation) unless ``force``.
        ``crash_when``: the sandbox of the request's Work step dies once it
        holds (:meth:`deliver_crashing`, ``crash_error``). ``after_answer``
        runs once the update is answered, before anything CloudFormation
        sends next (its rollback).
        """
        if self.status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"):
            raise DriverError(f"cannot update: the stack is {self.status}")
        assert self.physical_id is not None
        assert self.properties is not None
        old, new = self.properties, cfn_properties(properties)
        with self._operate("Update") as operation:
            self._record("UPDATE_IN_PROGRESS", "User Initiated", stack=True)
            if old == new and not force:
                self._record("UPDATE_COMPLETE", stack=True)
                return operation
            before = self.physical_id
            self._record("UPDATE_IN_PROGRESS")
            event = self.event("Update", new, physical_id=before, old_properties=old)
            answer, _ = self._answer(event, crash_when, crash_error)
            if after_answer is not None:
                after_answer()
            if not answer.ok:
                self._record("UPDATE_FAILED", answer.reason)
                self._record(
                    "UPDATE_ROLLBACK_IN_PROGRESS",
                    f"The following resource(s) failed to update: [{self.logical_id}].",
                    stack=True,
                )
                self._roll_back(old, new, current=before, replaced=None)
                return operation
            replaced = answer.physical_id != before
            if replaced:
                self._record(
                    "UPDATE_IN_PROGRESS",
                    "Requested update required the provider to create a new physical resource",
                    physical_id=answer.physical_id,
                )
            self.physical_id, self.properties = answer.physical_id, new
            self.attributes = dict(answer.data)
            self._record("UPDATE_COMPLETE")
            if later_failure is not None:
                failed = StackEvent(
                    time.time(),
                    "LaterResource",
                    "AWS::SSM::Parameter",
                    "UPDATE_FAILED",
                    "",
                    later_failure,
                )
                self.events.append(failed)
                operation.events.append(failed)
                self._record(
                    "UPDATE_ROLLBACK_IN_PROGRESS",
                    "The following resource(s) failed to update: [LaterResource].",
                    stack=True,
                )
                self._roll_back(
                    old, new, current=answer.physical_id, replaced=before if replaced else None
                )
                return operation
            self._record("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", stack=True)
            if replaced:
                self._delete_resource(before, old)
            self._record("UPDATE_COMPLETE", stack=True)
            return operation

    def cancel_update(
        self,
        properties: Mapping[str, Any],
        *,
        cancel_when: Callable[[], bool],
        rollback_worker: LambdaWorker,
    ) -> Operation:
        """Update to ``properties``, cancel the update mid-way, roll back at once.

        As CloudFormation after ``cancel-update-stack``: it stops waiting for
        the forward invocation and sends the rollback Update (old and new
        swapped) while that invocation may still be running. The rollback
        goes to ``rollback_worker`` as soon as ``cancel_when()`` holds (or the
        forward invocation ended); the forward answer, whenever it comes, no
        longer decides anything, but it is still checked against the contract.
        """
        if self.status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"):
            raise DriverError(f"cannot update: the stack is {self.status}")
        assert self.physical_id is not None
        assert self.properties is not None
        old, new = self.properties, cfn_properties(properties)
        before = self.physical_id
        with self._operate("Update") as operation:
            self._record("UPDATE_IN_PROGRESS", "User Initiated", stack=True)
            self._record("UPDATE_IN_PROGRESS")
            forward = self.begin(self.event("Update", new, physical_id=before, old_properties=old))
            while forward.running() and not cancel_when():
                time.sleep(0.02)
            operation.overlapped = forward.running()
            self._record("UPDATE_ROLLBACK_IN_PROGRESS", "Stack update cancelled", stack=True)
            self._record("UPDATE_FAILED", "Resource update cancelled")
            self._record("UPDATE_IN_PROGRESS", physical_id=before)
            rollback = self.event("Update", old, physical_id=before, old_properties=new)
            answered = self.begin(rollback, workers=[rollback_worker]).finish()
            late = forward.finish()
            late.abandoned = True
            for delivery in (late, answered):
                operation.deliveries.append(delivery)
                if delivery.answer is not None:
                    operation.answers.append(delivery.answer)
            answer = answered.answer
            if answer is None and self.strict:
                raise NoResponse(["no answer to the rollback Update before the deadline"])
            if answer is None or not answer.ok:
                self._record("UPDATE_FAILED", answer.reason if answer else NO_RESPONSE_REASON)
                self._record("UPDATE_ROLLBACK_FAILED", stack=True)
                return operation
            self.physical_id, self.properties = answer.physical_id, old
            self.attributes = dict(answer.data)
            self._record("UPDATE_COMPLETE")
            self._record("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", stack=True)
            if answer.physical_id != before:
                self._delete_resource(before, new)
            self._record("UPDATE_ROLLBACK_COMPLETE", stack=True)
            return operation

    def _roll_back(
        self,
        old: dict[str, Any],
        new: dict[str, Any],
        *,
        current: str,
        replaced: str | None,
    ) -> None:
        """Update back to ``old`` (old and new swapped). A replacement (``replaced``: the
        old id) gets no rollback Update: the old resource is current again and the new one
        is deleted in the clean-up ("Custom resource request types")."""
        if replaced is not None:
            self.physical_id, self.properties = replaced, old
            self._record("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", stack=True)
            self._delete_resource(current, new)
            self._record("UPDATE_ROLLBACK_COMPLETE", stack=True)
            return
        self._record("UPDATE_IN_PROGRESS", physical_id=current)
        event = self.event("Update", old, physical_id=current, old_properties=new)
        answer, _ = self._answer(event)
        if not answer.ok:
            self._record("UPDATE_FAILED", answer.reason, physical_id=current)
            self._record("UPDATE_ROLLBACK_FAILED", stack=True)
            self._failed_rollback = (old, new, current)
            return
        self._failed_rollback = None
        self.physical_id, self.properties = answer.physical_id, old
        self.attributes = dict(answer.data)
        self._record("UPDATE_COMPLETE")
        self._record("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", stack=True)
        if answer.physical_id != current:
            self._delete_resource(current, new)
        self._record("UPDATE_ROLLBACK_COMPLETE", stack=True)

    def continue_rollback(self) -> Operation:
        """``continue-update-rollback``: send the failed rollback Update again (a new request)."""
        if self.status != "UPDATE_ROLLBACK_FAILED" or self._failed_rollback is None:
            raise DriverError(f"cannot continue the rollback: the stack is {self.status}")
        old, new, current = self._failed_rollback
        with self._operate("ContinueRollback") as operation:
            self._record("UPDATE_ROLLBACK_IN_PROGRESS", "User Initiated", stack=True)
            self._roll_back(old, new, current=current, replaced=None)
            return operation

    def delete(self) -> Operation:
        """Delete the stack (and so the resource, if the stack has one)."""
        if self.status in ("NONE", "DELETE_COMPLETE"):
            raise DriverError(f"cannot delete: the stack is {self.status}")
        with self._operate("Delete") as operation:
            self._record("DELETE_IN_PROGRESS", "User Initiated", stack=True)
            if self.physical_id is None or self.properties is None:  # after ROLLBACK_COMPLETE
                self._record("DELETE_COMPLETE", stack=True)
                return operation
            if self._delete_resource(self.physical_id, self.properties):
                self.physical_id, self.properties, self.attributes = None, None, {}
                self._record("DELETE_COMPLETE", stack=True)
            else:
                self._record("DELETE_FAILED", stack=True)
            return operation

    def _delete_resource(self, physical_id: str, properties: dict[str, Any]) -> bool:
        self._record("DELETE_IN_PROGRESS", physical_id=physical_id)
        event = self.event("Delete", properties, physical_id=physical_id)
        answer, _ = self._answer(event)
        if answer.ok:
            self._record("DELETE_COMPLETE", physical_id=physical_id)
            return True
        self._record("DELETE_FAILED", answer.reason, physical_id=physical_id)
        return False
