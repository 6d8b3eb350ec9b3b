"""A tiny handler for the Lambda endpoint's tests (imported by workers, not collected).

``Mode`` (in the event, or in ``ResourceProperties`` for a CloudFormation
event) picks what it does; ``Out`` names a file each invocation appends one
JSON line to (request id, pid, event), so a test can count runs.

* ``record``: only record; ``raise``: record, then raise; ``sleep``: record,
  then sleep ``Seconds``;
* ``continue``: as the provider does when a plan does not fit: invoke itself
  asynchronously (its own ARN, the SDK's ``AWS_ENDPOINT_URL_LAMBDA``) with
  ``Continued`` set and return without answering; the continuation answers;
* ``continue-silent``: the continuation never answers (it sleeps ``Seconds``);
* ``answer-and-continue``: answer, and continue anyway: the continuation
  answers a second time.

A Delete is answered SUCCESS at once whatever the mode (rollbacks stay quick).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from typing import Any


def _record(event: dict[str, Any], context: Any) -> None:
    out = event.get("Out") or event.get("ResourceProperties", {}).get("Out")
    if out:
        line = {"request_id": context.aws_request_id, "pid": os.getpid(), "event": event}
        with open(out, "a", encoding="utf-8") as file:
            file.write(json.dumps(line) + "\n")


def _answer(event: dict[str, Any]) -> None:
    body = {
        "Status": "SUCCESS",
        "Reason": "",
        "PhysicalResourceId": "async-physical-id",
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": {"Continued": str(bool(event.get("Continued")))},
    }
    request = urllib.request.Request(
        event["ResponseURL"],
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"content-type": ""},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def _continue(event: dict[str, Any], context: Any) -> None:
    import boto3  # noqa: PLC0415 - only the continuing modes need it

    boto3.client("lambda").invoke(
        FunctionName=context.invoked_function_arn,
        InvocationType="Event",
        Payload=json.dumps({**event, "Continued": True}).encode(),
    )


def handler(event: dict[str, Any], context: Any) -> None:
    """Do what ``Mode`` says."""
    _record(event, context)
    properties = event.get("ResourceProperties") or {}
    mode = event.get("Mode") or properties.get("Mode", "record")
    seconds = float(event.get("Seconds") or properties.get("Seconds") or 0)
    if event.get("RequestType") == "Delete":
        _answer(event)
    elif mode == "raise":
        raise RuntimeError("asked to fail")
    elif mode == "sleep":
        time.sleep(seconds)
    elif mode in ("continue", "continue-silent", "answer-and-continue"):
        if not event.get("Continued"):
            if mode == "answer-and-continue":
                _answer(event)
            _continue(event, context)
        elif mode == "continue-silent":
            time.sleep(seconds)
        else:
            _answer(event)
