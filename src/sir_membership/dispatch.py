"""Hand one CloudFormation request that may write to its execution.

Why this order: the request is recorded (with its first delivery's time and
its ResponseURL, which never enters the execution) before anything can run
for it; its resource's generation fence is taken before the execution
starts, so from that moment an older request of the same resource (the
update this one rolls back) can no longer write; the older one's execution
is then stopped, best effort (the fence, not the stop, keeps it out); and
only then is the request's own execution started, under a name that is the
same for every delivery, so a duplicate joins it instead of starting twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .engine import Engine
from .errors import ConfigurationError, EngineUnavailable
from .request import failed_physical_id
from .request_store import RequestStore
from .response import Answer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dispatched:
    """The request is carried by its execution, which answers it."""

    execution_name: str


def dispatch(
    event: Mapping[str, Any],
    store: RequestStore,
    engine: Engine,
    dispatching: Callable[[bool], None],
) -> Dispatched | Answer:
    """Record, fence and start the request of ``event`` (screened, valid, and may write).

    ``dispatching(True)`` is told just before the start is sent: from then on
    the execution answers, even if this invocation never learns the start
    went through; ``dispatching(False)`` when the start failed, and this
    invocation answers FAILED after all. That answer is claimed, and the
    fence closed, first: should the start have gone through unseen, its
    execution writes nothing and can only send the same answer. A duplicate
    delivery after the answer gets that answer again.
    """
    if not store.table_name:
        raise ConfigurationError(
            "IDEMPOTENCY_TABLE_NAME is not set on the function: deploy the provider's "
            "template as published. Nothing was changed"
        )
    registration = store.register(event)
    if registration.answer is not None:
        logger.info("duplicate delivery of an answered request: sending its answer again")
        return registration.answer
    if registration.superseded is not None:
        engine.stop(registration.superseded)
    keys = registration.keys
    dispatching(True)
    try:
        engine.start(keys)
    except EngineUnavailable as error:
        store.close_fence(keys)
        claimed = store.claim(keys, Answer.failed(failed_physical_id(event), error.reason))
        dispatching(False)
        return claimed
    return Dispatched(keys.execution_name)
