"""Security IR calls, retried with backoff inside the time the invocation has left.

This is the only module that talks to ``security-ir``. It reads the
membership, then drives a plan to completion:

* Throttling and Conflict (the service is still applying an earlier account
  change) mean the call was refused: it is sent again after a backoff, or
  after the wait the service asked for (``retryAfterSeconds`` or a
  ``Retry-After`` header) when that is longer, for as long as the time
  allows (a refusal is not counted against ``max_attempts``: the service may
  take minutes per account change); a wait that cannot fit in the time left
  raises ``OutOfTime`` at once, saying how many calls were applied, and the
  Work step returns it to the state machine, which waits with no Lambda
  running, or the request fails (``resource``).
* Under the engine, UpdateMembership is paced (``pace``): each call is sent
  when the membership's learned window since the last OU or coverage
  change is over, and a refusal waits a paced step, not a backoff; a wait
  longer than a moment ends the step for a Wait state.
* A 5xx, a reset connection or a read timeout leave it unknown whether the
  call was applied: the membership is read again and the rest of the work is
  planned anew from what it now is, so no OU is added or removed twice.
* Everything else fails at once with a reason that says what to do.

A call is started only if it can finish (connect and read timeouts) before
the deadline (``remaining``: the earlier of the invocation's and the
request's), minus the time kept to answer, so the function is never killed
mid-call. What a failed call means is read in ``service_errors``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
)

from .errors import (
    MembershipError,
    MembershipNotFound,
    OutOfTime,
    calls_applied,
    with_outcome,
)
from .membership import MembershipState, state_from_api
from .pace import SLEEP_AT_MOST, Pace, propagates, wait_state
from .pace_store import PaceBook, Pacer
from .plan import Plan, UpdateRequest, apply_request, changed_by
from .service_errors import AMBIGUOUS_NETWORK, REFUSED_NETWORK, Retry, client_error, failure
from .tags import TagCall, TagPlan
from .timing import TIMING
from .unknown_outcome import proves_applied, with_unknown

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mypy_boto3_security_ir import SecurityIncidentResponseClient


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Times in seconds."""

    base_delay: float = 0.2
    max_delay: float = 8.0
    max_attempts: int = 12
    #: Longest a single call can take (the client's connect + read timeouts).
    call_timeout: float = TIMING.call_timeout
    #: Time kept at the end of the invocation to answer CloudFormation.
    answer_reserve: float = TIMING.answer_reserve
    #: A wait longer than this is not slept here: ``OutOfTime`` carries it to
    #: the state machine, which waits with no Lambda running (the Work task
    #: sets it; a command-line read sleeps as long as it must).
    longest_sleep: float = math.inf


@dataclass(frozen=True)
class Applied:
    """The result of driving a plan: calls that succeeded and the state after them."""

    calls: int
    state: MembershipState


