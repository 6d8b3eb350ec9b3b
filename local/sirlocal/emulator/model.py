"""The emulator's view of botocore's ``security-ir`` model: validation and error answers.

Why: everything protocol-shaped comes from the installed botocore model, never
copied, so the emulator cannot drift from what boto3 sends and parses.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import botocore.session
from botocore.model import (
    ListShape,
    MapShape,
    ServiceModel,
    Shape,
    StringShape,
    StructureShape,
)

from sirlocal.tagging import TAG_OPERATIONS

SERVICE_NAME = "security-ir"
EMULATED_OPERATIONS = ("GetMembership", "UpdateMembership", "ListMemberships", *TAG_OPERATIONS)
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
CONTROL_PREFIX = "/_emulator"
FAULT_KINDS = ("error", "reset", "hang", "lost", "block")

# Defaults for required members of error shapes that a fault does not supply.
_ERROR_FIELD_DEFAULTS = {
    "reason": "OTHER",
    "resourceType": "membership",
    "serviceCode": SERVICE_NAME,
    "quotaCode": "L-EMULATED",
}


@functools.cache
def service_model() -> ServiceModel:
    """The ``security-ir`` model shipped with the installed botocore (loaded once)."""
    return botocore.session.get_session().get_service_model(SERVICE_NAME)


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class FieldViolation:
    """One failed constraint, named by its path in the request (``a.b[0].c``)."""

    name: str
    message: str


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def validate(shape: Shape, value: Any, path: str = "") -> list[FieldViolation]:
    """Check ``value`` against ``shape`` the way the service does, recursively.

    botocore's client-side ParamValidator skips ``pattern`` and ``max``; the
    service does not, so the emulator must. Patterns must match in full.
    ``None`` members count as absent. Messages never contain the value.
    """
    kind = shape.type_name
    if kind == "structure":
        return _validate_structure(cast(StructureShape, shape), value, path)
    if kind == "list":
        return _validate_list(cast(ListShape, shape), value, path)
    if kind == "map":
        return _validate_map(cast(MapShape, shape), value, path)
    if kind == "string":
        return _validate_string(shape, value, path)
    if kind in ("integer", "long"):
        return _validate_integer(shape, value, path)
    if kind == "boolean":
        ok = isinstance(value, bool)
        return [] if ok else [FieldViolation(path, "Member must be a boolean")]
    if kind in ("double", "float", "timestamp"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok or (kind == "timestamp" and isinstance(value, str))
        return [] if ok else [FieldViolation(path, f"Member must be a {kind}")]
    if kind == "blob":
        ok = isinstance(value, str)
        return [] if ok else [FieldViolation(path, "Member must be base64 text")]
    return []


def _validate_structure(shape: StructureShape, value: Any, path: str) -> list[FieldViolation]:
    if not isinstance(value, dict):
        return [FieldViolation(path or "body", "Member must be an object")]
    out = [
        FieldViolation(_join(path, name), "Member must not be null")
        for name in shape.required_members
        if value.get(name) is None
    ]
    for name, member_value in value.items():
        member = shape.members.get(name)
        if member is None:
            out.append(FieldViolation(_join(path, name), f"Member is not part of {shape.name}"))
        elif member_value is not None:
            out.extend(validate(member, member_value, _join(path, name)))
    return out


def _length_violations(shape: Shape, length: int, path: str) -> list[FieldViolation]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and length < low:
        return [FieldViolation(path, f"Member must have length greater than or equal to {low}")]
    if high is not None and length > high:
        return [FieldViolation(path, f"Member must have length less than or equal to {high}")]
    return []


def _validate_list(shape: ListShape, value: Any, path: str) -> list[FieldViolation]:
    if not isinstance(value, list):
        return [FieldViolation(path, "Member must be a list")]
    out = _length_violations(shape, len(value), path)
    for index, item in enumerate(value):
        out.extend(validate(shape.member, item, f"{path}[{index}]"))
    return out


def _validate_map(shape: MapShape, value: Any, path: str) -> list[FieldViolation]:
    if not isinstance(value, dict):
        return [FieldViolation(path, "Member must be a map")]
    out = _length_violations(shape, len(value), path)
    for key, item in value.items():
        out.extend(validate(shape.key, key, f"{path}.<key>"))
        out.extend(validate(shape.value, item, f"{path}.{key}"))
    return out


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:  # an ECMA-only construct: do not guess, skip the check
        return None


def _validate_string(shape: Shape, value: Any, path: str) -> list[FieldViolation]:
    if not isinstance(value, str):
        return [FieldViolation(path, "Member must be a string")]
    enum = cast(StringShape, shape).enum
    if enum and value not in enum:
        return [FieldViolation(path, f"Member must satisfy enum value set: [{', '.join(enum)}]")]
    out = _length_violations(shape, len(value), path)
    pattern = shape.metadata.get("pattern")
    regex = _compiled(pattern) if pattern else None
    if regex is not None and not regex.fullmatch(value):
        out.append(
            FieldViolation(path, f"Member must satisfy regular expression pattern: {pattern}")
        )
    return out


def _validate_integer(shape: Shape, value: Any, path: str) -> list[FieldViolation]:
    if not isinstance(value, int) or isinstance(value, bool):
        return [FieldViolation(path, "Member must be an integer")]
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and value < low:
        return [FieldViolation(path, f"Member must have value greater than or equal to {low}")]
    if high is not None and value > high:
        return [FieldViolation(path, f"Member must have value less than or equal to {high}")]
    return []


# --------------------------------------------------------------------------- errors


class ServiceError(Exception):
    """An answer in one of the model's error shapes (status, header and body from the model)."""

    def __init__(self, code: str, message: str, **fields: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = fields
        #: HTTP headers outside the error shape (e.g. ``Retry-After`` on a Conflict).
        self.headers: dict[str, str] = {}

    @property
    def status(self) -> int:
        """HTTP status from the error shape's ``error.httpStatusCode`` (404 if unmodelled)."""
        try:
            return int(service_model().shape_for(self.code).metadata["error"]["httpStatusCode"])
        except Exception:
            return 404

    def render(self, resource_id: str | None) -> tuple[dict[str, str], dict[str, Any]]:
        """Headers and JSON body for this error, filling the shape's required members.

        botocore's rest-json parser takes the code from ``x-amzn-ErrorType``
        and the modelled members from the body (or headers, per ``location``).
        """
        values: dict[str, Any] = {"message": self.message, **self.fields}
        headers = {"x-amzn-ErrorType": self.code, **self.headers}
        try:
            shape: StructureShape | None = cast(
                StructureShape, service_model().shape_for(self.code)
            )
        except Exception:
            shape = None
        if shape is None:
            return headers, values
        for name in shape.required_members:
            if name not in values:
                default = resource_id if name == "resourceId" else _ERROR_FIELD_DEFAULTS.get(name)
                values[name] = default or "unknown"
        body: dict[str, Any] = {}
        for name, value in values.items():
            member = shape.members.get(name)
            if member is not None and member.serialization.get("location") == "header":
                headers[member.serialization.get("name", name)] = str(value)
            else:
                body[name] = value
        return headers, body


def validation_error(
    violations: Sequence[FieldViolation], reason: str = "FIELD_VALIDATION_FAILED"
) -> ServiceError:
    """A ValidationException listing every violation, in the service's message style."""
    count = len(violations)
    summary = "; ".join(
        f"Value at '{v.name}' failed to satisfy constraint: {v.message}" for v in violations
    )
    noun = "error" if count == 1 else "errors"
    return ServiceError(
        "ValidationException",
        f"{count} validation {noun} detected: {summary}",
        reason=reason,
        fieldList=[{"name": v.name, "message": v.message} for v in violations],
    )


def _invalid(name: str, message: str) -> ServiceError:
    return validation_error([FieldViolation(name, message)])
