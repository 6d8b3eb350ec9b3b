"""The CloudFormation Lambda Hook: the guardrails on every stack and change-set operation.

Registered by ``guardrails.yaml`` as ``AWS::CloudFormation::LambdaHook``
with TargetOperations STACK and CHANGE_SET. A request (the documented
shape: ``clientRequestToken``, ``stackId``, ``actionInvocationPoint``,
``requestData.targetType`` and ``payload``) is answered within the hook's
30 s:

* STACK: the payload holds ``template`` and ``previousTemplate`` as
  submitted (JSON or YAML), without parameter values, so a value that
  comes from a parameter is a hole (the rule warns, or fails under
  FailOnUnevaluable). A stack deletion's payload is empty: the deployed
  template is read with GetTemplate.
* CHANGE_SET: the payload's ``changedResources`` carry values
  CloudFormation has resolved; a removed resource's DeletionPolicy comes
  from its ``beforeContext``, else from the deployed template.

Each membership is read with GetMembership (the role's only security-ir
permission). Anything that stops the evaluation (a refused or unreadable
payload, a malformed request, bad settings) is answered FAILED with
InternalFailure and a one-line reason, never an exception. Nothing
logged or answered holds a sensitive value or the payload URL.

This module is never imported by the provider's handler, so the
provider's package does not ship it (``scripts/lean_package.py``).
"""

from __future__ import annotations

import logging
import os
import ssl
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import MalformedRequest, MembershipError
from ..preview.base import PreviewError, arn_part
from ..preview.template import StackContext, parse_template
from ..service import MembershipService, RetryPolicy
from .answer import hook_answer, internal_failure
from .declarations import Subject, change_subjects, needs_deployed_template, template_subjects
from .evaluate import Verdict, evaluate
from .payload import PATTERNS_VARIABLE, fetch, patterns
from .rules import Actual, Finding
from .settings import NAMES, Settings

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_security_ir import SecurityIncidentResponseClient

LOGGER = logging.getLogger("sir_membership.guardrails")
TARGETS = ("STACK", "CHANGE_SET")
INVOCATION_POINTS = ("CREATE_PRE_PROVISION", "UPDATE_PRE_PROVISION", "DELETE_PRE_PROVISION")
#: Seconds kept to answer, of the time the invocation has left.
ANSWER_RESERVE = 2.0
#: The hook waits 30 s; the function's timeout (guardrails.yaml) is 25 s.
BUDGET_SECONDS = 25.0
PAYLOAD_TIMEOUT = 5.0
#: One attempt per call (at most 7 s): MembershipService retries within the time left.
CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"total_max_attempts": 1, "mode": "standard"},
    user_agent_extra="sir-membership-guardrails",
)
READ_POLICY = RetryPolicy(max_attempts=3, max_delay=2.0, call_timeout=7.0, answer_reserve=1.0)


@dataclass(frozen=True)
class HookRequest:
    """The parts of a hook request the guardrails use (the payload URL never shown)."""

    token: str
    stack_id: str
    stack_name: str
    target: str
    invocation_point: str
    payload_url: str = field(repr=False)


def _text(event: Mapping[str, Any], *keys: str) -> str:
    """The first of ``keys`` that holds a string (the docs spell some keys two ways)."""
    for key in keys:
        value = event.get(key)
        if isinstance(value, str):
            return value
    return ""


