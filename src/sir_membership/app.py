"""The Lambda shell: crhelper dispatch, Powertools logging and idempotency.

Everything with a side effect is wired here and kept thin; the decisions are
made in ``resource`` and the pure modules it calls. The flow of one
invocation:

0. ``guard.screen`` decides whether the event is served at all: an event
   whose ResponseURL is not allowed gets no work and no answer; one that is
   not CloudFormation's, or comes from a stack this provider does not serve,
   is answered FAILED at once. Only then do the idempotency layer and
   crhelper see it (docs/security.md).
1. Powertools tags every log line with the RequestId (correlation id), the
   RequestType and the LogicalResourceId, as the guard validated them.
2. crhelper dispatches Create/Update/Delete to ``_dispatch`` and arms a timer
   that answers FAILED shortly before Lambda would kill the function.
3. ``_dispatch`` answers at once a request that cannot write (invalid
   properties, a Delete with nothing to do); otherwise it runs
   ``resource.handle`` at most once per (StackId, RequestId, continuation
   token) through Powertools idempotency on DynamoDB, and a duplicate
   delivery gets the stored outcome back instead of writing again.
4. ``_Resource._send`` PUTs the single answer with ``response.ResponseSender``,
   unless the work was handed to a new invocation of this function
   (``_hand_off``, an asynchronous Lambda Invoke), which answers in its turn.
"""

from __future__ import annotations

import gc

# The cyclic collector is off while this module loads (imports, clients) and
# the objects it made are frozen afterwards (``_collector_resumed``): all of
# them live as long as the sandbox, so its ~30 passes meanwhile only scanned
# a growing heap (bench/results.md measures it).
_COLLECTOR_WAS_ON = gc.isenabled()
gc.disable()

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from traceback import extract_tb
from typing import TYPE_CHECKING, Any, cast

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyKeyError,
    IdempotencyPersistenceLayerError,
)
from botocore.config import Config
from crhelper import CfnResource

from . import continuation, guard, resource, service_model
from .continuation import HandedOff, Outcome, Stopped
from .errors import ConfigurationError, MembershipError, StillInProgress
from .journal_store import JournalStore
from .request import failed_physical_id
from .response import FAILED, Answer, ResponseSender, build_body
from .self_invoke import OutcomeSerializer, invoker
from .service import MembershipService, RetryPolicy
from .stack_status import stack_status
from .timing import TIMING

if TYPE_CHECKING:  # annotations only: not imported at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

#: Seconds before Lambda's deadline at which the timer answers FAILED.
TIMER_RESERVE = TIMING.timer_reserve
#: Idempotency records outlive CloudFormation's longest wait for an answer.
RECORD_TTL_SECONDS = 2 * 3600


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the clients are made.

    Making them parses botocore's security-ir and dynamodb models into many
    objects that all stay alive, so the collector's passes meanwhile would
    scan the growing heap for nothing (bench/results.md measures the
    difference). Its previous state is restored afterwards, also on error.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "sir-membership"))

with _collector_paused():
    SECURITY_IR = boto3.client(
        "security-ir",
        config=Config(
            connect_timeout=TIMING.service_connect_timeout,
            read_timeout=TIMING.service_read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            user_agent_extra="sir-membership",
        ),
    )
    # The property rules come from the model this client has already parsed.
    service_model.share_model(SECURITY_IR.meta.service_model)
    TABLE_NAME = os.environ.get("IDEMPOTENCY_TABLE_NAME", "")
    PERSISTENCE = DynamoDBPersistenceLayer(
        table_name=TABLE_NAME or "unset",
        # From boto3's default session, which the security-ir client already set
        # up: left alone, Powertools builds a second session (about 70 ms of cold
        # start, see bench/results.md). Bounded, so a slow table cannot outlast
        # the invocation's answer.
        boto3_client=boto3.client(
            "dynamodb",
            config=Config(
                connect_timeout=TIMING.table_connect_timeout,
                read_timeout=TIMING.table_read_timeout,
                retries={"total_max_attempts": 3, "mode": "standard"},
            ),
        ),
    )
    #: The change journal and the membership leases, kept in the same table.
    JOURNAL = JournalStore(PERSISTENCE.client, TABLE_NAME)
