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

The package is split by job: :mod:`.model` (botocore model, validation, error
answers), :mod:`.state` (memberships and their rules), :mod:`.faults` (fault
rules, records, propagation), :mod:`.routing` and :mod:`.httpapi` (HTTP, control
API, remote control), :mod:`.core` (the emulator) and :mod:`.process` (the
process entry point). Everything but the entry point is re-exported here, so
``from sirlocal.emulator import ...`` keeps working; ``main`` stays in
:mod:`.process`, which reads this text for its ``--help`` (no import cycle).
"""

from sirlocal.emulator.core import Emulator, SecurityIREmulator
from sirlocal.emulator.faults import CallRecord, FaultControls, FaultRule
from sirlocal.emulator.httpapi import EmulatorControl
from sirlocal.emulator.model import (
    CONTROL_PREFIX,
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    EMULATED_OPERATIONS,
    FAULT_KINDS,
    SERVICE_NAME,
    FieldViolation,
    ServiceError,
    service_model,
    validate,
    validation_error,
)
from sirlocal.emulator.state import apply_update, load_seed, new_membership

__all__ = [
    "CONTROL_PREFIX",
    "DEFAULT_ACCOUNT",
    "DEFAULT_REGION",
    "EMULATED_OPERATIONS",
    "FAULT_KINDS",
    "SERVICE_NAME",
    "CallRecord",
    "Emulator",
    "EmulatorControl",
    "FaultControls",
    "FaultRule",
    "FieldViolation",
    "SecurityIREmulator",
    "ServiceError",
    "apply_update",
    "load_seed",
    "new_membership",
    "service_model",
    "validate",
    "validation_error",
]