def parse_request(event: Any) -> HookRequest:
    """The documented request, or ``MalformedRequest`` naming what is wrong."""
    if not isinstance(event, Mapping):
        raise MalformedRequest("the hook request is not a JSON object")
    data = event.get("requestData")
    if not isinstance(data, Mapping):
        raise MalformedRequest("the hook request has no requestData object")
    target = data.get("targetType")
    if target not in TARGETS:
        shown = target if isinstance(target, str) and target.isidentifier() else "(not shown)"
        raise MalformedRequest(
            f"targetType {shown} is not one this hook evaluates ({', '.join(TARGETS)})"
        )
    point = _text(event, "actionInvocationPoint")
    if point and point not in INVOCATION_POINTS:
        raise MalformedRequest("actionInvocationPoint is not a documented value")
    stack_id = _text(event, "stackId", "stackID")
    name = arn_part(stack_id, 5).split("/")[1] if arn_part(stack_id, 5).count("/") >= 1 else ""
    if target == "STACK":
        name = name or _text(data, "targetLogicalId")
    return HookRequest(
        token=_text(event, "clientRequestToken", "clientRequesttoken"),
        stack_id=stack_id,
        stack_name=name or "(stack)",
        target=str(target),
        invocation_point=point,
        payload_url=_text(data, "payload"),
    )


@dataclass(frozen=True)
class Deps:
    """Where the hook's I/O comes from, so tests hand in local servers and stubbed clients."""

    environment: Mapping[str, str]
    remaining: Callable[[], float]
    security_ir: Callable[[str], SecurityIncidentResponseClient]
    cloudformation: Callable[[str], CloudFormationClient]
    tls: ssl.SSLContext | None = None


