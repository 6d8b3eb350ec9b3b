"""Handlers that break the response contract on purpose, to test the driver's refusals.

The worker imports this module (``e2e.fake_handlers.handler``) in place of
the real handler. ``ResourceProperties.Mode`` picks the misbehaviour.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any


def _put(url: str, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="PUT", headers={"content-type": ""})
    with urllib.request.urlopen(request, timeout=10):
        pass


def _body(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Status": "SUCCESS",
        "Reason": "",
        "PhysicalResourceId": "fake-physical-id",
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": {},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def handler(event: dict[str, Any], context: Any) -> None:
    """Answer (or not) as ``Mode`` says."""
    mode = event["ResourceProperties"].get("Mode", "ok")
    url = event["ResponseURL"]
    if mode == "ok":
        _put(url, _body(event))
    elif mode == "no-request-id":
        _put(url, _body(event, RequestId=None))
    elif mode == "other-stack-id":
        _put(url, _body(event, StackId=event["StackId"] + "-other"))
    elif mode == "other-logical-id":
        _put(url, _body(event, LogicalResourceId="Other"))
    elif mode == "empty-physical-id":
        _put(url, _body(event, PhysicalResourceId=""))
    elif mode == "failed-without-reason":
        _put(url, _body(event, Status="FAILED", Reason=""))
    elif mode == "too-big":
        _put(url, _body(event, Data={"Blob": "x" * 5000}))
    elif mode == "twice":
        _put(url, _body(event))
        _put(url, _body(event))
    elif mode == "silent":
        return
    elif mode == "sleep":
        time.sleep(60)
    elif mode == "raise":
        raise RuntimeError("boom")
    elif mode == "leak":
        print(json.dumps(event))
        _put(url, _body(event))
    else:
        raise ValueError(mode)
