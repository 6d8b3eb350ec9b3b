"""The one answer to CloudFormation: its body, its contract, and its delivery.

CloudFormation waits (up to the resource's ServiceTimeout, an hour by
default) for a single JSON document PUT to the pre-signed ``ResponseURL``.
crhelper's own sender has no timeout, ignores the HTTP status and can loop
forever, so delivery is done here: a timeout per attempt, retries on network
errors, 5xx and 429, and a status check (any 4xx/5xx is "not delivered").
The URL is a credential for the stack's answer: it is never logged.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .timing import TIMING

logger = logging.getLogger(__name__)

SUCCESS: Literal["SUCCESS"] = "SUCCESS"
FAILED: Literal["FAILED"] = "FAILED"
MAX_BODY_BYTES = 4096
ECHOED = ("StackId", "RequestId", "LogicalResourceId")
TRUNCATED = " [truncated]"


@dataclass(frozen=True)
class Answer:
    """What the resource says about one request, before it becomes a body."""

    status: Literal["SUCCESS", "FAILED"]
    physical_resource_id: str
    reason: str = ""
    data: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def success(cls, physical_resource_id: str, data: Mapping[str, str]) -> Answer:
        """A successful answer carrying ``Fn::GetAtt`` attributes."""
        return cls(SUCCESS, physical_resource_id, "", dict(data))

    @classmethod
    def failed(cls, physical_resource_id: str, reason: str) -> Answer:
        """A failed answer; ``reason`` is shown in the stack events."""
        return cls(FAILED, physical_resource_id, reason or "Unknown failure", {})


def build_body(event: Mapping[str, Any], answer: Answer) -> dict[str, Any]:
    """The response document, within CloudFormation's limits.

    The reason is cut to the longest prefix with which the whole serialised
    body fits in 4,096 bytes: the limit is on bytes, and a non-ASCII
    character takes up to 12 of them once JSON escapes it, so the cut is
    searched on the encoded body, never estimated from a character count.
    The full reason is logged (reasons never hold a sensitive value).
    """
    body: dict[str, Any] = {
        "Status": answer.status,
        "Reason": answer.reason,
        "PhysicalResourceId": answer.physical_resource_id,
        "StackId": event.get("StackId", ""),
        "RequestId": event.get("RequestId", ""),
        "LogicalResourceId": event.get("LogicalResourceId", ""),
        "NoEcho": False,
        "Data": dict(answer.data),
    }
    if len(encode(body)) > MAX_BODY_BYTES and answer.reason:
        logger.warning("reason truncated for CloudFormation", extra={"reason": answer.reason})
        body["Reason"] = _fitting_reason(body, answer.reason)
    if answer.status == FAILED and not body["Reason"]:
        body["Reason"] = "Failed (see the function's logs)"
    return body


def _fitting_reason(body: dict[str, Any], reason: str) -> str:
    """The longest ``reason[:n] + TRUNCATED`` that keeps ``body`` within the limit."""
    low, high = 0, len(reason)
    while low < high:
        middle = (low + high + 1) // 2
        if len(encode({**body, "Reason": reason[:middle] + TRUNCATED})) <= MAX_BODY_BYTES:
            low = middle
        else:
            high = middle - 1
    fitted = reason[:low] + TRUNCATED
    return fitted if len(encode({**body, "Reason": fitted})) <= MAX_BODY_BYTES else ""


def encode(body: Mapping[str, Any]) -> bytes:
    """The bytes that are sent."""
    return json.dumps(body, separators=(",", ":")).encode()


def contract_problems(event: Mapping[str, Any], body: Mapping[str, Any]) -> list[str]:
    """What in ``body`` breaks CloudFormation's response contract (empty when fine)."""
    problems = [f"{k} not echoed" for k in ECHOED if body.get(k) != event.get(k)]
    if body.get("Status") not in (SUCCESS, FAILED):
        problems.append("Status must be SUCCESS or FAILED")
    if not body.get("PhysicalResourceId"):
        problems.append("PhysicalResourceId is empty")
    if body.get("Status") == FAILED and not body.get("Reason"):
        problems.append("FAILED without a Reason")
    if len(encode(body)) > MAX_BODY_BYTES:
        problems.append(f"body is {len(encode(body))} bytes, over {MAX_BODY_BYTES}")
    if not all(isinstance(v, str) for v in (body.get("Data") or {}).values()):
        problems.append("Data values must be strings")
    return problems


@dataclass(frozen=True)
class DeliveryPolicy:
    """How the PUT is retried. Times in seconds."""

    attempt_timeout: float = TIMING.put_attempt_timeout
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 4.0


class ResponseSender:
    """PUTs a body to the ResponseURL with bounded, status-aware retries."""

    def __init__(
        self,
        policy: DeliveryPolicy | None = None,
        *,
        remaining: Callable[[], float] = lambda: float("inf"),
        sleep: Callable[[float], None] = time.sleep,
        opener: Callable[..., Any] = urllib.request.urlopen,
    ) -> None:
        self._policy = policy or DeliveryPolicy()
        self._remaining = remaining
        self._sleep = sleep
        self._open = opener

    def send(self, url: str, body: Mapping[str, Any]) -> bool:
        """Deliver ``body``; True once CloudFormation's store answered 2xx."""
        data = encode(body)
        policy = self._policy
        for attempt in range(1, policy.attempts + 1):
            timeout = max(0.5, min(policy.attempt_timeout, self._remaining() - 0.5))
            outcome = self._put(url, data, timeout)
            if outcome is None:
                logger.info(
                    "answered CloudFormation",
                    extra={"status": body.get("Status"), "attempt": attempt, "bytes": len(data)},
                )
                return True
            retryable, cause = outcome
            logger.warning("response not delivered", extra={"attempt": attempt, "cause": cause})
            if not retryable or attempt == policy.attempts:
                break
            delay = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
            if self._remaining() < delay + 1.0:
                break
            self._sleep(delay)
        logger.error("giving up delivering the response to CloudFormation")
        return False

    def _put(self, url: str, data: bytes, timeout: float) -> tuple[bool, str] | None:
        """One attempt: None when delivered, else (retryable, cause without the URL)."""
        try:
            request = urllib.request.Request(  # noqa: S310 - the URL is CloudFormation's https URL
                url,
                data=data,
                method="PUT",
                headers={"content-type": "", "content-length": str(len(data))},
            )
            with self._open(request, timeout=timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as error:
            status = int(error.code)
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            return True, f"network error: {type(reason).__name__}"
        except ValueError:
            return False, "the ResponseURL is not a URL"
        if 200 <= status < 300:
            return None
        return (status >= 500 or status == 429), f"HTTP {status}"
