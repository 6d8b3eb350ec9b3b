"""The state machine's two Lambda tasks: ``work`` and ``answer`` (the imperative shell).

Module-level clients only, made once per sandbox; the decisions are in
``work_task`` and ``answer_task``. ``answer`` also receives the EventBridge
events of executions that ended FAILED, TIMED_OUT or ABORTED (the safety
net), and publishes the two metrics the provider's alarms watch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from traceback import extract_tb
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config

from . import service_model
from .answer_task import STATUS_CHANGE, Sent, answer_request, safety_net
from .journal import Entry
from .journal_store import JournalStore
from .pace_store import TablePaces
from .request_record import RequestKeys
from .request_store import RequestStore
from .response import Answer, ResponseSender, build_body
from .service import MembershipService, RetryPolicy
from .shell import Shell
from .stack_status import stack_status
from .timing import TIMING
from .work_task import run_step, step_input

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "sir-membership")
logger = Logger(service=SERVICE)
metrics = Metrics(namespace="SirMembership", service=SERVICE)
copy_config_to_registered_loggers(source_logger=logger, include={"sir_membership"})

TABLE_NAME = os.environ.get("IDEMPOTENCY_TABLE_NAME", "")
_TABLE = boto3.client(
    "dynamodb",
    config=Config(
        connect_timeout=TIMING.table_connect_timeout,
        read_timeout=TIMING.table_read_timeout,
        retries={"total_max_attempts": 3, "mode": "standard"},
    ),
)
REQUESTS = RequestStore(_TABLE, TABLE_NAME)
JOURNAL = JournalStore(_TABLE, TABLE_NAME)
#: Each membership's pace (``pace#<MembershipId>``): what the Work steps learned.
PACES = TablePaces(_TABLE, TABLE_NAME)
#: Made on the first Work step only (the Answer function never calls security-ir).
_SECURITY_IR: list[Any] = []


def security_ir() -> Any:
    """The security-ir client of this sandbox, made on first use (Work steps only)."""
    if not _SECURITY_IR:
        client = boto3.client(
            "security-ir",
            config=Config(
                connect_timeout=TIMING.service_connect_timeout,
                read_timeout=TIMING.service_read_timeout,
                retries={"total_max_attempts": 1, "mode": "standard"},
                user_agent_extra="sir-membership",
            ),
        )
        service_model.share_model(client.meta.service_model)
        _SECURITY_IR.append(client)
    return _SECURITY_IR[0]


def _remaining(context: Any) -> Any:
    return lambda: float(context.get_remaining_time_in_millis()) / 1000.0


@logger.inject_lambda_context(log_event=False, clear_state=True)
def work(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The Work task (``sir_membership.tasks.work``)."""
    keys, step = step_input(event)
    logger.set_correlation_id(keys.request_id)
    logger.append_keys(LogicalResourceId=keys.logical_id, step=step)
    remaining = _remaining(context)
    client = security_ir()

    def service(before_write: Any) -> MembershipService:
        return MembershipService(
            client,
            remaining,
            policy=RetryPolicy(longest_sleep=TIMING.longest_sleep),
            account_id=context.invoked_function_arn.split(":")[4],
            region=client.meta.region_name,
            before_write=before_write,
            paces=PACES,
        )

    def shell(number: int, retried: bool) -> Shell:
        return Shell(
            JOURNAL,
            remaining,
            engine=True,
            step=number,
            retried=retried,
            stack_status=stack_status,
        )

    with _sanitized("Work"):
        return run_step(
            keys,
            step,
            REQUESTS,
            service,
            shell,
            tag=lambda kind: logger.append_keys(RequestType=kind),
        ).to_payload()


class TaskFailed(Exception):
    """A task's failure as the execution's history may show it: its kind, never its text."""


@contextmanager
def _sanitized(task: str) -> Iterator[None]:
    """Re-raise any failure as ``TaskFailed`` naming only its type.

    The execution's history keeps a failed task's error message, and Lambda
    logs it: an exception's text could carry a property value.
    """
    try:
        yield
    except Exception as error:  # noqa: BLE001 - re-raised, as its kind only
        frames = [
            f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in extract_tb(error.__traceback__)
        ]
        logger.error(  # noqa: TRY400 - the traceback's message could carry property values
            f"the {task} task failed",
            extra={"errorType": type(error).__name__, "frames": frames},
        )
        raise TaskFailed(type(error).__name__) from None


def _sender(context: Any) -> Any:
    def send(event: Mapping[str, Any], answer: Answer) -> bool:
        body = build_body(event, answer)
        return ResponseSender(remaining=_remaining(context)).send(str(event["ResponseURL"]), body)

    return send


def _journal(stack_id: str, logical_id: str) -> Entry | None:
    return JOURNAL.read(stack_id, logical_id)


def _count(sent: Sent | None) -> None:
    """Publish the metrics the provider's alarms watch (EMF log lines), when there are any."""
    if sent is None or not (sent.by_safety_net or sent.unrestored):
        return
    if sent.by_safety_net:
        metrics.add_metric(name="SafetyNetAnswers", unit=MetricUnit.Count, value=1)
    if sent.unrestored:
        metrics.add_metric(name="UnrestoredAnswers", unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()


@logger.inject_lambda_context(log_event=False, clear_state=True)
def answer(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The Answer task and the safety net (``sir_membership.tasks.answer``)."""
    with _sanitized("Answer"):
        if event.get("detail-type") == STATUS_CHANGE:
            sent = safety_net(event, REQUESTS, _journal, _sender(context))
        else:
            keys = RequestKeys.from_input(event.get("request"))
            logger.set_correlation_id(keys.request_id)
            failure = event.get("failure")
            sent = answer_request(
                keys,
                failure if isinstance(failure, Mapping) else None,
                REQUESTS,
                _journal,
                _sender(context),
            )
    _count(sent)
    return {"answered": sent is not None and sent.answer.status}
