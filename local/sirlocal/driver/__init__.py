"""A CloudFormation stand-in that plays a stack through the real handler.

Why: unit tests call the handler function; they cannot show what a stack
goes through. This driver does what CloudFormation does with a custom
resource, end to end and offline:

* it builds the events CloudFormation sends (``RequestType``,
  ``ServiceToken``, a pre-signed-looking ``ResponseURL`` from the receiver,
  the stack ARN, a fresh ``RequestId``, ``PhysicalResourceId``, properties
  with CloudFormation's string scalars, ``OldResourceProperties``);
* it invokes the handler in a :class:`LambdaWorker` (a child process that
  imported ``sir_membership.app`` once, with a real deadline; killed at the
  deadline as Lambda would) and waits for the answer PUT at the receiver;
  when the dispatcher started the request's execution (on the local Step
  Functions endpoint, :mod:`sirlocal.states_api`, whose tasks run in workers
  too), it keeps waiting, as CloudFormation does, up to the resource's
  ServiceTimeout counted from the request;
* it refuses an answer that breaks the response contract, by raising
  :class:`ContractViolation` (ids not echoed, empty physical id, FAILED
  without a reason, over 4,096 bytes, answered more than once);
* it follows the answer the way a stack does: a failed Create (or a
  succeeded one whose stack fails later, ``later_failure``) rolls back
  with a Delete of the answered physical id; a failed Update rolls back with
  an Update whose old and new properties are swapped; a replacement (new
  physical id) deletes the old resource in the cleanup phase, and a rolled
  back replacement gets no rollback Update: the new one is deleted;
* it can cancel an update mid-way (``cancel_update``): the rollback Update
  goes to a second worker while the forward invocation still runs, as
  CloudFormation sends it without waiting for an invocation it gave up on;
* it records the stack events (``CREATE_COMPLETE``, ``UPDATE_FAILED``,
  ``UPDATE_ROLLBACK_COMPLETE``, ...) with their reasons, and times each
  operation.

Everything started here is stopped by the context managers, also on error;
each worker runs in its own process group.

The package is split by job: :mod:`.errors` (:class:`DriverError`,
:class:`ContractViolation`, :class:`NoResponse`), :mod:`.events` (the events
CloudFormation sends and the response contract it checks), :mod:`.workers`
(the Lambda worker processes, their invocations and pool), :mod:`.deliveries`
(a request's delivery and answer, stack events and operations) and
:mod:`.stack` (:class:`StackDriver`). Everything is re-exported here, so
``from sirlocal.driver import ...`` keeps working.
"""

from sirlocal.driver.deliveries import (
    Answer,
    Delivery,
    DeliveryStack,
    Executions,
    Operation,
    PendingDelivery,
    StackEvent,
    TaskRecord,
    format_events,
)
from sirlocal.driver.errors import ContractViolation, DriverError, NoResponse
from sirlocal.driver.events import (
    FUNCTION_ARN,
    MAX_BODY_BYTES,
    MAX_SERVICE_TIMEOUT,
    NO_RESPONSE_REASON,
    REGION,
    RESOURCE_TYPE,
    RequestType,
    cfn_properties,
    cfn_value,
    response_problems,
    service_timeout,
)
from sirlocal.driver.stack import StackDriver
from sirlocal.driver.workers import (
    KILL_GRACE,
    REPO_ROOT,
    Invocation,
    InvocationResult,
    LambdaWorker,
    WorkerPool,
    stop_all_workers,
    worker_env,
)

__all__ = [
    "FUNCTION_ARN",
    "KILL_GRACE",
    "MAX_BODY_BYTES",
    "MAX_SERVICE_TIMEOUT",
    "NO_RESPONSE_REASON",
    "REGION",
    "REPO_ROOT",
    "RESOURCE_TYPE",
    "Answer",
    "ContractViolation",
    "Delivery",
    "DeliveryStack",
    "DriverError",
    "Executions",
    "Invocation",
    "InvocationResult",
    "LambdaWorker",
    "NoResponse",
    "Operation",
    "PendingDelivery",
    "RequestType",
    "StackDriver",
    "StackEvent",
    "TaskRecord",
    "WorkerPool",
    "cfn_properties",
    "cfn_value",
    "format_events",
    "response_problems",
    "service_timeout",
    "stop_all_workers",
    "worker_env",
]
