"""``python -m sirlocal``: run the whole local bundle for a demo or a manual session.

Why: a shell script (or a person) can start every stand-in at once and get,
as one JSON line on stdout, the environment a handler process needs plus the
control URLs. It runs until SIGTERM/SIGINT, then stops everything.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sirlocal import serve_until_signalled
from sirlocal.driver import worker_env
from sirlocal.emulator import load_seed
from sirlocal.services import DEFAULT_TABLE_NAME, DEFAULT_TEMPLATE, local_services


def main(argv: Sequence[str] | None = None) -> None:
    """Start emulator, receiver, the Lambda endpoint and moto (+ table); print
    ``{"env", "emulator", ...}``."""
    parser = argparse.ArgumentParser(prog="python -m sirlocal", description=__doc__)
    parser.add_argument("--template", default=str(DEFAULT_TEMPLATE))
    parser.add_argument("--seed", action="append", default=[], help="JSON seed file (repeatable)")
    parser.add_argument("--table-name", default=DEFAULT_TABLE_NAME)
    parser.add_argument(
        "--function-timeout",
        type=float,
        default=30.0,
        help="seconds, the timeout of the state machine's task functions (Work, Answer)",
    )
    args = parser.parse_args(argv)
    seed = [membership for path in args.seed for membership in load_seed(path)]
    with local_services(args.template, seed=seed, table_name=args.table_name) as services:
        env = worker_env(services.child_env())
        services.states.configure(env=env, timeout=args.function_timeout)
        ready = {
            "env": services.env(),
            "emulator": services.security_ir_url,
            "dynamodb": services.dynamodb_url,
            "receiver": services.receiver.base_url,
            "stepfunctions": services.states.endpoint_url,
            "ca": services.receiver.ca_path,
            "pid": os.getpid(),
        }
        serve_until_signalled(ready, lambda: None)


if __name__ == "__main__":
    main(sys.argv[1:])
