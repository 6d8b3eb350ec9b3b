"""The HTTP side: the request handler (service and ``/_emulator/`` control routes) and
:class:`EmulatorControl`, which drives an emulator in another process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

from sirlocal import JSONRequestHandler, LoopbackHTTPServer
from sirlocal.emulator.faults import CallRecord, FaultControls, _Drop
from sirlocal.emulator.model import CONTROL_PREFIX


class EmulatorApp(Protocol):
    """What the handler needs of the emulator it serves (``server.app``).

    Why a protocol: the emulator (:mod:`.core`) builds its server with this
    handler, so the handler must not import the emulator back.
    """

    def control(self, method: str, target: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one ``/_emulator/...`` control request: (status, JSON body)."""

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        """Answer one service request: (status, headers, JSON body)."""


class EmulatorHandler(JSONRequestHandler):
    """Serves one emulator's HTTP requests: the service routes and ``/_emulator/``."""

    server: LoopbackHTTPServer

    def _dispatch(self) -> None:
        emulator: EmulatorApp = self.server.app
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
        """See :meth:`.core.SecurityIREmulator.set_propagation`."""
        setting: dict[str, Any] = {"calls": calls, "seconds": seconds}
        setting |= {"retry_after": retry_after, "stale_reads": stale_reads}
        setting |= {"error": error, "refuse": refuse}
        self._call("POST", "/faults", {"propagation": setting})

    def faults(self) -> dict[str, Any]:
        """Armed faults and counters."""
        return dict(self._call("GET", "/faults"))

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self._call("DELETE", "/faults")

    def reset(self) -> None:
        """Forget memberships, calls and faults."""
        self._call("POST", "/reset")
