"""The dispatcher: the ServiceToken's Lambda shell (crhelper, Powertools logging).

CloudFormation's events arrive here; the change itself runs in the
provider's state machine (statemachine/membership.asl.json, ``tasks``), so
this invocation is short whatever the change. The flow of one invocation:

0. ``guard.screen`` decides whether the event is served at all: an event
   whose ResponseURL is not allowed gets no work and no answer; one that is
   not CloudFormation's, or comes from a stack this provider does not serve,
   is answered FAILED at once (docs/security.md).
1. Powertools tags every log line with the RequestId (correlation id), the
   RequestType and the LogicalResourceId, as the guard validated them.
2. crhelper dispatches Create/Update/Delete to ``_dispatch`` and arms a timer
   that answers FAILED shortly before Lambda would kill the function, unless
   the execution may have started (then the execution answers).
3. ``_dispatch`` answers at once a request that cannot write (invalid
   properties, a Delete with nothing to do); otherwise ``dispatch.dispatch``
   records the request, takes its resource's generation fence, stops the
   execution of the request it supersedes and starts the request's own
   (one per request: a duplicate delivery joins it).
4. The execution's Answer task claims and PUTs the one answer; this
   invocation sends nothing for it.
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
from traceback import extract_tb
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from botocore.config import Config
from crhelper import CfnResource

from . import guard, resource
from .dispatch import Dispatched, dispatch
from .engine import Engine
from .errors import MembershipError
from .journal_store import JournalStore
from .request import failed_physical_id
from .request_store import RequestStore
from .response import FAILED, Answer, ResponseSender, build_body
from .timing import TIMING

if TYPE_CHECKING:  # annotations only: not imported at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

#: Seconds before Lambda's deadline at which the timer answers FAILED.
TIMER_RESERVE = TIMING.timer_reserve

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "sir-membership"))

TABLE_NAME = os.environ.get("IDEMPOTENCY_TABLE_NAME", "")
#: The request records and fences (bounded: a slow table cannot outlast the answer).
REQUESTS = RequestStore(
    boto3.client(
        "dynamodb",
        config=Config(
            connect_timeout=TIMING.table_connect_timeout,
            read_timeout=TIMING.table_read_timeout,
            retries={"total_max_attempts": 3, "mode": "standard"},
        ),
    ),
    TABLE_NAME,
)
#: The change journal, read only to tell whether a request the previous
#: release began may go on (``dispatch.admits_legacy``).
JOURNAL = JournalStore(REQUESTS.client, TABLE_NAME)
#: The provider's state machine, which carries every change that may write.
ENGINE = Engine(
    boto3.client(
        "stepfunctions",
        config=Config(
            connect_timeout=3, read_timeout=5, retries={"total_max_attempts": 3, "mode": "standard"}
        ),
    ),
    os.environ.get("STATE_MACHINE_ARN", ""),
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


def _remaining(context: Any) -> float:
    return float(context.get_remaining_time_in_millis()) / 1000.0


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
        #: Set once the execution may have started: it answers, this invocation never does.
        self.dispatched = False

    def dispatching(self, started: bool) -> None:
        """Whether the execution answers (it may have started) or this invocation does."""
        with self._lock:
            self.dispatched = started

    def answer_once(self, answer: Answer) -> None:
        """Send ``answer`` unless this invocation was answered, or its execution answers."""
        with self._lock:
            if self.dispatched:
                logger.info("the execution answers this request")
                return
            if self._claimed:
                logger.info("already answered this request; not answering again")
                return
            self._claimed = True
        try:
            body = build_body(self.event, answer)
            ResponseSender(remaining=lambda: _remaining(self.context)).send(self.url, body)
        finally:
            self.delivered.set()

    def wait_for_answer(self) -> None:
        """Block until a claimed answer is sent, so Lambda does not freeze it mid-PUT."""
        with self._lock:
            claimed = self._claimed
        if claimed:
            self.delivered.wait(max(0.0, _remaining(self.context)))


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
        seconds = _remaining(invocation.context) - TIMER_RESERVE
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

    Nothing has been written by this invocation (the execution writes), and
    once the execution may have started, it answers instead.
    """
    logger.error("about to time out: answering FAILED")
    invocation.answer_once(
        Answer.failed(
            failed_physical_id(invocation.event),
            "The function ran out of time before it could start the change: raise the "
            "function's Timeout and retry. Nothing was changed",
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


def _answer(event: dict[str, Any], invocation: _Invocation) -> Answer | Dispatched:
    """The answer now, or the execution that will give it."""
    request = resource.Request.from_event(event)
    at_once = resource.answer_without_writes(request)
    if at_once is not None:
        return at_once
    try:
        return dispatch(event, REQUESTS, ENGINE, invocation.dispatching, JOURNAL.read)
    except MembershipError as error:
        return Answer.failed(request.failed_physical_id(), error.reason)


@HELPER.create
@HELPER.update
@HELPER.delete
def _dispatch(event: dict[str, Any], context: LambdaContext) -> str:
    """crhelper's callback: the answer's fields go on the helper, crhelper sends them."""
    try:
        answer = _answer(event, HELPER.invocation)
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
    if isinstance(answer, Dispatched):
        logger.info("dispatched", extra={"execution": answer.execution_name})
        return str(event.get("PhysicalResourceId") or "")
    HELPER.Data = dict(answer.data)
    if answer.status == FAILED:
        HELPER.Status = FAILED
        HELPER.Reason = answer.reason
    return answer.physical_resource_id


@logger.inject_lambda_context(log_event=False, clear_state=True)
def handler(event: Any, context: LambdaContext) -> None:
    """Lambda entry point (``sir_membership.app.handler``): the ServiceToken."""
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
    HELPER(verdict.event, context)
