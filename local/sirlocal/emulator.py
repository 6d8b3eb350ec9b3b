"""A local Security Incident Response (``security-ir``) emulator on 127.0.0.1.

Why: the provider's behaviour under the real service's rules and failures
(validation, strict OU add/remove, throttling, 5xx, resets, asynchronous
account propagation) must be testable offline and end to end, through an
unmodified boto3 client (``AWS_ENDPOINT_URL_SECURITY_IR`` or ``endpoint_url``).

Everything protocol-shaped comes from botocore's own service model, loaded at
run time and never copied: routes (method + URI template), input shapes
(validated by :func:`validate`), error shapes (HTTP status, required fields,
header-bound members) and output shapes. Error messages are built only from
field paths, constraints and identifiers, never from values, because names,
emails, job titles and the membership name are ``sensitive`` in the model.

Run in-process (``with SecurityIREmulator() as emu: ...``) or as a process
(``python -m sirlocal.emulator --port 0 --seed seed.json``, which prints one
JSON line ``{"url": ..., "port": ..., "pid": ...}`` once it is listening and
serves a control API under ``/_emulator/``; :class:`EmulatorControl` drives it).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import re
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit

import botocore.session
from botocore.model import (
    ListShape,
    MapShape,
    ServiceModel,
    Shape,
    StringShape,
    StructureShape,
)

from sirlocal import JSONRequestHandler, LoopbackHTTPServer, serve_until_signalled
from sirlocal.tagging import TAG_OPERATIONS, run_tag_operation

SERVICE_NAME = "security-ir"
EMULATED_OPERATIONS = ("GetMembership", "UpdateMembership", "ListMemberships", *TAG_OPERATIONS)
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
CONTROL_PREFIX = "/_emulator"
FAULT_KINDS = ("error", "reset", "hang")

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
        headers = {"x-amzn-ErrorType": self.code}
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


# --------------------------------------------------------------------------- memberships


def _default_team() -> list[dict[str, Any]]:
    return [
        {"name": "Primary Responder", "jobTitle": "Security Lead", "email": "lead@example.com"},
        {"name": "Backup Responder", "jobTitle": "Engineer", "email": "backup@example.com"},
    ]


def new_membership(spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A complete membership (GetMembershipResponse fields) from a partial ``spec``.

    Defaults make seeding easy; the result is validated against the model's
    GetMembershipResponse shape so a bad seed fails loudly, not mid-test.
    """
    m: dict[str, Any] = copy.deepcopy(dict(spec or {}))
    membership_id = m.setdefault("membershipId", "m-" + secrets.token_hex(8))
    account = m.setdefault("accountId", DEFAULT_ACCOUNT)
    region = m.setdefault("region", DEFAULT_REGION)
    m.setdefault(
        "membershipArn", f"arn:aws:security-ir:{region}:{account}:membership/{membership_id}"
    )
    m.setdefault("membershipName", "emulated-membership")
    m.setdefault("membershipStatus", "Active")
    m.setdefault("customerType", "Organization")
    # The emulator does not model the accounts inside OUs: the count is the
    # seed's, or the management account alone.
    m.setdefault("numberOfAccountsCovered", 1)
    m.setdefault("membershipActivationTimestamp", round(time.time(), 3))
    if m["membershipStatus"] != "Active":
        m.setdefault("membershipDeactivationTimestamp", round(time.time(), 3))
    m.setdefault("incidentResponseTeam", _default_team())
    m.setdefault("optInFeatures", [{"featureName": "Triage", "isEnabled": True}])
    accounts = m.setdefault("membershipAccountsConfigurations", {})
    accounts.setdefault("coverEntireOrganization", False)
    accounts.setdefault("organizationalUnits", [])
    shape = service_model().operation_model("GetMembership").output_shape
    assert shape is not None
    problems = validate(shape, m)
    if problems:
        raise ValueError(
            "invalid membership seed: " + "; ".join(f"{p.name}: {p.message}" for p in problems)
        )
    return m


def _duplicates(values: Sequence[str]) -> list[int]:
    seen: set[str] = set()
    dupes = []
    for index, value in enumerate(values):
        if value in seen:
            dupes.append(index)
        seen.add(value)
    return dupes


