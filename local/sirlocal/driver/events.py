"""The events CloudFormation sends a custom resource, and the answers it accepts.

Why: the driver must send what CloudFormation sends (string scalars, the
ServiceToken first, the resource's ServiceTimeout) and refuse what
CloudFormation would refuse; both rules live here, apart from the processes
that play them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from sirlocal.receiver import ReceivedPut
from sirlocal.worker import ACCOUNT_ID, DEFAULT_FUNCTION_NAME

REGION = "us-east-1"
RESOURCE_TYPE = "Custom::SecurityIRMembership"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{DEFAULT_FUNCTION_NAME}"
MAX_BODY_BYTES = 4096
#: CloudFormation's default (and largest) ServiceTimeout of a custom resource, seconds.
MAX_SERVICE_TIMEOUT = 3600.0
NO_RESPONSE_REASON = (
    "CloudFormation did not receive a response from your Custom Resource before the "
    "ServiceTimeout. Please check your custom resource function's logs"
)

RequestType = Literal["Create", "Update", "Delete"]


def cfn_value(value: Any) -> Any:
    """A property value as CloudFormation delivers it: scalars become strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): cfn_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [cfn_value(v) for v in value]
    return value


def cfn_properties(
    properties: Mapping[str, Any], *, service_token: str = FUNCTION_ARN, service_timeout: int = 600
) -> dict[str, Any]:
    """``ResourceProperties`` for a declared property set (ServiceToken first, like CloudFormation)."""
    out: dict[str, Any] = {"ServiceToken": service_token, "ServiceTimeout": str(service_timeout)}
    out.update(cfn_value(dict(properties)))
    return out


def service_timeout(event: Mapping[str, Any]) -> float:
    """Seconds CloudFormation waits for the answer to ``event``, from when it sent it.

    The resource's ``ServiceTimeout`` (a string of 1..3600 in the event's
    ResourceProperties), else 3600. CloudFormation refuses other values
    before it invokes anything; here they are clamped, so a test of bad
    input still gets a delivery.
    """
    raw = (event.get("ResourceProperties") or {}).get("ServiceTimeout")
    try:
        seconds = float(raw) if raw is not None else MAX_SERVICE_TIMEOUT
    except (TypeError, ValueError):
        return MAX_SERVICE_TIMEOUT
    return min(max(seconds, 1.0), MAX_SERVICE_TIMEOUT)


def response_problems(event: Mapping[str, Any], put: ReceivedPut) -> list[str]:
    """Why CloudFormation would refuse (or misread) this answer to ``event``; [] if fine."""
    problems = [f"receiver: {p}" for p in put.problems]
    if len(put.raw.encode()) > MAX_BODY_BYTES:
        problems.append(f"body is {len(put.raw.encode())} bytes, over {MAX_BODY_BYTES}")
    body = put.body
    if not isinstance(body, dict):
        return [*problems, "body is not a JSON object"]
    for key in ("StackId", "RequestId", "LogicalResourceId"):
        if not body.get(key):
            problems.append(f"{key} is missing")
        elif body[key] != event.get(key):
            problems.append(f"{key} does not echo the request")
    if body.get("Status") not in ("SUCCESS", "FAILED"):
        problems.append("Status is not SUCCESS or FAILED")
    physical = body.get("PhysicalResourceId")
    if not isinstance(physical, str) or not physical:
        problems.append("PhysicalResourceId is empty")
    elif len(physical) > 1024:
        problems.append("PhysicalResourceId is over 1 KB")
    if body.get("Status") == "FAILED" and not str(body.get("Reason") or "").strip():
        problems.append("FAILED without a Reason")
    if "Data" in body and not isinstance(body["Data"], dict):
        problems.append("Data is not an object")
    return problems
