"""The function's time reserves and client timeouts, in one place.

Why: what still fits in a Work step is decided from a few fixed times (how
long one call may take, what is kept to answer, when another step is worth
waiting for, how long a step may sleep before a Wait state takes over).
Production uses the defaults below; the template never changes them.
The end-to-end tests may shorten them through the function's environment,
``SIR_TIMING_<FIELD>`` in seconds (``SIR_TIMING_SERVICE_READ_TIMEOUT=2``), so
a scenario about a timeout plays the same decisions without waiting a real
10 s. They are read once, when the function's modules are imported; a value
that is not a positive, finite number of seconds stops the import with a
:class:`~sir_membership.errors.ConfigurationError` naming the variable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from .errors import ConfigurationError

PREFIX = "SIR_TIMING_"


@dataclass(frozen=True)
class Timing:
    """Seconds. Each field is set by ``SIR_TIMING_`` + its name in upper case."""

    #: Before Lambda's deadline, the timer answers FAILED (app.TIMER_RESERVE).
    timer_reserve: float = 3.0
    #: Below this left, bookkeeping after the last write is skipped (answers).
    bookkeeping_reserve: float = 8.0
    #: A next Work step needs at least this long before the deadline to be worth waiting for.
    continue_min: float = 30.0
    #: The answer is sent this long before the ServiceTimeout (steps).
    answer_margin: float = 10.0
    #: Between looks at a membership another request is changing (a Wait state).
    busy_poll: float = 5.0
    #: A wait the service asks for longer than this ends the Work step: the
    #: state machine waits instead, with no Lambda running (service.RetryPolicy).
    longest_sleep: float = 5.0
    #: After a change's last call, a read that does not show it is taken as stale
    #: for this long (the service shows account changes late; restore, service).
    stale_read_grace: float = 120.0
    #: Kept to make a call after waiting for the lease or for reads (restore).
    work_reserve: float = 20.0
    #: The security-ir client's timeouts; one call takes at most their sum.
    service_connect_timeout: float = 3.0
    service_read_timeout: float = 10.0
    #: Kept at the end of an invocation to answer CloudFormation (service.RetryPolicy).
    answer_reserve: float = 6.0
    #: One PUT of the answer to the ResponseURL (response.DeliveryPolicy).
    put_attempt_timeout: float = 10.0
    #: The table client's timeouts (request records, fences, the journal).
    table_connect_timeout: float = 2.0
    table_read_timeout: float = 5.0

    @property
    def call_timeout(self) -> float:
        """Longest a single security-ir call can take (connect + read)."""
        return self.service_connect_timeout + self.service_read_timeout

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Timing:
        """The defaults, with each ``SIR_TIMING_*`` variable of ``environ`` applied."""
        known = {PREFIX + f.name.upper(): f.name for f in fields(cls)}
        unknown = sorted(k for k in environ if k.startswith(PREFIX) and k not in known)
        if unknown:
            raise ConfigurationError(
                f"{', '.join(unknown)}: no such timing setting (known: {', '.join(sorted(known))})"
            )
        values = {
            name: _seconds(var, environ[var]) for var, name in known.items() if var in environ
        }
        return cls(**values)


def _seconds(variable: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{variable} must be a positive number of seconds")
    return value


#: What this process uses, read once.
TIMING = Timing.from_environ(os.environ)