def _apply_accounts(
    accounts: dict[str, Any], change: Mapping[str, Any], violations: list[FieldViolation]
) -> bool:
    """Apply ``membershipAccountsConfigurationsUpdate`` strictly; True if the OUs changed."""
    prefix = "membershipAccountsConfigurationsUpdate"
    current: list[str] = list(accounts.get("organizationalUnits") or [])
    add: list[str] = list(change.get("organizationalUnitsToAdd") or [])
    remove: list[str] = list(change.get("organizationalUnitsToRemove") or [])
    for name, ous in (("organizationalUnitsToAdd", add), ("organizationalUnitsToRemove", remove)):
        for index in _duplicates(ous):
            violations.append(
                FieldViolation(f"{prefix}.{name}[{index}]", f"Duplicate OU {ous[index]}")
            )
    for index, ou in enumerate(add):
        if ou in remove:
            message = f"OU {ou} is in both organizationalUnitsToAdd and organizationalUnitsToRemove"
            violations.append(
                FieldViolation(f"{prefix}.organizationalUnitsToAdd[{index}]", message)
            )
        elif ou in current:
            message = f"OU {ou} is already associated with the membership"
            violations.append(
                FieldViolation(f"{prefix}.organizationalUnitsToAdd[{index}]", message)
            )
    for index, ou in enumerate(remove):
        if ou not in current and ou not in add:
            message = f"OU {ou} is not associated with the membership"
            violations.append(
                FieldViolation(f"{prefix}.organizationalUnitsToRemove[{index}]", message)
            )
    if "coverEntireOrganization" in change:
        accounts["coverEntireOrganization"] = change["coverEntireOrganization"]
    accounts["organizationalUnits"] = [ou for ou in current if ou not in remove] + add
    return bool(add or remove)


def apply_update(
    current: Mapping[str, Any], request: Mapping[str, Any]
) -> tuple[dict[str, Any], bool]:
    """UpdateMembership on one membership: the new membership and whether its OUs changed.

    Pure (works on a copy) so a request applies all or nothing. Raises
    :class:`ServiceError` (ValidationException) for every rule it breaks.
    """
    if current["membershipStatus"] == "Terminated":
        raise _invalid("membershipId", "Membership is Terminated and can no longer be updated")
    updated = copy.deepcopy(dict(current))
    violations: list[FieldViolation] = []
    undo = request.get("undoMembershipCancellation")
    if undo is False:
        violations.append(
            FieldViolation("undoMembershipCancellation", "Member must be true when present")
        )
    elif undo is True and current["membershipStatus"] != "Cancelled":
        violations.append(
            FieldViolation("undoMembershipCancellation", "Membership is not Cancelled")
        )
    elif undo is True:
        updated["membershipStatus"] = "Active"
        updated.pop("membershipDeactivationTimestamp", None)
    if "membershipName" in request:
        updated["membershipName"] = request["membershipName"]
    if "incidentResponseTeam" in request:
        updated["incidentResponseTeam"] = copy.deepcopy(request["incidentResponseTeam"])
    if "optInFeatures" in request:
        names = [feature["featureName"] for feature in request["optInFeatures"]]
        for index in _duplicates(names):
            violations.append(FieldViolation(f"optInFeatures[{index}]", "Duplicate featureName"))
        merged = {f["featureName"]: dict(f) for f in updated.get("optInFeatures") or []}
        for feature in request["optInFeatures"]:
            merged[feature["featureName"]] = {
                "featureName": feature["featureName"],
                "isEnabled": feature["isEnabled"],
            }
        updated["optInFeatures"] = list(merged.values())
    ous_changed = False
    change = request.get("membershipAccountsConfigurationsUpdate")
    if change is not None:
        accounts = updated.setdefault("membershipAccountsConfigurations", {})
        ous_changed = _apply_accounts(accounts, change, violations)
    if violations:
        raise validation_error(violations)
    return updated, ous_changed


# --------------------------------------------------------------------------- faults and records


