"""A local Step Functions endpoint that plays the provider's state machine, with its tasks
in Lambda worker processes.

A fault-injection stand-in, not an emulator: it plays what the product's own
definition uses, and breaks it on purpose (task sandboxes killed mid-call,
Invoke calls refused, results lost).

Why: the dispatcher (``sir_membership.app.handler``) starts one execution per
request through boto3's ``stepfunctions`` client, and the change runs in the
Work and Answer tasks; the offline fault-injection world (``sirlocal.driver``,
``sirlocal.scenarios``) must run that path with real processes, real deadlines
and real kills. This endpoint speaks the JSON protocol boto3 uses
(``X-Amz-Target: AWSStepFunctions.<Operation>``, ``{"__type", "message"}``
errors) for StartExecution, StopExecution and DescribeExecution, and runs
each execution on a thread, state by state, from the repository's definition
(statemachine/membership.asl.json, read, never restated here):

* Task (``arn:aws:states:::lambda:invoke``): the function named by the
  definition's substitutions runs in a :class:`~sirlocal.driver.LambdaWorker`
  (warm when one is idle; killed at the function timeout, as Lambda does);
  ``Parameters``, ``ResultSelector``, ``ResultPath``, ``TimeoutSeconds``,
  ``Retry`` (``IntervalSeconds`` x ``BackoffRate``, ``MaxAttempts``) and
  ``Catch`` (its ``ResultPath``) as the definition says. A task timeout does
  not stop the function (nor does StopExecution): its late result is dropped.
* Wait (``Seconds`` or ``SecondsPath``), Choice (string equality), Succeed, Fail;
  the top-level ``TimeoutSeconds`` (TIMED_OUT).
* An execution that ends FAILED, TIMED_OUT or ABORTED is sent to the Answer
  function as EventBridge's "Step Functions Execution Status Change" event
  (the provider's safety net), retried as an asynchronous invocation is.

StartExecution follows AWS, not ministack: the same name and input as a
running execution returns that execution; a closed one, or another input,
is ``ExecutionAlreadyExists``. ``wait_scale`` shortens Wait states and retry
intervals (as ministack's ``SFN_WAIT_SCALE``); the default plays them in real
seconds.

The package is split by job: :mod:`.definition` (the definition, its
substitutions and the States Language rules it uses), :mod:`.records`
(executions, task attempts, configurations, faults), :mod:`.runner` (running
an execution and its tasks in workers) and :mod:`.api` (:class:`StatesAPI`:
the JSON protocol over HTTP, configuration, faults, records). Everything is
re-exported here, so ``from sirlocal.states_api import ...`` keeps working.
"""

from sirlocal.states_api.api import ApiError, StatesAPI
from sirlocal.states_api.definition import (
    ANSWER_FUNCTION,
    DEFINITION,
    HANDLERS,
    REGION,
    STATE_MACHINE_ARN,
    STATE_MACHINE_NAME,
    WORK_FUNCTION,
    apply_template,
    choose,
    error_matches,
    function_arn,
    get_path,
    load_definition,
    put_path,
    retry_delay,
)
from sirlocal.states_api.records import (
    Execution,
    Fault,
    FunctionConfig,
    TaskRun,
    describe,
    epoch,
)
from sirlocal.states_api.runner import (
    ENDED_BADLY,
    SAFETY_NET_ATTEMPTS,
    STATUS_CHANGE,
    ExecutionRunner,
)

__all__ = [
    "ANSWER_FUNCTION",
    "DEFINITION",
    "ENDED_BADLY",
    "HANDLERS",
    "REGION",
    "SAFETY_NET_ATTEMPTS",
    "STATE_MACHINE_ARN",
    "STATE_MACHINE_NAME",
    "STATUS_CHANGE",
    "WORK_FUNCTION",
    "ApiError",
    "Execution",
    "ExecutionRunner",
    "Fault",
    "FunctionConfig",
    "StatesAPI",
    "TaskRun",
    "apply_template",
    "choose",
    "describe",
    "epoch",
    "error_matches",
    "function_arn",
    "get_path",
    "load_definition",
    "put_path",
    "retry_delay",
]
