"""Run ministack with property values in ``DescribeChangeSet`` (``IncludePropertyValues``).

Why: ``sir-membership plan --change-set-name`` predicts the function's calls
from each change's ``BeforeContext`` and ``AfterContext``, which CloudFormation
returns when ``DescribeChangeSet`` is called with ``IncludePropertyValues``.
ministack 1.5.33 computes a change set from the old and new templates with
every intrinsic resolved (parameters, ``Fn::ImportValue``, ``Fn::If`` and
``AWS::NoValue``), but its ``DescribeChangeSet`` ignores
``IncludePropertyValues`` and returns no contexts. This launcher keeps
ministack's own resolved values with each change and writes them as the two
contexts, in AWS's shape (a JSON string ``{"Properties": {...}}``; a custom
resource's scalars as strings, as ministack sends them to the function).
Nothing else in ministack changes: the actions, replacements, details and
the execution are ministack's.

It also records, when ``SIRLOCAL_CFN_LOG`` names a file, every custom
resource request ministack's CloudFormation sends and every PUT to its
ResponseURL, as JSON lines (:func:`record_requests`): stack events show one
outcome per resource operation, not how many answers were sent, nor a late
answer to a request CloudFormation has given up on (ministack answers such a
PUT 200 and drops it). Only a hash of the ResponseURL's token is written.

Run by :mod:`sirlocal.ministack` in ministack's own virtualenv (``python -I
ministack_contexts.py``), so it imports only the standard library and
ministack; ministack's settings come from the environment as usual.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from xml.sax.saxutils import escape

#: The file the custom resource requests and answers are appended to (unset: not recorded).
LOG_VARIABLE = "SIRLOCAL_CFN_LOG"
#: Where each change keeps its contexts (ministack reads only ``ResourceChange``).
CONTEXTS_KEY = "_sirlocal_contexts"
CLOSE = "</ResourceChange>"


def strip_no_value(value: Any, no_value: object) -> Any:
    """``value`` without ministack's ``AWS::NoValue`` sentinel (a key or item it resolves to)."""
    if isinstance(value, Mapping):
        return {k: strip_no_value(v, no_value) for k, v in value.items() if v is not no_value}
    if isinstance(value, list):
        return [strip_no_value(v, no_value) for v in value if v is not no_value]
    return value


def context(
    resolved: Mapping[str, Any],
    logical_id: str,
    no_value: object,
    normalise: Callable[[Any], Any],
) -> str | None:
    """One resource's context as AWS writes it, or None when the template lacks it."""
    resource = (resolved.get("Resources") or {}).get(logical_id)
    if not isinstance(resource, Mapping):
        return None
    properties = strip_no_value(resource.get("Properties") or {}, no_value)
    resource_type = str(resource.get("Type", ""))
    if (
        resource_type.startswith("Custom::")
        or resource_type == "AWS::CloudFormation::CustomResource"
    ):
        properties = normalise(properties)
    return json.dumps({"Properties": properties}, separators=(",", ":"), default=str)


def with_contexts(xml: str, contexts: list[tuple[str | None, str | None]]) -> str:
    """``DescribeChangeSet`` XML with each ``ResourceChange`` given its two contexts.

    The changes are written in the change set's order, so the n-th closing
    tag belongs to the n-th change.
    """
    parts = xml.split(CLOSE)
    if len(parts) - 1 != len(contexts):
        return xml  # not the shape this was written for: leave the answer alone
    out = []
    for part, (before, after) in zip(parts, [*contexts, (None, None)], strict=True):
        extra = "".join(
            f"<{tag}>{escape(text)}</{tag}>"
            for tag, text in (("BeforeContext", before), ("AfterContext", after))
            if text is not None
        )
        out.append(part + extra)
    return CLOSE.join(out)