@dataclass
class FaultRule:
    """One armed fault: which calls it hits and what it does to them.

    It sees every call of ``operation`` (``"*"``: any emulated operation)
    made after it was armed, and fires on the ``on_call``-th of them and on
    the following ones until it has fired ``times`` times (``None``: forever).
    ``kind`` is ``"error"`` (answer the model error ``error``), ``"reset"``
    (close the socket with RST, no answer) or ``"hang"`` (wait ``seconds``,
    then answer normally or as another firing rule says).
    """

    kind: str
    operation: str = "*"
    on_call: int = 1
    times: int | None = 1
    seconds: float = 0.0
    error: str | None = None
    id: int = 0
    seen: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        if self.operation != "*" and self.operation not in service_model().operation_names:
            raise ValueError(f"unknown operation {self.operation!r}")
        if self.kind == "error":
            self.error = self.error or "InternalServerException"
            try:
                is_error = bool(service_model().shape_for(self.error).metadata.get("exception"))
            except Exception:
                is_error = False
            if not is_error:
                raise ValueError(f"{self.error!r} is not an error shape of {SERVICE_NAME}")
        if self.on_call < 1 or (self.times is not None and self.times < 1) or self.seconds < 0:
            raise ValueError("on_call and times must be >= 1 and seconds >= 0")

    @property
    def label(self) -> str:
        """How the fault is named in call records, e.g. ``error:ThrottlingException``."""
        return f"error:{self.error}" if self.kind == "error" else self.kind

    @property
    def spent(self) -> bool:
        """True when the rule will never fire again."""
        return self.times is not None and self.fired >= self.times

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (for the control API)."""
        return asdict(self)


@dataclass(frozen=True)
class CallRecord:
    """One request the emulator answered (or dropped).

    Appended when the answer is decided, so a hung call lands after later
    quick ones; ``timestamp`` is its arrival time, ``duration`` its latency.
    """

    operation: str
    membership_id: str | None
    request: dict[str, Any]
    status: int | None
    error: str | None
    faults: list[str]
    timestamp: float
    duration: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (for the control API)."""
        return asdict(self)


@dataclass
class _Window:
    """Conflict window opened by an OU change while propagation is armed."""

    calls: int | None
    until: float | None

    def open(self, now: float) -> bool:
        calls_left = self.calls is None or self.calls > 0
        time_left = self.until is None or now < self.until
        return calls_left and time_left


class _Drop(Exception):
    """Internal: the answer is a connection reset."""


# --------------------------------------------------------------------------- controls


