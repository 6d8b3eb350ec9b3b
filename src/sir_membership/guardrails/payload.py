"""Reading a hook request's payload: only from the allowed S3 hosts, within the time.

A Lambda hook's request carries the templates (and a change set's
changes) in an Amazon S3 pre-signed URL, ``requestData.payload``. Whoever
may invoke the hook function can put any URL there, so the URL's
``scheme://host[:port]`` must match ``PayloadUrlPatterns`` before anything
is sent; the default is S3's https host forms (virtual-hosted and path
style, regional and legacy, in the commercial and China partitions). No
redirect is followed, the read is bounded in time and size, and the URL is
never logged or put in a message (it is a credential until it expires).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError, MalformedRequest, MembershipError
from ..guard import response_origin, url_allowed

#: S3's https host forms, where AWS documents the payload to be (a pre-signed S3 URL).
DEFAULT_PAYLOAD_PATTERNS = (
    "https://s3.amazonaws.com",
    "https://*.s3.amazonaws.com",
    "https://s3.*.amazonaws.com",
    "https://*.s3.*.amazonaws.com",
    "https://s3-*.amazonaws.com",
    "https://*.s3-*.amazonaws.com",
    "https://s3.*.amazonaws.com.cn",
    "https://*.s3.*.amazonaws.com.cn",
)
PATTERNS_VARIABLE = "PayloadUrlPatterns"
#: CloudFormation templates are at most 1 MB; a change set's payload adds its changes.
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024


class PayloadRefused(MembershipError):
    """The payload URL is not on an allowed host: nothing was sent to it."""


class PayloadUnreadable(MembershipError):
    """The payload could not be read, or is not the documented JSON object."""


def patterns(value: str | None) -> tuple[str, ...]:
    """``PayloadUrlPatterns`` (comma-separated origin globs), or the default."""
    if value is None or not value.strip():
        return DEFAULT_PAYLOAD_PATTERNS
    items = tuple(p.strip().lower() for p in value.split(","))
    if not all(p.startswith("https://") for p in items):
        raise ConfigurationError(f"{PATTERNS_VARIABLE} must list https:// origins only")
    return items


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could lead anywhere: it is an error, not followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch(
    url: object,
    allowed: tuple[str, ...],
    *,
    timeout: float,
    context: ssl.SSLContext | None = None,
) -> Mapping[str, Any]:
    """GET the payload (a JSON object) from an allowed host, or raise a one-line error."""
    if not isinstance(url, str) or not url:
        raise MalformedRequest("the hook request has no requestData.payload URL")
    if not url_allowed(url, allowed):
        origin = response_origin(url)
        host = origin.split("://", 1)[1] if origin else "(not an http(s) URL)"
        raise PayloadRefused(
            f"the payload URL's host {host} is not allowed by {PATTERNS_VARIABLE}: nothing "
            "was fetched"
        )
    if timeout <= 0:
        raise PayloadUnreadable("no time left to read the payload")
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context or ssl.create_default_context()),
        _NoRedirect(),
    )
    try:
        with opener.open(url, timeout=timeout) as answer:
            body = answer.read(MAX_PAYLOAD_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise PayloadUnreadable(f"the payload could not be read (HTTP {error.code})") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise PayloadUnreadable(
            f"the payload could not be read ({type(reason).__name__})"
        ) from None
    if len(body) > MAX_PAYLOAD_BYTES:
        raise PayloadUnreadable(f"the payload is larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError:
        raise PayloadUnreadable("the payload is not JSON") from None
    if not isinstance(document, Mapping):
        raise PayloadUnreadable("the payload is not a JSON object")
    return document
