"""Task functions for tests/local/test_states_api.py: what the stand-in's tasks see.

Each writes the event it got to ``$STATES_TASKS_LOG`` (one JSON line) so the
test can read what the state machine passed; ``work`` follows the steps its
request asks for (``request.plan``: a list of ``next`` values, "raise" to fail).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any


def _log(kind: str, event: Any) -> None:
    with open(os.environ["STATES_TASKS_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"task": kind, "event": event}) + "\n")


def work(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A Work step: the next of ``request.plan``, by step number."""
    _log("work", event)
    step = int(event["step"])
    plan = event["request"]["plan"]
    what = plan[min(step, len(plan) - 1)]
    if what == "raise":
        raise RuntimeError("RuntimeError")
    if what == "hang":
        time.sleep(60)
    return {"step": step + 1, "next": what, "seconds": 0}


def answer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Answer task and the safety net: record only."""
    _log("answer", event)
    return {"answered": True}