IDEMPOTENCY = IdempotencyConfig(
    # The token tells the links of a continued request apart (each runs once).
    event_key_jmespath=f"[StackId, RequestId, {continuation.MARKER}.Token]",
    raise_on_no_idempotency_key=True,
    expires_after_seconds=RECORD_TTL_SECONDS,
)


def _configure_logging() -> None:
    """Send crhelper's and our modules' logs through the Powertools JSON logger.

    crhelper logs the whole event (ResponseURL, names, emails) at DEBUG and
    botocore logs request bodies at DEBUG, so those stay at INFO/WARNING
    whatever POWERTOOLS_LOG_LEVEL says.
    """
    copy_config_to_registered_loggers(source_logger=logger, include={"crhelper", "sir_membership"})
    floor = max(logging.INFO, logging.getLogger(logger.name).getEffectiveLevel())
    logging.getLogger("crhelper").setLevel(floor)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _remaining(context: LambdaContext) -> Callable[[], float]:
    return lambda: context.get_remaining_time_in_millis() / 1000.0


def _carry_out(
    *,
    event: dict[str, Any],
    service: MembershipService,
    shell: resource.Shell,
    outcome: list[Outcome],
) -> Outcome:
    """The side-effecting work, recorded per (StackId, RequestId, continuation token).

    The outcome is also put in ``outcome``: if saving the record fails after
    the work was done, the real answer is still sent; and its presence tells
    this invocation's own hand-off from a recorded one.
    """
    result = resource.handle(resource.Request.from_event(event), service, shell)
    outcome.append(result)
    return result


_carry_out_once = cast(
    "Callable[..., Outcome]",
    idempotent_function(
        data_keyword_argument="event",
        config=IDEMPOTENCY,
        persistence_store=PERSISTENCE,
        output_serializer=OutcomeSerializer(),
    )(_carry_out),
)


def _answer(event: dict[str, Any], context: LambdaContext, invocation: _Invocation) -> Outcome:
    """Carry the request out once, or wait for the invocation already doing it."""
    request = resource.Request.from_event(event)
    at_once = resource.answer_without_writes(request)
    if at_once is not None:
        return at_once
    remaining = _remaining(context)
    service = MembershipService(
        SECURITY_IR,
        remaining,
        policy=RetryPolicy(),
        account_id=context.invoked_function_arn.split(":")[4],
        region=SECURITY_IR.meta.region_name,
    )
    invocation.service = service
    shell = resource.Shell(
        JOURNAL,
        remaining,
        settle=invocation.settle,
        hand_off=invoker(event, context.invoked_function_arn, invocation.handed_off_now),
        stack_status=stack_status,
    )
    delay = 0.25
    outcome: list[Outcome] = []
    try:
        if not TABLE_NAME:
            raise ConfigurationError("IDEMPOTENCY_TABLE_NAME is not set on the function")
        while True:
            try:
                result = _carry_out_once(event=event, service=service, shell=shell, outcome=outcome)
            except IdempotencyAlreadyInProgressError:
                if remaining() < delay + RetryPolicy().answer_reserve:
                    if request.continuation is not None and shell.hand_off is not None:
                        # Lambda's retry of a link that was killed: its record lapses at
                        # that link's deadline. The same link runs again later, unanswered.
                        logger.info("the killed link's record is still live: retrying later")
                        shell.hand_off(request.continuation)
                        return Stopped("retried later")
                    raise StillInProgress(
                        "the same request is still being processed by another invocation"
                    ) from None
                logger.info("duplicate delivery in progress elsewhere; waiting for its answer")
                time.sleep(delay)
                delay = min(delay * 2, 4.0)
                continue
            # A duplicate of a handed-off event: the answer, once the last link recorded it.
            duplicate = isinstance(result, HandedOff) and not outcome
            return resource.replay(request, shell) if duplicate else result
    except IdempotencyPersistenceLayerError as error:
        logger.warning("idempotency store failed", extra={"errorType": type(error).__name__})
        if outcome:
            logger.warning("the work was done but its record was not saved; answering anyway")
            return outcome[0]
        reason = (
            f"idempotency table {TABLE_NAME} is unreachable: check the table exists "
            "and the role allows dynamodb:GetItem/PutItem/UpdateItem/DeleteItem on it"
        )
        return Answer.failed(request.failed_physical_id(), reason)
    except (IdempotencyKeyError, MembershipError) as error:
        return Answer.failed(request.failed_physical_id(), str(error))