def _template_text(payload: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    body = payload.get(key)
    if body is None or body == "":
        return None
    if not isinstance(body, str | Mapping):
        raise MalformedRequest(f"the payload's {key} is not a template")
    return parse_template(body)


def _without_defaults(template: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A STACK payload has no parameter values, and a Default may be overridden: drop them."""
    if template is None or not isinstance(template.get("Parameters"), Mapping):
        return template
    parameters = {
        name: {k: v for k, v in declared.items() if k != "Default"}
        if isinstance(declared, Mapping)
        else declared
        for name, declared in template["Parameters"].items()
    }
    return {**template, "Parameters": parameters}


def _deployed(request: HookRequest, deps: Deps) -> tuple[Mapping[str, Any] | None, str]:
    """The stack's deployed template (GetTemplate), or why it could not be read."""
    if deps.remaining() < READ_POLICY.call_timeout:
        return None, "no time left to read the deployed template"
    try:
        client = deps.cloudformation(_region(request))
        body = client.get_template(StackName=request.stack_id, TemplateStage="Original").get(
            "TemplateBody"
        )
        return parse_template(body), ""
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        return None, f"GetTemplate failed ({code})"
    except (BotoCoreError, PreviewError) as error:
        return None, f"the deployed template could not be read ({type(error).__name__})"


def _region(request: HookRequest) -> str:
    return arn_part(request.stack_id, 3) or os.environ.get("AWS_REGION", "us-east-1")


def _subjects(
    request: HookRequest, payload: Mapping[str, Any], settings: Settings, deps: Deps
) -> tuple[tuple[Subject, ...], Finding | None]:
    stack = request.stack_name
    tokens = settings.service_tokens
    if request.target == "CHANGE_SET":
        changes = payload.get("changedResources") or []
        if not isinstance(changes, Sequence) or isinstance(changes, str):
            raise MalformedRequest("the payload's changedResources is not a list")
        deployed = _deployed(request, deps)[0] if needs_deployed_template(changes) else None
        return change_subjects(stack, changes, tokens, deployed), None
    template = _template_text(payload, "template")
    previous = _template_text(payload, "previousTemplate")
    if template is None and previous is None and request.invocation_point.startswith("DELETE"):
        previous, why = _deployed(request, deps)
        if previous is None:
            lost = Finding(stack, "(stack)", "retain-on-removal", "unevaluable", why)
            return (), lost
    context = StackContext(request.stack_id, stack)
    subjects = template_subjects(
        stack,
        _without_defaults(template),
        _without_defaults(previous),
        context,
        service_tokens=tokens,
    )
    return subjects, None


def _actuals(subjects: Sequence[Subject], request: HookRequest, deps: Deps) -> dict[str, Actual]:
    """Each membership as GetMembership reads it (once per id), or why it could not be."""
    ids = [s.membership_id for s in subjects if s.membership_id]
    read: dict[str, Actual] = {}
    if ids:
        region = _region(request)
        service = MembershipService(
            deps.security_ir(region),
            lambda: deps.remaining() - ANSWER_RESERVE,
            policy=READ_POLICY,
            region=region,
            account_id=arn_part(request.stack_id, 4),
        )
        for mid in dict.fromkeys(ids):
            try:
                read[mid] = Actual(service.get(mid), "GetMembership")
            except MembershipError as error:
                read[mid] = Actual(None, error.reason)
    return {
        s.logical_id: read.get(s.membership_id or "", Actual(None, "its MembershipId is not known"))
        for s in subjects
    }


def evaluate_request(request: HookRequest, deps: Deps) -> Verdict:
    """The verdict on one request: settings, payload, declarations, states, rules."""
    settings = Settings.from_mapping({k: v for k, v in deps.environment.items() if k in NAMES})
    allowed = patterns(deps.environment.get(PATTERNS_VARIABLE))
    timeout = min(PAYLOAD_TIMEOUT, deps.remaining() - ANSWER_RESERVE)
    payload = fetch(request.payload_url, allowed, timeout=timeout, context=deps.tls)
    subjects, lost = _subjects(request, payload, settings, deps)
    if lost is not None:
        return Verdict((lost,), settings.fail_on_unevaluable, 1)
    return evaluate(subjects, _actuals(subjects, request, deps), settings)


def handle(event: Any, deps: Deps) -> dict[str, Any]:
    """One hook invocation -> its response. Never raises."""
    token = (
        _text(event, "clientRequestToken", "clientRequesttoken")
        if isinstance(event, Mapping)
        else ""
    )
    try:
        request = parse_request(event)
        verdict = evaluate_request(request, deps)
    except (MembershipError, PreviewError) as error:
        reason = error.reason if isinstance(error, MembershipError) else str(error)
        LOGGER.warning("not evaluated: %s: %s", type(error).__name__, reason)
        return internal_failure(token, reason)
    except (BotoCoreError, ClientError) as error:
        LOGGER.warning("not evaluated: %s", type(error).__name__)
        return internal_failure(token, f"an AWS call failed ({type(error).__name__})")
    except Exception as error:  # noqa: BLE001 - the hook's contract: an answer, never a crash
        # Logged by type and place only: its text could quote a value of the payload.
        where = traceback.extract_tb(error.__traceback__)[-1]
        LOGGER.error(  # noqa: TRY400 - no traceback text: it would carry the error's message
            "not evaluated: unexpected %s at %s:%s",
            type(error).__name__,
            where.filename,
            where.lineno,
        )
        return internal_failure(token, f"unexpected {type(error).__name__} (a bug: report it)")
    LOGGER.info(
        "evaluated target=%s point=%s resources=%d failures=%s warnings=%d",
        request.target,
        request.invocation_point or "-",
        verdict.resources,
        ",".join(f"{f.logical_id}:{f.rule}" for f in verdict.failures) or "none",
        len(verdict.warnings),
    )
    return hook_answer(token, verdict)


def security_ir_client(region: str) -> SecurityIncidentResponseClient:
    """A security-ir client with timeouts that fit the hook's 30 s."""
    return boto3.client("security-ir", region_name=region, config=CLIENT_CONFIG)


def cloudformation_client(region: str) -> CloudFormationClient:
    """A CloudFormation client (GetTemplate only) with the same timeouts."""
    return boto3.client("cloudformation", region_name=region, config=CLIENT_CONFIG)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point (``sir_membership.guardrails.hook.handler``)."""
    end = time.monotonic() + BUDGET_SECONDS

    def remaining() -> float:
        left = end - time.monotonic()
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            left = min(left, context.get_remaining_time_in_millis() / 1000.0)
        return left

    deps = Deps(dict(os.environ), remaining, security_ir_client, cloudformation_client)
    return handle(event, deps)
