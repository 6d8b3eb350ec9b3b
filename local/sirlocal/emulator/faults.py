"""Fault rules, call records and propagation windows, plus the named fault helpers.

Why: the in-process emulator and the remote control client arm the same
faults through the same helper names (:class:`FaultControls`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from sirlocal.emulator.model import FAULT_KINDS, SERVICE_NAME, service_model

# --------------------------------------------------------------------------- faults and records


@dataclass
class FaultRule:
    """One armed fault: which calls it hits and what it does to them.

    It sees every call of ``operation`` (``"*"``: any emulated operation)
    made after it was armed, and fires on the ``on_call``-th of them and on
    the following ones until it has fired ``times`` times (``None``: forever).
    ``kind`` is ``"error"`` (answer the model error ``error``), ``"reset"``
    (close the socket with RST, no answer), ``"hang"`` (wait ``seconds``,
    then answer normally or as another firing rule says), ``"lost"`` (apply
    the call, then answer ``error``, default InternalServerException: a write
    whose answer was lost) or ``"block"`` (hold the call unanswered until the
    faults are cleared or ``seconds`` pass, then drop it, never applied: a
    call in flight when its process is killed).
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
        if self.kind in ("error", "lost"):
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
        if self.kind == "lost":
            return f"applied-then-error:{self.error}"
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


PROPAGATION_MODELS = ("none", "conflict", "conflict-stale-reads", "stale-reads")
PROPAGATION_ERRORS = ("ConflictException", "ThrottlingException")


@dataclass
class _Window:
    """Propagation settings, and the refusal window one accepted OU change opened.

    As a setting (``SecurityIREmulator._propagation``) ``until`` holds the
    window's length in seconds; as a window it holds the time it closes.
    ``previous`` is the membership's account configuration before the change:
    with ``stale_reads`` GetMembership shows it while the window is open.
    Without ``refuse`` the window only makes reads stale (calls go through).
    """

    calls: int | None
    until: float | None
    retry_after: bool = False
    stale_reads: bool = False
    error: str = "ConflictException"
    previous: dict[str, Any] | None = None
    refuse: bool = True

    def open(self, now: float) -> bool:
        """True while calls are still refused (or reads still stale)."""
        calls_left = self.calls is None or self.calls > 0
        time_left = self.until is None or now < self.until
        return calls_left and time_left

    def seconds_left(self, now: float) -> int | None:
        """Whole seconds (at least 1) until the window closes, for ``Retry-After``."""
        if self.until is None:
            return None
        return max(1, math.ceil(self.until - now))

    @property
    def model(self) -> str:
        """The propagation model this setting emulates (one of ``PROPAGATION_MODELS``)."""
        if not self.refuse:
            return "stale-reads"
        return "conflict-stale-reads" if self.stale_reads else "conflict"


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
        """Arm (or, with no ``calls``/``seconds``, disarm) asynchronous propagation."""
        raise NotImplementedError

    def set_propagation_model(
        self,
        model: str,
        seconds: float = 0.0,
        *,
        retry_after: bool = False,
        error: str = "ConflictException",
    ) -> None:
        """Arm one of the named propagation models with a window of ``seconds`` (P).

        ``"none"``: changes apply and show at once, nothing is refused.
        ``"conflict"``: after each accepted OU or coverage change,
        UpdateMembership on that membership is refused for P seconds.
        ``"conflict-stale-reads"``: as ``"conflict"``, and GetMembership shows
        the account configuration from before the change until P elapses.
        ``"stale-reads"``: nothing is refused, but GetMembership shows the
        account configuration from before each change until P elapses.
        ``retry_after``: the refusal says when to retry (``Retry-After``).
        """
        if model not in PROPAGATION_MODELS:
            raise ValueError(f"propagation model must be one of {PROPAGATION_MODELS}")
        if model == "none":
            self.set_propagation()
            return
        if seconds <= 0:
            raise ValueError("a propagation model other than 'none' needs seconds > 0")
        self.set_propagation(
            seconds=seconds,
            retry_after=retry_after,
            stale_reads=model in ("conflict-stale-reads", "stale-reads"),
            error=error,
            refuse=model != "stale-reads",
        )

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

    def lose_answer(
        self, operation: str = "*", *, on_call: int = 1, error: str = "InternalServerException"
    ) -> dict[str, Any]:
        """The ``on_call``-th call of ``operation`` is applied, then answered ``error`` (a 5xx)."""
        return self.add_fault("lost", operation, on_call=on_call, error=error)

    def block(
        self, operation: str = "*", *, on_call: int = 1, seconds: float = 600.0
    ) -> dict[str, Any]:
        """The ``on_call``-th call of ``operation`` is held unanswered until the faults are
        cleared (or ``seconds`` pass), then dropped without being applied."""
        return self.add_fault("block", operation, on_call=on_call, seconds=seconds)