class _Invocation:
    """The answer state of one invocation.

    The timer thread holds its own invocation, so a timer that fires late (or
    wakes after the sandbox was frozen) can only ever answer its own request,
    never the next one's.
    """

    def __init__(self, event: dict[str, Any], context: Any) -> None:
        self.event = event
        self.context = context
        self.url = str(event.get("ResponseURL", ""))
        self._lock = threading.Lock()
        self._claimed = False
        self.delivered = threading.Event()
        #: The answer once the outcome is known: the timer sends it, not FAILED.
        self.settled: Answer | None = None
        #: The service of this invocation, once made: it counts the writes sent.
        self.service: MembershipService | None = None
        #: Set once a new invocation carries the request on: this one sends nothing.
        self.handed_off = False

    def handed_off_now(self) -> None:
        """A new invocation carries the request on: this one answers nothing from now on."""
        self.handed_off = True

    def settle(self, answer: Answer) -> None:
        """Record the outcome before the bookkeeping that follows the last write."""
        self.settled = answer

    @property
    def may_have_written(self) -> bool:
        """Whether an UpdateMembership call was sent by this invocation."""
        return self.service is not None and self.service.writes_started > 0

    def answer_once(self, answer: Answer) -> None:
        """Send ``answer`` unless this invocation has already been answered (or handed off)."""
        with self._lock:
            if self.handed_off:
                logger.info("handed off: the next invocation answers")
                return
            if self._claimed:
                logger.info("already answered this request; not answering again")
                return
            self._claimed = True
        try:
            body = build_body(self.event, answer)
            ResponseSender(remaining=_remaining(self.context)).send(self.url, body)
        finally:
            self.delivered.set()

    def wait_for_answer(self) -> None:
        """Block until a claimed answer is sent, so Lambda does not freeze it mid-PUT."""
        with self._lock:
            claimed = self._claimed
        if claimed:
            self.delivered.wait(max(0.0, _remaining(self.context)()))


class _Resource(CfnResource):
    """crhelper's dispatch with this project's sender, timer and logging.

    crhelper may answer from two threads (its timeout timer and the main
    thread); ``_Invocation`` makes the first answer the only one. The private
    methods overridden here are crhelper 2.0.12's (pinned) extension points.
    """

    _event: dict[str, Any]
    _context: Any
    _timer: threading.Timer | None

    def __init__(self) -> None:
        # crhelper makes Lambda, EventBridge and CloudWatch Logs clients for its
        # polling mode unless AWS_SAM_LOCAL is set. No poller is registered
        # here, so they would only slow every cold start.
        # It also sets the root logger's level; that is put back as it was.
        saved = os.environ.get("AWS_SAM_LOCAL")
        root_level = logging.root.level
        os.environ["AWS_SAM_LOCAL"] = "true"
        try:
            super().__init__(log_level="INFO", boto_level="WARNING", sleep_on_delete=0)
        finally:
            logging.root.setLevel(root_level)
            if saved is None:
                del os.environ["AWS_SAM_LOCAL"]
            else:
                os.environ["AWS_SAM_LOCAL"] = saved
        self._invocation = _Invocation({}, None)
        self.invocation = self._invocation

    def _log_setup(self, event: Any, context: Any) -> None:
        """Logging is configured once, by Powertools (crhelper would reset the root logger)."""

    def _wait_for_cwlogs(self, sleep: Any = None) -> None:
        """No sleeping on Delete: the function's logs do not depend on it."""

    def __call__(self, event: Any, context: Any) -> None:
        # Set up before crhelper parses the event: if that fails, its FAILED
        # answer still goes to this request.
        invocation = _Invocation(event if isinstance(event, dict) else {}, context)
        self._invocation = invocation
        self.invocation = invocation
        self._event = invocation.event
        self._context = context
        self.PhysicalResourceId = ""
        super().__call__(event, context)
        invocation.wait_for_answer()

    def _set_timeout(self) -> None:
        invocation = self._invocation
        seconds = invocation.context.get_remaining_time_in_millis() / 1000.0 - TIMER_RESERVE
        self._timer = threading.Timer(max(0.0, seconds), _timeout, args=(invocation,))
        self._timer.daemon = True
        self._timer.start()

    def _send(self, status: str | None = None, reason: str = "", send_response: Any = None) -> None:
        """crhelper's answer: its normal path, or (with ``status``) its error path."""
        event = self._invocation.event
        if status == FAILED:  # crhelper's own failure: its text is internals, not a reason
            logger.error("crhelper could not dispatch the request")
            answer = Answer.failed(
                failed_physical_id(event),
                "Malformed request; see the function's logs for RequestId "
                f"{event.get('RequestId', '?')}",
            )
        elif self.Status == FAILED:
            answer = Answer.failed(str(self.PhysicalResourceId), str(self.Reason))
        else:
            answer = Answer.success(str(self.PhysicalResourceId), dict(self.Data))
        self._invocation.answer_once(answer)