class MembershipService:
    """GetMembership and UpdateMembership with the retry rules above."""

    def __init__(
        self,
        client: SecurityIncidentResponseClient,
        remaining: Callable[[], float],
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
        account_id: str = "",
        region: str = "",
        before_write: Callable[[], None] | None = None,
        paces: PaceBook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        #: Each membership's recorded pace (the Work task's table); None: no pacing.
        self._paces = paces
        self._pacers: dict[str, Pacer] = {}
        self._clock = clock
        #: Raises ``Superseded`` when the request no longer holds its
        #: resource's fence: checked immediately before every write.
        self._before_write = before_write
        self._invocation_left = remaining
        self._request_left: Callable[[], float] | None = None
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._jitter = jitter
        self._account_id = account_id
        self._region = region
        self.calls = 0
        #: UpdateMembership calls sent (whatever their outcome): a failure
        #: answered after one was sent may have changed the membership.
        self.writes_started = 0
        self._on_progress: Callable[[int, MembershipState], None] | None = None

    @property
    def call_reserve(self) -> float:
        """Seconds a call needs, at least, before the deadline: its timeout and the answer's."""
        return self._policy.call_timeout + self._policy.answer_reserve

    def cap(self, request_left: Callable[[], float]) -> None:
        """Also stop at the request's own deadline (its ServiceTimeout), when it comes first."""
        self._request_left = request_left

    def _remaining(self) -> float:
        left = self._invocation_left()
        return left if self._request_left is None else min(left, self._request_left())

    # -- pacing ------------------------------------------------------------------

    def pacer(self, membership_id: str) -> Pacer | None:
        """The membership's pacer (its pace read once per step); None without pacing."""
        if self._paces is None:
            return None
        if membership_id not in self._pacers:
            self._pacers[membership_id] = Pacer(self._paces, membership_id, self._clock)
        return self._pacers[membership_id]

    def recorded_pace(self, membership_id: str) -> Pace | None:
        """What is known of the membership's window, if pacing and anything is known."""
        pacer = self.pacer(membership_id)
        return pacer.pace if pacer is not None and pacer.pace.known else None

    def wait_for_propagation(self, membership_id: str, *, applied: int, planned: int) -> bool:
        """Reads do not show the last change yet: wait as paced (False: not paced).

        A stale read says the change still propagates, as a refusal would;
        a wait longer than a moment ends the step (``OutOfTime``).
        """
        pacer = self.pacer(membership_id)
        if pacer is None:
            return False
        pacer.refused(None)
        wait = pacer.wait()
        if wait <= 0:
            return False
        self._paced(wait, "GetMembership", applied, planned, "")
        return True

    def _paced(self, wait: float, operation: str, applied: int, planned: int, cause: str) -> None:
        """Wait ``wait`` seconds: slept when short, else the step ends for a Wait state."""
        if wait <= 0:
            return
        self._ensure_time(operation, wait, applied, planned, cause)
        if wait <= min(SLEEP_AT_MOST, self._policy.longest_sleep):
            self._sleep(wait)
            return
        raise OutOfTime(
            with_outcome(
                f"{operation} waits {wait:.0f} s for the service to apply the last account change",
                calls_applied(applied, planned),
            ),
            applied=applied,
            planned=planned,
            wait=wait_state(wait),
            cause=cause,
        )

    # -- reading -----------------------------------------------------------------

    def get(self, membership_id: str, *, applied: int = 0, planned: int = 0) -> MembershipState:
        """Read the membership; ``MembershipNotFound`` if it is not there.

        ``applied``/``planned`` say how far a plan had got when it is read again.
        """
        response = self._with_retries(
            "GetMembership",
            membership_id,
            lambda: self._get(membership_id),
            applied=applied,
            planned=planned,
        )
        return state_from_api(response)

    def find(self, membership_id: str) -> MembershipState | None:
        """Like ``get`` but ``None`` when the membership does not exist."""
        try:
            return self.get(membership_id)
        except MembershipNotFound:
            return None

    def _get(self, membership_id: str) -> dict[str, Any]:
        self.calls += 1
        return dict(self._client.get_membership(membershipId=membership_id))

    # -- writing -----------------------------------------------------------------

    def apply(
        self,
        state: MembershipState,
        plan: Plan,
        replan: Callable[[MembershipState], Plan],
        progress: Callable[[int, MembershipState], None] | None = None,
        *,
        already: int = 0,
        in_flight: bool = False,
    ) -> Applied:
        """Send ``plan``'s requests in order until none is left.

        After an ambiguous failure the membership is read again and
        ``replan`` decides what is still to do (the caller journals any new
        field it touches there, before its call). ``progress`` hears the
        count of applied calls and the state they leave after each one.
        ``already`` counts the calls earlier invocations applied for the same
        request: every count (progress, failures, ``Applied``) includes them.
        ``in_flight`` says an earlier invocation died with a call that may
        have been applied: the first call here may repeat it, and the
        service's refusal of that repeat proves it was.
        """
        self._on_progress = progress
        pacer = self.pacer(plan.membership_id)
        pending = list(plan.requests)
        done = already
        attempts = 0
        #: A call whose answer was lost and that no read has shown applied yet:
        #: a read soon after a call may be stale, so it is not proof either way.
        unsure: UpdateRequest | None = pending[0] if in_flight and pending else None
        while pending:
            request = pending[0]
            planned = done + len(pending)
            if pacer is not None:  # due only once the last change's window is over
                self._paced(pacer.wait(), "UpdateMembership", done, planned, "")
            try:
                self._with_retries(
                    "UpdateMembership",
                    request.membership_id,
                    lambda r=request: self._update(r),  # type: ignore[misc]
                    applied=done,
                    planned=planned,
                    ambiguous_is_retry=False,
                    pacer=pacer,
                )
            except Retry as retry:
                # The call may or may not have been applied: until a read
                # shows which, it counts as unknown, never as "not applied".
                attempts += 1
                try:
                    self._backoff(attempts, retry, "UpdateMembership", done, planned)
                    seen = self.get(request.membership_id, applied=done, planned=planned)
                except MembershipError as error:
                    raise with_unknown(error) from None
                if changed_by(request, state, seen):  # it was applied after all
                    # A call applies whole: its OUs count too, though the read may show
                    # them late (else they are sent again, and refused as associated).
                    seen = apply_request(seen, request)
                    done += 1
                    self._progress(done, seen)
                    unsure = None
                else:
                    unsure = request
                state = seen
                pending = list(replan(state).requests)
                continue
            except MembershipError as error:
                proven = _proven_by_its_repeat(error, request, unsure)
                done += 1
                state = apply_request(state, proven)
                self._progress(done, state)
                unsure = None
                pending = list(replan(state).requests)
                continue
            done += 1
            if pacer is not None:
                pacer.accepted(propagating=propagates(request))
            unsure = None  # the repeat (or a later call) is applied: nothing is unknown
            state = apply_request(state, request)
            self._progress(done, state)
            pending.pop(0)
        return Applied(done, state)

    def _progress(self, done: int, state: MembershipState) -> None:
        if self._on_progress is not None:
            self._on_progress(done, state)

    def _fenced(self) -> None:
        if self._before_write is not None:
            self._before_write()

    def _update(self, request: UpdateRequest) -> None:
        self._fenced()
        self.calls += 1
        self.writes_started += 1
        self._client.update_membership(**request.to_api())

    # -- tags --------------------------------------------------------------------

    def list_tags(self, membership_id: str, resource_arn: str) -> dict[str, str]:
        """ListTagsForResource on the membership's ARN."""

        def call() -> dict[str, str]:
            self.calls += 1
            return dict(self._client.list_tags_for_resource(resourceArn=resource_arn)["tags"])

        result: dict[str, str] = self._with_retries(
            "ListTagsForResource", membership_id, call, applied=0, planned=0
        )
        return result

    def apply_tags(self, membership_id: str, plan: TagPlan) -> int:
        """Send the plan's TagResource/UntagResource calls in order (both are idempotent)."""
        for call in plan.calls:

            def send(c: TagCall = call) -> None:
                self._fenced()
                self.calls += 1
                if c.operation == "TagResource":
                    self._client.tag_resource(**c.to_api())
                else:
                    self._client.untag_resource(**c.to_api())

            self._with_retries(call.operation, membership_id, send, applied=0, planned=0)
        return len(plan.calls)

    # -- retries -----------------------------------------------------------------

    def _with_retries(
        self,
        operation: str,
        membership_id: str,
        call: Callable[[], Any],
        *,
        applied: int,
        planned: int,
        ambiguous_is_retry: bool = True,
        pacer: Pacer | None = None,
    ) -> Any:
        attempt = 0
        last = ""
        while True:
            self._ensure_time(operation, 0.0, applied, planned, last)
            try:
                return self._classify(operation, membership_id, call, applied, planned)
            except Retry as retry:
                if retry.ambiguous and not ambiguous_is_retry:
                    raise
                attempt += 1
                last = retry.cause
                if pacer is not None and retry.refused:
                    pacer.refused(retry.retry_after)
                    wait = pacer.wait()
                    if wait > 0:  # a paced step, not a backoff
                        self._paced(wait, operation, applied, planned, retry.cause)
                        continue
                self._backoff(attempt, retry, operation, applied, planned)

    def _backoff(
        self, attempt: int, retry: Retry, operation: str, applied: int, planned: int
    ) -> None:
        """Sleep before attempt ``attempt + 1``, or fail if attempts or time ran out."""
        policy = self._policy
        if attempt >= policy.max_attempts and not retry.refused:
            raise failure(
                f"{operation} still failing after {attempt} attempts ({retry.cause})",
                applied,
                planned,
            ) from retry
        delay = min(policy.max_delay, policy.base_delay * 2**attempt)
        delay = self._jitter(delay / 2, delay)
        if retry.retry_after is not None:
            self._ensure_retry_after(operation, retry, applied, planned)
            delay = max(delay, retry.retry_after)
        self._ensure_time(operation, delay, applied, planned, retry.cause)
        if delay > policy.longest_sleep:
            raise OutOfTime(
                with_outcome(
                    f"{operation} was refused ({retry.cause}): waiting {delay:.0f} s",
                    calls_applied(applied, planned),
                ),
                applied=applied,
                planned=planned,
                wait=delay,
                cause=retry.cause,
            )
        self._sleep(delay)

    def _ensure_retry_after(self, operation: str, retry: Retry, applied: int, planned: int) -> None:
        """Fail at once, without sleeping, when the wait the service asked for cannot fit.

        Sleeping it out would reach a point where the next call can no
        longer finish before the deadline: the invocation would only learn
        that after wasting the wait, with less time left to answer.
        """
        wait = retry.retry_after or 0.0
        left = self._remaining() - self._policy.call_timeout - self._policy.answer_reserve
        if wait <= left:
            return
        raise OutOfTime(
            with_outcome(
                f"{operation} was refused ({retry.cause}) and the service asked to wait "
                f"{wait:g} s (Retry-After), more than the {max(left, 0.0):.0f} s left to start "
                "a call",
                calls_applied(applied, planned),
            ),
            applied=applied,
            planned=planned,
            wait=wait,
            cause=retry.cause,
        )

    def _ensure_time(
        self, operation: str, delay: float, applied: int, planned: int, last: str
    ) -> None:
        needed = delay + self._policy.call_timeout + self._policy.answer_reserve
        if self._remaining() >= needed:
            return
        cause = f" (last error: {last})" if last else ""
        raise OutOfTime(
            with_outcome(
                f"ran out of time before {operation} could be sent{cause}",
                calls_applied(applied, planned),
            ),
            applied=applied,
            planned=planned,
            wait=delay,
            cause=last,
        )

    def _classify(
        self,
        operation: str,
        membership_id: str,
        call: Callable[[], Any],
        applied: int,
        planned: int,
    ) -> Any:
        try:
            return call()
        except ClientError as error:
            raise client_error(
                operation,
                membership_id,
                error,
                applied=applied,
                planned=planned,
                where=f"account {self._account_id or '?'} region {self._region or '?'}",
                account_id=self._account_id or "?",
            ) from None
        except REFUSED_NETWORK as error:
            raise Retry(type(error).__name__, ambiguous=False) from None
        except AMBIGUOUS_NETWORK as error:
            raise Retry(type(error).__name__, ambiguous=True) from None
        except NoCredentialsError:
            raise failure(
                "no AWS credentials: the function's role could not be assumed", applied, planned
            ) from None
        except BotoCoreError as error:
            raise failure(f"{operation} failed: {type(error).__name__}", applied, planned) from None


def _proven_by_its_repeat(
    error: MembershipError, request: UpdateRequest, unsure: UpdateRequest | None
) -> UpdateRequest:
    """The lost call that ``error`` (the refusal of its repeat) proves applied; else raise.

    The service refuses to repeat an OU change that is already in place: the
    first call was applied, and the read before the repeat was only stale.
    """
    if unsure is None:
        raise error
    if not proves_applied(error, request, unsure):
        raise with_unknown(error) from None
    logger.info("a lost UpdateMembership call proved applied by its repeat")
    return unsure