def install() -> None:
    """Patch ministack's change-set module and its action table (ministack 1.5.33)."""
    from ministack.services.cloudformation import (  # type: ignore[import-not-found]  # noqa: PLC0415
        changesets,
        handlers,
    )
    from ministack.services.cloudformation.custom_resource import (  # type: ignore[import-not-found]  # noqa: PLC0415
        _normalise_resource_properties,
    )
    from ministack.services.cloudformation.engine import (  # type: ignore[import-not-found]  # noqa: PLC0415
        _NO_VALUE,
    )

    original_diff = changesets._diff_resources
    original_describe = changesets._describe_change_set

    def diff_with_contexts(old: Any, new: Any, *args: Any, **kwargs: Any) -> Any:
        changes = original_diff(old, new, *args, **kwargs)
        for change in changes:
            logical_id = change["ResourceChange"]["LogicalResourceId"]
            change[CONTEXTS_KEY] = (
                context(old, logical_id, _NO_VALUE, _normalise_resource_properties),
                context(new, logical_id, _NO_VALUE, _normalise_resource_properties),
            )
        return changes

    def describe_with_contexts(params: Any) -> Any:
        status, headers, body = original_describe(params)
        wanted = str(changesets._p(params, "IncludePropertyValues", "false")).lower() == "true"
        if status != 200 or not wanted:
            return status, headers, body
        _, change_set = changesets._find_change_set(
            changesets._p(params, "ChangeSetName"), changesets._p(params, "StackName")
        )
        contexts = [
            change.get(CONTEXTS_KEY, (None, None)) for change in change_set.get("Changes", [])
        ]
        return status, headers, with_contexts(body.decode("utf-8"), contexts).encode("utf-8")

    changesets._diff_resources = diff_with_contexts
    changesets._describe_change_set = describe_with_contexts
    handlers._ACTION_HANDLERS["DescribeChangeSet"] = describe_with_contexts


def token_hash(token: str) -> str:
    """A short hash of a ResponseURL token (the token itself is never written)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def answer_record(
    token: str, known: bool, response: Mapping[str, Any], now: float
) -> dict[str, Any]:
    """One PUT to a ResponseURL as logged: who answered what, never ``Data``."""
    return {
        "kind": "answer",
        "t": now,
        "token": token_hash(token),
        "known": known,
        "status": str(response.get("Status", "")),
        "requestId": str(response.get("RequestId", "")),
        "stackId": str(response.get("StackId", "")),
        "logicalId": str(response.get("LogicalResourceId", "")),
        "reason": str(response.get("Reason") or ""),
        "physicalId": str(response.get("PhysicalResourceId") or ""),
    }


def record_requests(path: str) -> None:
    """Log each custom resource request, each answer PUT and how CloudFormation settled it."""
    from ministack.services.cloudformation import (  # type: ignore[import-not-found]  # noqa: PLC0415
        custom_resource,
    )

    lock = threading.Lock()
    current = threading.local()

    def write(record: Mapping[str, Any]) -> None:
        with lock, open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    original_invoke = custom_resource.invoke_custom_resource
    original_register = custom_resource.register_token
    original_deliver = custom_resource.deliver_response

    def invoke(
        request_type: str,
        logical_id: str,
        props: Any,
        stack_name: str,
        stack_id: str,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        current.request = {
            "requestType": request_type,
            "logicalId": logical_id,
            "stackId": stack_id,
            "serviceTimeout": str((props or {}).get("ServiceTimeout", "")),
        }
        settled = "answered"
        try:
            return original_invoke(
                request_type, logical_id, props, stack_name, stack_id, *args, **kwargs
            )
        except TimeoutError:
            settled = "timed-out"
            raise
        except RuntimeError:
            settled = "failed"
            raise
        finally:
            token = getattr(current, "token", None)
            current.request = current.token = None
            if token is not None:
                write(
                    {
                        "kind": "settled",
                        "t": time.time(),
                        "token": token_hash(token),
                        "settled": settled,
                    }
                )

    def register(token: str) -> Any:
        request = getattr(current, "request", None) or {}
        current.token = token
        write({"kind": "request", "t": time.time(), "token": token_hash(token), **request})
        return original_register(token)

    def deliver(token: str, response: Any) -> bool:
        known = bool(original_deliver(token, response))
        write(
            answer_record(
                token, known, response if isinstance(response, Mapping) else {}, time.time()
            )
        )
        return known

    custom_resource.invoke_custom_resource = invoke
    custom_resource.register_token = register
    custom_resource.deliver_response = deliver


def main() -> None:
    """Patch, then run ministack exactly as its ``ministack`` command does."""
    install()
    if os.environ.get(LOG_VARIABLE):
        record_requests(os.environ[LOG_VARIABLE])
    from ministack.app import (  # type: ignore[import-not-found]  # noqa: PLC0415
        main as ministack_main,
    )

    sys.argv = ["ministack"]
    ministack_main()


if __name__ == "__main__":
    main()