def _timeout(invocation: _Invocation) -> None:
    """The timer's answer, shortly before Lambda would kill the function.

    A change whose outcome is already known (only bookkeeping was left) is
    answered as it went, never FAILED.
    """
    if invocation.settled is not None:
        logger.warning("about to time out during bookkeeping: sending the settled answer")
        invocation.answer_once(invocation.settled)
        return
    logger.error("about to time out: answering FAILED")
    invocation.answer_once(
        Answer.failed(
            failed_physical_id(invocation.event, unrestored=invocation.may_have_written),
            "The function ran out of time: raise the function's Timeout and retry. Some "
            "UpdateMembership calls may have been applied; the stack's rollback restores them "
            "from the change journal",
        )
    )


def _collector_resumed() -> None:
    """Freeze what the module load made (never scanned again), then resume the collector."""
    gc.freeze()
    if _COLLECTOR_WAS_ON:
        gc.enable()


HELPER = _Resource()
_configure_logging()
_collector_resumed()


@HELPER.create
@HELPER.update
@HELPER.delete
def _dispatch(event: dict[str, Any], context: LambdaContext) -> str:
    """crhelper's callback: the answer's fields go on the helper, crhelper sends them."""
    try:
        answer = _answer(event, context, HELPER.invocation)
    except Exception as error:  # noqa: BLE001 - a bug must still be answered
        # A bug, not a domain failure: answer FAILED with a pointer to the logs
        # (the exception's text could carry property values, so it is not sent).
        frames = [
            f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in extract_tb(error.__traceback__)
        ]
        logger.error(  # noqa: TRY400 - the traceback's message could carry property values
            "unexpected error", extra={"errorType": type(error).__name__, "frames": frames}
        )
        answer = Answer.failed(
            failed_physical_id(event),
            f"Internal error ({type(error).__name__}); see the function's logs for "
            f"RequestId {event.get('RequestId', '?')}",
        )
    if not isinstance(answer, Answer):  # handed off, or nothing for this invocation to say
        HELPER.invocation.handed_off = True
        logger.info("not answering", extra={"why": type(answer).__name__})
        return str(event.get("PhysicalResourceId") or "")
    HELPER.Data = dict(answer.data)
    if answer.status == FAILED:
        HELPER.Status = FAILED
        HELPER.Reason = answer.reason
    return answer.physical_resource_id


@logger.inject_lambda_context(log_event=False, clear_state=True)
def handler(event: Any, context: LambdaContext) -> None:
    """Lambda entry point (``sir_membership.app.handler``)."""
    verdict = guard.screen(
        event, str(context.invoked_function_arn), guard.Policy.from_environ(os.environ)
    )
    echo = verdict.echo
    logger.set_correlation_id(echo.get("RequestId") or None)
    logger.append_keys(
        RequestType=echo.get("RequestType") or None,
        LogicalResourceId=echo.get("LogicalResourceId") or None,
    )
    if isinstance(verdict, guard.Unanswerable):
        logger.error(verdict.why, extra={"host": verdict.host} if verdict.host else {})
        return
    if isinstance(verdict, guard.Refused):
        # The reason is built from validated identifiers only (stack name, account, region).
        logger.warning(
            "refused",
            extra={"errorType": type(verdict.error).__name__, "why": verdict.error.reason},
        )
        answer = Answer.failed(failed_physical_id(echo), verdict.error.reason)
        _Invocation({**echo, "ResponseURL": event["ResponseURL"]}, context).answer_once(answer)
        return
    IDEMPOTENCY.register_lambda_context(context)
    HELPER(verdict.event, context)
