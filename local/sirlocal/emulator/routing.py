"""Routing and request parsing from the model's ``http`` traits (method, URI, query)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from sirlocal.emulator.model import (
    FieldViolation,
    _invalid,
    service_model,
    validate,
    validation_error,
)

# --------------------------------------------------------------------------- routing and parsing


@dataclass(frozen=True)
class _Route:
    method: str
    regex: re.Pattern[str]
    operation: str


def _routes() -> list[_Route]:
    """One route per model operation, from its ``http.method`` and ``http.requestUri``."""
    routes = []
    for name in service_model().operation_names:
        http = service_model().operation_model(name).http
        path = http["requestUri"].split("?", 1)[0]
        pattern = ""
        for literal, label in re.findall(r"([^{]*)(?:\{([^}]*)\})?", path):
            pattern += re.escape(literal)
            if label.endswith("+"):
                pattern += f"(?P<{label[:-1]}>.+)"
            elif label:
                pattern += f"(?P<{label}>[^/]+)"
        routes.append(_Route(http["method"], re.compile(pattern), name))
    return routes


def _match_route(
    routes: Sequence[_Route], method: str, path: str
) -> tuple[str, dict[str, str]] | None:
    for route in routes:
        found = route.regex.fullmatch(path)
        if found and route.method == method:
            return route.operation, {k: unquote(v) for k, v in found.groupdict().items()}
    return None


def _parse_input(
    operation: str, uri_params: Mapping[str, str], query: Mapping[str, list[str]], raw: bytes
) -> dict[str, Any]:
    """Request parameters: the JSON body plus the members bound to the URI or query string."""
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise validation_error(
            [FieldViolation("body", "Request body is not a JSON object")], "CANNOT_PARSE"
        )
    shape = service_model().operation_model(operation).input_shape
    params = dict(body)
    if shape is None:
        return params
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if location in ("uri", "querystring") and name in body:
            raise _invalid(name, "Member is not part of the request body")
        if location == "uri" and wire in uri_params:
            params[name] = uri_params[wire]
        elif location == "querystring" and wire in query and member.type_name == "list":
            params[name] = list(query[wire])
        elif location == "querystring" and wire in query:
            value: Any = query[wire][-1]
            params[name] = (
                int(value) if member.type_name in ("integer", "long") and value.isdigit() else value
            )
    return params


def _arn_membership_id(arn: str | None) -> str | None:
    """The membership id at the end of a membership ARN (for the call records)."""
    if arn and ":membership/" in arn:
        return arn.rsplit("/", 1)[-1]
    return None


def _check_input(operation: str, params: Mapping[str, Any]) -> None:
    shape = service_model().operation_model(operation).input_shape
    violations = validate(shape, dict(params)) if shape is not None else []
    if violations:
        raise validation_error(violations)
