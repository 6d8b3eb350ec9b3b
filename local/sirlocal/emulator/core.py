"""The in-process emulator: state, faults and call records behind one lock."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from botocore.model import (
    StructureShape,
)

from sirlocal import LoopbackHTTPServer
from sirlocal.emulator.faults import (
    PROPAGATION_ERRORS,
    CallRecord,
    FaultControls,
    FaultRule,
    _Drop,
    _Window,
)
from sirlocal.emulator.httpapi import EmulatorHandler
from sirlocal.emulator.model import (
    CONTROL_PREFIX,
    EMULATED_OPERATIONS,
    FieldViolation,
    ServiceError,
    service_model,
    validation_error,
)
from sirlocal.emulator.routing import (
    _arn_membership_id,
    _check_input,
    _match_route,
    _parse_input,
    _routes,
)
from sirlocal.emulator.state import _as_membership_list, apply_update, load_seed, new_membership
from sirlocal.tagging import TAG_OPERATIONS, run_tag_operation


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
        #: Set when the faults are cleared: every call a ``block`` rule holds is dropped.
        self._unblock = threading.Event()
        self._routes = _routes()
        self._server: LoopbackHTTPServer | None = None
        self._port: int | None = None

    # lifecycle -----------------------------------------------------------------

    def start(self) -> SecurityIREmulator:
        """Listen on ``host:port`` (0 = ephemeral) and serve in a background thread."""
        if self._server is None:
            self._server = LoopbackHTTPServer((self.host, self.requested_port), EmulatorHandler)
            self._server.app = self
            self._server.start_background("security-ir-emulator")
            self._port = self._server.port
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (waiting hangs are released)."""
        self._unblock.set()
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
            if kind == "block" and self._unblock.is_set():
                self._unblock = threading.Event()
            self._next_rule_id += 1
            self._rules.append(rule)
            return rule.to_dict()

    def set_latency(self, seconds: float) -> None:
        """Add ``seconds`` of latency to every emulated call (0 to turn off)."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            self._latency = seconds

    def set_propagation(
        self,
        calls: int | None = None,
        seconds: float | None = None,
        *,
        retry_after: bool = False,
        stale_reads: bool = False,
        error: str = "ConflictException",
        refuse: bool = True,
    ) -> None:
        """Emulate asynchronous account propagation (see also :meth:`set_propagation_model`).

        After each accepted UpdateMembership that adds or removes OUs or
        changes ``coverEntireOrganization``, the next ``calls`` UpdateMembership
        calls for that membership (and/or those within ``seconds``) answer
        ``error`` (ConflictException, or ThrottlingException). The state
        changes at once; with ``stale_reads`` GetMembership keeps showing the
        account configuration from before the change while the window is open.
        ``retry_after`` puts the window's whole seconds left in ``Retry-After``:
        the model's ``retryAfterSeconds`` member for ThrottlingException, and
        an unmodelled HTTP header for ConflictException (whose shape has no
        such member). Without ``refuse``, nothing is refused: only the reads
        are stale (with ``stale_reads``). ``set_propagation()`` with no
        argument turns it off.
        """
        if error not in PROPAGATION_ERRORS:
            raise ValueError(f"propagation error must be one of {PROPAGATION_ERRORS}")
        if (calls is not None and calls < 1) or (seconds is not None and seconds <= 0):
            raise ValueError("propagation calls must be >= 1 and seconds > 0")
        with self._lock:
            if calls is None and seconds is None:
                self._propagation = None
                self._windows.clear()
            else:
                self._propagation = _Window(
                    calls, seconds, retry_after, stale_reads, error, refuse=refuse
                )

    def faults(self) -> dict[str, Any]:
        """Armed rules with their counters, latency and propagation settings."""
        with self._lock:
            propagation = None
            if self._propagation is not None:
                propagation = asdict(self._propagation) | {"model": self._propagation.model}
                del propagation["previous"]
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
        self._unblock.set()
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
        blocking = [rule for rule in fired if rule.kind == "block"]
        if blocking:  # recorded now, held until the faults are cleared, dropped: never applied
            self._record(operation, membership_id, params, None, None, labels, started)
            self._unblock.wait(blocking[0].seconds or None)
            raise _Drop
        try:
            self._admit(operation, fired, headers, parse_error)
            _check_input(operation, params)
            body, status = self._run(operation, params, labels)
        except ServiceError as error:
            return self._answer_error(error, operation, membership_id, params, labels, started)
        lost = [rule for rule in fired if rule.kind == "lost"]
        if lost:  # applied, but the answer is an error (a 5xx whose write went through)
            late = ServiceError(str(lost[0].error), "Injected fault after the call was applied")
            return self._answer_error(late, operation, membership_id, params, labels, started)
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
            window = self._windows.get(params["membershipId"])
            now = time.time()
            if window is not None and not window.open(now):
                del self._windows[params["membershipId"]]
                window = None
            if operation == "GetMembership":
                shown = copy.deepcopy(membership)
                if window is not None and window.stale_reads and window.previous is not None:
                    labels.append("stale-read")
                    shown["membershipAccountsConfigurations"] = copy.deepcopy(window.previous)
                return shown, status
            if window is not None and window.refuse:
                if window.calls is not None:
                    window.calls -= 1
                labels.append("propagation")
                raise self._refusal(window, now)
            updated, accounts_changed = apply_update(membership, params)
            self._memberships[params["membershipId"]] = updated
            setting = self._propagation
            if accounts_changed and setting is not None:
                until = None if setting.until is None else now + setting.until
                previous = copy.deepcopy(membership.get("membershipAccountsConfigurations"))
                self._windows[params["membershipId"]] = replace(
                    setting, until=until, previous=previous
                )
            return {}, status

    @staticmethod
    def _refusal(window: _Window, now: float) -> ServiceError:
        """The answer to an UpdateMembership refused while ``window`` is open."""
        message = "Membership account changes are still propagating"
        seconds = window.seconds_left(now) if window.retry_after else None
        if seconds is None:
            return ServiceError(window.error, message)
        if window.error == "ThrottlingException":  # the model's retryAfterSeconds (a header)
            return ServiceError(window.error, message, retryAfterSeconds=seconds)
        error = ServiceError(window.error, message)
        error.headers = {"Retry-After": str(seconds)}  # not in ConflictException's shape
        return error

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


Emulator = SecurityIREmulator
