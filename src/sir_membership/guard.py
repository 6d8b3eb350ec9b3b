"""Which events the function serves at all, decided before anything else runs (pure).

The function holds a role that can rewrite an organization's incident
response team and coverage, and anyone who may invoke it (directly, or
through any stack that names its ServiceToken) can hand it any event. So
before the idempotency layer, crhelper or any security-ir call, ``screen``
sorts every event into one of three verdicts:

* ``Unanswerable``: there is no ``ResponseURL`` the function may PUT to (none,
  not a URL, or not one that reaches CloudFormation's response bucket of the
  function's own region over https, ``response_bucket``; when
  ``RESPONSE_URL_PATTERNS`` is set, for the local stand-ins, one whose
  ``scheme://host[:port]`` matches none of its patterns). Nothing is done
  and nothing is sent: an answer to an arbitrary host would hand it the
  membership's ARN, account and status, and doing the work without
  answering would be a write nobody asked CloudFormation for.
* ``Refused``: the answer may go to the URL, but the event is not one this
  provider serves: not CloudFormation's shape (a key missing or mistyped, an
  unknown RequestType), a stack whose name matches none of
  ``ALLOWED_STACK_NAMES``, or a StackId in another account or region than
  the function's own (a confused deputy: the caller would change the
  membership without holding ``security-ir:UpdateMembership`` itself). It is
  answered FAILED with a one-line reason and nothing is read or written.
* ``Accepted``: CloudFormation's keys only (anything else, such as crhelper's
  ``CrHelperData``, is dropped), for the normal path.

Every verdict carries ``echo``: the fields an answer repeats, each kept only
if it has CloudFormation's shape, so an answer built from it is always small
(well within 4,096 bytes) and no log line built from it carries a value the
caller made up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

from .errors import MalformedRequest, MembershipError, RequestNotAllowed
from .response_bucket import ResponseBucket, reaches

#: Replaces the default (CloudFormation's response bucket) with origin globs: local stand-ins only.
URL_PATTERNS_VARIABLE = "RESPONSE_URL_PATTERNS"
#: The function's region (Lambda sets it): whose response bucket answers go to.
REGION_VARIABLE = "AWS_REGION"
STACK_NAMES_VARIABLE = "ALLOWED_STACK_NAMES"
REQUEST_TYPES = ("Create", "Update", "Delete")
#: The keys CloudFormation sends to a custom resource; anything else is dropped.
CLOUDFORMATION_KEYS = (
    "RequestType",
    "ServiceToken",
    "ResponseURL",
    "StackId",
    "RequestId",
    "LogicalResourceId",
    "ResourceType",
    "PhysicalResourceId",
    "ResourceProperties",
    "OldResourceProperties",
)

_PARTITION = r"aws(?:-[a-z]+){0,3}"
_REGION = r"[a-z]{2}(?:-[a-z]+){1,3}-\d{1,2}"
_STACK_ARN = re.compile(
    rf"arn:(?P<partition>{_PARTITION}):cloudformation:(?P<region>{_REGION}):"
    r"(?P<account>\d{12}):stack/(?P<name>[A-Za-z][A-Za-z0-9-]{0,127})/[A-Za-z0-9-]{1,64}"
)
_FUNCTION_ARN = re.compile(
    rf"arn:(?P<partition>{_PARTITION}):lambda:(?P<region>{_REGION}):(?P<account>\d{{12}}):"
    r"function:[A-Za-z0-9_-]{1,140}(?::[A-Za-z0-9$_-]{1,128})?"
)
#: The fields an answer echoes (or derives its PhysicalResourceId from), and their shapes.
_ECHOED = {
    "RequestType": re.compile("|".join(REQUEST_TYPES)),
    "StackId": _STACK_ARN,
    "RequestId": re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"),
    "LogicalResourceId": re.compile(r"[A-Za-z0-9]{1,255}"),
    # Printable ASCII up to CloudFormation's 1 KB limit: what an earlier answer set.
    "PhysicalResourceId": re.compile(r"[\x20-\x7e]{0,1024}"),
}
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*|[0-9a-f:.]{{2,45}}")
_DEFAULT_PORTS = {"https": 443, "http": 80}
_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


@dataclass(frozen=True)
class Policy:
    """Where answers may go and which stacks are served (from the function's environment).

    Answers go to ``response_bucket`` (CloudFormation's, in the function's
    region; None when the region cannot be read, and then nowhere), unless
    ``url_patterns`` is set: then to the origins it matches, and only those.
    """

    response_bucket: ResponseBucket | None = None
    url_patterns: tuple[str, ...] | None = None
    stack_patterns: tuple[str, ...] = ("*",)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Policy:
        """Read the region and both lists; an unset list means its default, an empty one nothing."""
        urls = environ.get(URL_PATTERNS_VARIABLE)
        stacks = environ.get(STACK_NAMES_VARIABLE)
        region = environ.get(REGION_VARIABLE)
        return cls(
            response_bucket=None if region is None else ResponseBucket.for_region(region),
            url_patterns=None if urls is None else _split(urls.lower()),
            stack_patterns=("*",) if stacks is None else _split(stacks),
        )

    def admits(self, url: object) -> bool:
        """Whether the function may PUT its answer to ``url``."""
        if self.url_patterns is not None:
            return url_allowed(url, self.url_patterns)
        origin = response_origin(url)
        return (
            self.response_bucket is not None
            and isinstance(url, str)
            and origin == f"https://{urlsplit(url).hostname}"
            and reaches(self.response_bucket, url)
        )

    def refusal(self) -> str:
        """The log line for a ResponseURL ``admits`` refuses (names no part of the URL)."""
        if self.url_patterns is not None:
            return f"not answering: the ResponseURL's host matches none of {URL_PATTERNS_VARIABLE}"
        if self.response_bucket is None:
            return (
                f"not answering: {REGION_VARIABLE} is not set to a region, so no ResponseURL is "
                "known to be CloudFormation's"
            )
        return (
            "not answering: the ResponseURL is not CloudFormation's response bucket "
            f"{self.response_bucket.name} ({self.response_bucket.region}) over https"
        )


def _split(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


@dataclass(frozen=True)
class Unanswerable:
    """No allowed URL to answer: do nothing, send nothing, log ``why`` (and ``host``)."""

    why: str
    host: str = ""
    echo: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Refused:
    """Answer FAILED with ``error.reason`` before any read or write."""

    error: MembershipError
    echo: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Accepted:
    """CloudFormation's event, with only CloudFormation's keys, for the normal path."""

    event: dict[str, Any]
    echo: Mapping[str, str] = field(default_factory=dict)


Verdict = Unanswerable | Refused | Accepted


def response_origin(url: object) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, lower-cased; None if it is not one.

    A URL with user info, whitespace, control or non-ASCII characters is not
    one CloudFormation sends, so it has no origin. A default port is dropped
    (``https://h:443`` is ``https://h``).
    """
    if not isinstance(url, str) or not url.isascii() or not url.isprintable() or " " in url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    if scheme not in _DEFAULT_PORTS or not _HOST.fullmatch(host) or "@" in parts.netloc:
        return None
    shown = f"[{host}]" if ":" in host else host
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{shown}"
    return f"{scheme}://{shown}:{port}"


def is_function_arn(value: object) -> bool:
    """Whether ``value`` is a Lambda function ARN (an alias or version counts): a ServiceToken."""
    return isinstance(value, str) and _FUNCTION_ARN.fullmatch(value) is not None


def url_allowed(url: object, patterns: tuple[str, ...]) -> bool:
    """Whether ``url``'s origin matches one of the (fnmatch-style) ``patterns``."""
    origin = response_origin(url)
    return origin is not None and any(fnmatchcase(origin, p) for p in patterns)


def echo_fields(event: Mapping[str, Any]) -> dict[str, str]:
    """The echoed fields that have CloudFormation's shape ("" for the others)."""
    out = {}
    for key, shape in _ECHOED.items():
        value = event.get(key)
        out[key] = value if isinstance(value, str) and shape.fullmatch(value) else ""
    return out


def screen(event: object, function_arn: str, policy: Policy) -> Verdict:
    """The verdict on one raw event (see the module docstring)."""
    if not isinstance(event, Mapping):
        return Unanswerable("not answering: the event is not a JSON object")
    echo = echo_fields(event)
    url = event.get("ResponseURL")
    origin = response_origin(url)
    if origin is None:
        return Unanswerable("not answering: the event has no http(s) ResponseURL", echo=echo)
    if not policy.admits(url):
        host = str(urlsplit(str(url)).hostname)
        return Unanswerable(policy.refusal(), host=host, echo=echo)
    problem = _shape_problem(event, echo)
    if problem is not None:
        return Refused(problem, echo)
    refusal = stack_refusal(echo["StackId"], function_arn, policy.stack_patterns)
    if refusal is not None:
        return Refused(refusal, echo)
    clean = {k: event[k] for k in CLOUDFORMATION_KEYS if k in event}
    return Accepted(clean, echo)


def _kind(value: object) -> str:
    return next((name for t, name in _JSON_TYPES.items() if type(value) is t), "not JSON")


def _shape_problem(event: Mapping[str, Any], echo: Mapping[str, str]) -> MembershipError | None:
    """The first way ``event`` is not CloudFormation's, as a one-line error; None if none."""
    problems = _request_type_problems(event.get("RequestType"), echo["RequestType"])
    if not problems:
        problems = _field_problems(event, echo)
    return MalformedRequest(problems[0]) if problems else None


def _request_type_problems(request_type: object, valid: str) -> list[str]:
    if valid:
        return []
    if request_type is None:
        return ["Malformed request: RequestType is missing"]
    if not isinstance(request_type, str):
        return [f"Malformed request: RequestType must be a string, not {_kind(request_type)}"]
    # Named only when it reads as a word: anything else could be any value at all.
    shown = request_type if re.fullmatch(r"[A-Za-z]{1,32}", request_type) else "(unreadable)"
    return [f"Unsupported RequestType {shown}: CloudFormation sends Create, Update or Delete"]


def _field_problems(event: Mapping[str, Any], echo: Mapping[str, str]) -> list[str]:
    request_type = echo["RequestType"]
    needed = {
        "StackId": "a CloudFormation stack ARN",
        "RequestId": "CloudFormation's request id",
        "LogicalResourceId": "an alphanumeric logical id",
    }
    if request_type != "Create":
        needed["PhysicalResourceId"] = "a string of printable ASCII up to 1 KB"
    problems = []
    for key, expected in needed.items():
        if key not in event:
            problems.append(f"Malformed request: {key} is missing")
        elif not echo[key] and not (key == "PhysicalResourceId" and event[key] == ""):
            problems.append(f"Malformed request: {key} is not {expected}")
    for key in ("ResourceProperties", "OldResourceProperties"):
        required = key == "ResourceProperties" or request_type == "Update"
        if key not in event and required:
            problems.append(f"Malformed request: {key} is missing")
        elif key in event and not isinstance(event[key], Mapping):
            problems.append(f"Malformed request: {key} must be an object, not {_kind(event[key])}")
    for key in ("ServiceToken", "ResourceType"):
        if key in event and not isinstance(event[key], str):
            problems.append(f"Malformed request: {key} must be a string, not {_kind(event[key])}")
    return problems


def stack_refusal(
    stack_id: str, function_arn: str, patterns: tuple[str, ...]
) -> MembershipError | None:
    """Why the stack is not served (account/region rule, then AllowedStackNames); None if it is.

    Public because ``sir-membership plan`` applies the same check before a
    deploy, so a preview fails exactly as the function will.
    """
    stack = _STACK_ARN.fullmatch(stack_id)
    own = _FUNCTION_ARN.fullmatch(function_arn)
    if stack is None:  # _shape_problem has already refused it
        return MalformedRequest("Malformed request: StackId is not a CloudFormation stack ARN")
    if own is None:
        return RequestNotAllowed(
            "The function cannot read its own ARN to check the stack's account and region; "
            "invoke it by its function ARN (the provider's ServiceToken)"
        )
    theirs = (stack["partition"], stack["account"], stack["region"])
    ours = (own["partition"], own["account"], own["region"])
    if theirs != ours:
        return RequestNotAllowed(
            f"Stack {stack['name']} is in account {theirs[1]} ({theirs[2]}), but this provider "
            f"serves only its own account {ours[1]} ({ours[2]}): deploy a provider in that "
            "account and region and use its ServiceToken"
        )
    name = stack["name"]
    if not any(fnmatchcase(name, p) for p in patterns):
        allowed = ",".join(patterns) or "(empty)"
        widened = ",".join([*patterns, name])
        return RequestNotAllowed(
            f"Stack {name} may not use this provider: its name matches none of the provider "
            f"stack's AllowedStackNames ({allowed}); update the provider stack with a pattern "
            f"that matches it (e.g. AllowedStackNames={widened}), deploy this stack under a "
            "name that matches, or use a provider that serves it"
        )
    return None