class FaultControls:
    """Named fault helpers shared by the in-process emulator and the remote control client."""

    def add_fault(
        self,
        kind: str,
        operation: str = "*",
        *,
        on_call: int = 1,
        times: int | None = 1,
        seconds: float = 0.0,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Arm a :class:`FaultRule`; returns it as a dict (with its ``id``)."""
        raise NotImplementedError

    def throttle(self, operation: str = "*", times: int = 1) -> dict[str, Any]:
        """The next ``times`` calls of ``operation`` answer ThrottlingException (429)."""
        return self.add_fault("error", operation, times=times, error="ThrottlingException")

    def fail(
        self,
        operation: str = "*",
        *,
        on_call: int = 1,
        times: int | None = 1,
        error: str = "InternalServerException",
    ) -> dict[str, Any]:
        """The ``on_call``-th call of ``operation`` (and ``times - 1`` after it) answer ``error``."""
        return self.add_fault("error", operation, on_call=on_call, times=times, error=error)

    def deny(self, operation: str = "*", times: int | None = None) -> dict[str, Any]:
        """Calls of ``operation`` answer AccessDeniedException (403), forever by default."""
        return self.add_fault("error", operation, times=times, error="AccessDeniedException")

    def reset_connection(
        self, operation: str = "*", *, on_call: int = 1, times: int = 1
    ) -> dict[str, Any]:
        """The ``on_call``-th call of ``operation`` gets a TCP reset instead of an answer."""
        return self.add_fault("reset", operation, on_call=on_call, times=times)

    def hang(
        self, operation: str = "*", seconds: float = 5.0, *, on_call: int = 1, times: int = 1
    ) -> dict[str, Any]:
        """The ``on_call``-th call of ``operation`` is answered only after ``seconds``."""
        return self.add_fault("hang", operation, on_call=on_call, times=times, seconds=seconds)


class SecurityIREmulator(FaultControls):
    """The emulator: state, faults and call records behind a loopback HTTP server.

    Thread-safe: every piece of shared state is guarded by one lock, held
    only for bookkeeping (never while sleeping for latency or a hang).
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, require_signature: bool = True
    ) -> None:
        self.host = host
        self.requested_port = port
        self.require_signature = require_signature
        self._lock = threading.RLock()
        self._memberships: dict[str, dict[str, Any]] = {}
        #: Tags by membership id (TagResource etc.; GetMembership does not return them).
        self._tags: dict[str, dict[str, str]] = {}
        self._calls: list[CallRecord] = []
        self._rules: list[FaultRule] = []
        self._next_rule_id = 1
        self._latency = 0.0
        self._propagation: _Window | None = None
        self._windows: dict[str, _Window] = {}
        self._routes = _routes()
        self._server: LoopbackHTTPServer | None = None
        self._port: int | None = None

    # lifecycle -----------------------------------------------------------------

    def start(self) -> SecurityIREmulator:
        """Listen on ``host:port`` (0 = ephemeral) and serve in a background thread."""
        if self._server is None:
            self._server = LoopbackHTTPServer((self.host, self.requested_port), _EmulatorHandler)
            self._server.app = self
            self._server.start_background("security-ir-emulator")
            self._port = self._server.port
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (waiting hangs are released)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> SecurityIREmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("emulator was never started")
        return self._port

    @property
    def endpoint_url(self) -> str:
        """Value for ``AWS_ENDPOINT_URL_SECURITY_IR`` / ``endpoint_url=``."""
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables pointing an SDK at this emulator."""
        return {"AWS_ENDPOINT_URL_SECURITY_IR": self.endpoint_url}

    # state ---------------------------------------------------------------------

    def seed(self, membership: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Add (or replace, by ``membershipId``) a membership; missing fields get defaults.

        A ``tags`` mapping in the seed becomes the membership's tags.
        """
        spec = dict(membership or {})
        tags = {str(k): str(v) for k, v in dict(spec.pop("tags", None) or {}).items()}
        complete = new_membership(spec)
        with self._lock:
            self._memberships[complete["membershipId"]] = complete
            self._tags[complete["membershipId"]] = tags
            self._windows.pop(complete["membershipId"], None)
        return copy.deepcopy(complete)

    def tags(self, membership_id: str) -> dict[str, str]:
        """A copy of one membership's tags (raises KeyError if unknown)."""
        with self._lock:
            if membership_id not in self._memberships:
                raise KeyError(membership_id)
            return dict(self._tags.get(membership_id, {}))

    def seed_many(self, memberships: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Seed several memberships."""
        return [self.seed(m) for m in memberships]

    def seed_file(self, path: str | Path) -> list[dict[str, Any]]:
        """Seed from a JSON file: a list of memberships, one membership, or ``{"memberships": [...]}``."""
        return self.seed_many(load_seed(path))

    def state(self, membership_id: str) -> dict[str, Any]:
        """A copy of one membership as stored (raises KeyError if unknown)."""
        with self._lock:
            return copy.deepcopy(self._memberships[membership_id])

    def memberships(self) -> dict[str, dict[str, Any]]:
        """A copy of every membership, by id."""
        with self._lock:
            return copy.deepcopy(self._memberships)

    def reset(self) -> None:
        """Forget memberships, calls and faults."""
        with self._lock:
            self._memberships.clear()
            self._tags.clear()
            self._windows.clear()
            self._calls.clear()
            self._clear_faults()

    # records -------------------------------------------------------------------

    def calls(self, operation: str | None = None) -> list[CallRecord]:
        """Recorded calls, oldest first, optionally of one operation."""
        with self._lock:
            return [c for c in self._calls if operation is None or c.operation == operation]

    def reset_calls(self) -> None:
        """Forget the recorded calls."""
        with self._lock:
            self._calls.clear()

    # faults --------------------------------------------------------------------

    def add_fault(
        self,
        kind: str,
        operation: str = "*",
        *,
        on_call: int = 1,
        times: int | None = 1,
        seconds: float = 0.0,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Arm a :class:`FaultRule` (see its doc); returns it as a dict."""
        with self._lock:
            rule = FaultRule(kind, operation, on_call, times, seconds, error, id=self._next_rule_id)
            self._next_rule_id += 1
            self._rules.append(rule)
            return rule.to_dict()

    def set_latency(self, seconds: float) -> None:
        """Add ``seconds`` of latency to every emulated call (0 to turn off)."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            self._latency = seconds

    def set_propagation(self, calls: int | None = None, seconds: float | None = None) -> None:
        """Emulate asynchronous account propagation.

        After each successful UpdateMembership that adds or removes OUs, the
        next ``calls`` UpdateMembership calls for that membership (and/or
        those within ``seconds``) answer ConflictException. The state itself
        changes at once, so GetMembership already shows the new OUs.
        ``set_propagation()`` with no argument turns it off.
        """
        with self._lock:
            if calls is None and seconds is None:
                self._propagation = None
                self._windows.clear()
            else:
                self._propagation = _Window(calls, seconds)

    def faults(self) -> dict[str, Any]:
        """Armed rules with their counters, latency and propagation settings."""
        with self._lock:
            propagation = None if self._propagation is None else asdict(self._propagation)
            return {
                "latency": self._latency,
                "propagation": propagation,
                "rules": [r.to_dict() for r in self._rules],
            }

    def clear_faults(self) -> None:
        """Disarm every fault, the latency and propagation."""
        with self._lock:
            self._clear_faults()

    def _clear_faults(self) -> None:
        self._rules.clear()
        self._latency = 0.0
        self._propagation = None
        self._windows.clear()

    # request handling ----------------------------------------------------------

    def _fire(self, operation: str) -> tuple[list[FaultRule], float]:
        """Advance every matching rule's counter; the rules that fire and the delay."""
        fired: list[FaultRule] = []
        with self._lock:
            answering = False
            for rule in self._rules:
                if rule.operation not in ("*", operation) or rule.spent:
                    continue
                rule.seen += 1
                if rule.seen < rule.on_call:
                    continue
                if rule.kind != "hang":
                    if answering:  # only one rule can answer; leave the next one armed
                        rule.seen -= 1
                        continue
                    answering = True
                rule.fired += 1
                fired.append(rule)
            delay = self._latency + sum(r.seconds for r in fired if r.kind == "hang")
        return fired, delay

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        """Answer one request (header names lower-case): (status, headers, JSON body).

        Raises ``_Drop`` when the answer is a connection reset.
        """
        started = time.time()
        parts = urlsplit(target)
        match = _match_route(self._routes, method, parts.path)
        if match is None:
            error = ServiceError(
                "UnknownOperationException", f"No operation matches {method} {parts.path}"
            )
            return self._answer_error(error, "Unknown", None, {}, [], started)
        operation, uri_params = match
        membership_id = uri_params.get("membershipId") or _arn_membership_id(
            uri_params.get("resourceArn")
        )
        fired, delay = self._fire(operation)
        labels = [rule.label for rule in fired]
        if delay and self._server is not None:
            self._server.stopping.wait(delay)
        params: dict[str, Any] = {}
        parse_error: ServiceError | None = None
        try:
            params = _parse_input(operation, uri_params, parse_qs(parts.query), raw)
        except ServiceError as error:
            parse_error = error
        if any(rule.kind == "reset" for rule in fired):
            self._record(operation, membership_id, params, None, None, labels, started)
            raise _Drop
        try:
            self._admit(operation, fired, headers, parse_error)
            _check_input(operation, params)
            body, status = self._run(operation, params, labels)
        except ServiceError as error:
            return self._answer_error(error, operation, membership_id, params, labels, started)
        self._record(operation, membership_id, params, status, None, labels, started)
        return status, {}, body

    def _admit(
        self,
        operation: str,
        fired: Sequence[FaultRule],
        headers: Mapping[str, str],
        parse_error: ServiceError | None,
    ) -> None:
        """Raise the answer for a request that never reaches the business logic."""
        for rule in fired:
            if rule.kind == "error":
                raise ServiceError(str(rule.error), "Injected fault")
        if operation not in EMULATED_OPERATIONS:
            raise ServiceError("UnknownOperationException", f"{operation} is not emulated")
        signed = headers.get("authorization", "").startswith("AWS4-HMAC-SHA256")
        if self.require_signature and not signed:
            raise ServiceError("AccessDeniedException", "Missing SigV4 Authorization header")
        if parse_error is not None:
            raise parse_error

    def _answer_error(
        self,
        error: ServiceError,
        operation: str,
        membership_id: str | None,
        params: dict[str, Any],
        labels: list[str],
        started: float,
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        self._record(operation, membership_id, params, error.status, error.code, labels, started)
        headers, body = error.render(membership_id)
        return error.status, headers, body

    def _record(
        self,
        operation: str,
        membership_id: str | None,
        params: dict[str, Any],
        status: int | None,
        error: str | None,
        labels: list[str],
        started: float,
    ) -> None:
        record = CallRecord(
            operation,
            membership_id,
            copy.deepcopy(params),
            status,
            error,
            list(labels),
            started,
            time.time() - started,
        )
        with self._lock:
            self._calls.append(record)

    def _run(
        self, operation: str, params: dict[str, Any], labels: list[str]
    ) -> tuple[dict[str, Any], int]:
        http = service_model().operation_model(operation).http
        status = int(http.get("responseCode", 200))
        with self._lock:
            if operation == "ListMemberships":
                return self._list(params), status
            if operation in TAG_OPERATIONS:
                body = run_tag_operation(
                    operation,
                    params,
                    self._memberships,
                    self._tags,
                    not_found=lambda message: ServiceError("ResourceNotFoundException", message),
                    invalid=lambda pairs: validation_error([FieldViolation(*p) for p in pairs]),
                )
                return body, status
            membership = self._memberships.get(params["membershipId"])
            if membership is None:
                raise ServiceError(
                    "ResourceNotFoundException", f"Membership {params['membershipId']} not found"
                )
            if operation == "GetMembership":
                return copy.deepcopy(membership), status
            window = self._windows.get(params["membershipId"])
            if window is not None and window.open(time.time()):
                if window.calls is not None:
                    window.calls -= 1
                labels.append("propagation")
                raise ServiceError(
                    "ConflictException", "Membership account changes are still propagating"
                )
            updated, ous_changed = apply_update(membership, params)
            self._memberships[params["membershipId"]] = updated
            if ous_changed and self._propagation is not None:
                seconds = self._propagation.until
                until = None if seconds is None else time.time() + seconds
                self._windows[params["membershipId"]] = _Window(self._propagation.calls, until)
            return {}, status

    def _list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        item_shape = cast(StructureShape, service_model().shape_for("ListMembershipItem"))
        ordered = sorted(self._memberships)
        token = str(params.get("nextToken") or "0")
        if not token.isdigit() or int(token) > len(ordered):
            raise ServiceError("InvalidTokenException", "nextToken is not from a previous call")
        start = int(token)
        size = int(params.get("maxResults") or 25)
        page = ordered[start : start + size]
        items = [
            {k: v for k, v in self._memberships[i].items() if k in item_shape.members} for i in page
        ]
        out: dict[str, Any] = {"items": items}
        if start + size < len(ordered):
            out["nextToken"] = str(start + size)
        return out

    # control API ---------------------------------------------------------------

    def control(self, method: str, target: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        """The ``/_emulator/...`` control API, for tests driving a subprocess emulator."""
        parts = urlsplit(target)
        path = parts.path[len(CONTROL_PREFIX) :].rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        payload = json.loads(raw) if raw.strip() else {}
        route = (method, path)
        if route == ("GET", "/health"):
            return 200, {"ok": True}
        if route == ("GET", "/state"):
            return 200, {"memberships": self.memberships()}
        if method == "GET" and path.startswith("/state/"):
            return 200, self.state(unquote(path[len("/state/") :]))
        if route == ("POST", "/seed"):
            return 200, {"memberships": self.seed_many(_as_membership_list(payload))}
        if route == ("GET", "/calls"):
            return 200, {"calls": [c.to_dict() for c in self.calls(query.get("operation"))]}
        if route == ("DELETE", "/calls"):
            self.reset_calls()
            return 200, {}
        if route == ("GET", "/faults"):
            return 200, self.faults()
        if route == ("POST", "/faults"):
            return 200, self._control_faults(payload)
        if route == ("DELETE", "/faults"):
            self.clear_faults()
            return 200, {}
        if route == ("POST", "/reset"):
            self.reset()
            return 200, {}
        return 404, {"error": f"no control route {method} {parts.path}"}

    def _control_faults(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        if "latency" in payload:
            self.set_latency(float(payload["latency"]))
        if "propagation" in payload:
            self.set_propagation(**(payload["propagation"] or {}))
        for rule in payload.get("rules", []):
            self.add_fault(**rule)
        return self.faults()


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


def _as_membership_list(payload: Any) -> list[Mapping[str, Any]]:
    if isinstance(payload, dict) and isinstance(payload.get("memberships"), list):
        return list(payload["memberships"])
    if isinstance(payload, dict):
        return [payload]
    if isinstance(payload, list):
        return list(payload)
    raise ValueError("seed must be a membership, a list of them, or {'memberships': [...]}")


def load_seed(path: str | Path) -> list[Mapping[str, Any]]:
    """Memberships from a JSON seed file (see :meth:`SecurityIREmulator.seed_file`)."""
    return _as_membership_list(json.loads(Path(path).read_text(encoding="utf-8")))


class _EmulatorHandler(JSONRequestHandler):
    server: LoopbackHTTPServer

    def _dispatch(self) -> None:
        emulator: SecurityIREmulator = self.server.app
        raw = self.read_body()
        if self.path.startswith(CONTROL_PREFIX + "/") or self.path == CONTROL_PREFIX:
            try:
                status, body = emulator.control(self.command, self.path, raw)
            except KeyError as error:
                status, body = 404, {"error": f"not found: {error}"}
            except (ValueError, TypeError) as error:
                status, body = 400, {"error": str(error)}
            self.send_json(status, body)
            return
        try:
            status, headers, body = emulator.handle(
                self.command, self.path, self.header_dict(), raw
            )
        except _Drop:
            self.reset_connection()
            return
        self.send_json(status, body, headers)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _dispatch


# --------------------------------------------------------------------------- remote control


class EmulatorControl(FaultControls):
    """Drives an emulator running in another process through ``/_emulator/``."""

    def __init__(self, endpoint_url: str, timeout: float = 10.0) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.endpoint_url + CONTROL_PREFIX + path, data=data, method=method
        )
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raise RuntimeError(
                f"control {method} {path}: {error.code} {error.read().decode()}"
            ) from None

    def health(self) -> bool:
        """True when the emulator answers."""
        return bool(self._call("GET", "/health").get("ok"))

    def seed(self, membership: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Seed one membership (defaults filled in by the emulator)."""
        return dict(self._call("POST", "/seed", dict(membership or {}))["memberships"][0])

    def seed_many(self, memberships: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Seed several memberships."""
        return list(self._call("POST", "/seed", [dict(m) for m in memberships])["memberships"])

    def state(self, membership_id: str) -> dict[str, Any]:
        """One membership as stored."""
        return dict(self._call("GET", "/state/" + quote(membership_id, safe="")))

    def memberships(self) -> dict[str, dict[str, Any]]:
        """Every membership, by id."""
        return dict(self._call("GET", "/state")["memberships"])

    def calls(self, operation: str | None = None) -> list[CallRecord]:
        """Recorded calls, oldest first."""
        suffix = "" if operation is None else "?operation=" + quote(operation)
        return [CallRecord(**c) for c in self._call("GET", "/calls" + suffix)["calls"]]

    def reset_calls(self) -> None:
        """Forget recorded calls."""
        self._call("DELETE", "/calls")

    def add_fault(
        self,
        kind: str,
        operation: str = "*",
        *,
        on_call: int = 1,
        times: int | None = 1,
        seconds: float = 0.0,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Arm a fault rule remotely."""
        rule = {"kind": kind, "operation": operation, "on_call": on_call, "times": times}
        rule |= {"seconds": seconds, "error": error}
        return dict(self._call("POST", "/faults", {"rules": [rule]})["rules"][-1])

    def set_latency(self, seconds: float) -> None:
        """Added latency per call."""
        self._call("POST", "/faults", {"latency": seconds})

    def set_propagation(self, calls: int | None = None, seconds: float | None = None) -> None:
        """See :meth:`SecurityIREmulator.set_propagation`."""
        self._call("POST", "/faults", {"propagation": {"calls": calls, "seconds": seconds}})

    def faults(self) -> dict[str, Any]:
        """Armed faults and counters."""
        return dict(self._call("GET", "/faults"))

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self._call("DELETE", "/faults")

    def reset(self) -> None:
        """Forget memberships, calls and faults."""
        self._call("POST", "/reset")


Emulator = SecurityIREmulator


# --------------------------------------------------------------------------- process entry point


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m sirlocal.emulator [--host H] [--port P] [--seed FILE] [--latency S]``."""
    parser = argparse.ArgumentParser(prog="python -m sirlocal.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", action="append", default=[], help="JSON seed file (repeatable)")
    parser.add_argument("--latency", type=float, default=0.0, help="added seconds per call")
    parser.add_argument("--no-signature-check", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    emulator = SecurityIREmulator(
        args.host, args.port, require_signature=not args.no_signature_check
    )
    JSONRequestHandler.verbose = args.verbose
    for path in args.seed:
        emulator.seed_file(path)
    emulator.set_latency(args.latency)
    emulator.start()
    ready = {"url": emulator.endpoint_url, "port": emulator.port, "pid": os.getpid()}
    serve_until_signalled(ready, emulator.stop)


if __name__ == "__main__":
    main(sys.argv[1:])
