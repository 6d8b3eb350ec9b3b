"""``python -m sirlocal.emulator``: the emulator as a process."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from sirlocal import JSONRequestHandler, serve_until_signalled
from sirlocal.emulator import __doc__ as _PACKAGE_DOC
from sirlocal.emulator.core import SecurityIREmulator

# --------------------------------------------------------------------------- process entry point


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m sirlocal.emulator [--host H] [--port P] [--seed FILE] [--latency S]``."""
    parser = argparse.ArgumentParser(prog="python -m sirlocal.emulator", description=_PACKAGE_DOC)
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
