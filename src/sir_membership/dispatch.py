"""Hand one CloudFormation request that may write to its execution.

Why this order: the request is recorded (with its first delivery's time and
its ResponseURL, which never enters the execution) before anything can run
for it; its resource's generation fence is taken before the execution
starts, so from that moment an older request of the same resource (the
update this one rolls back) can no longer write; the older one's execution
is then stopped, best effort (the fence, not the stop, keeps it out); and
only then is the request's own execution started, under a name that is the
same for every delivery, so a duplicate joins it instead of starting twice.

A request never takes the fence from a newer one: a late delivery of an
older request, or a continuation of a change the previous release began
after a newer request of the resource (see ``admits_legacy``), is answered
FAILED without a write (CloudFormation has moved on from it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .engine import Engine
from .errors import ConfigurationError, EngineUnavailable
from .journal import Entry
from .request import failed_physical_id
from .request_record import RequestKeys
from .request_store import RequestStore
from .response import Answer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dispatched:
    """The request is carried by its execution, which answers it."""

    execution_name: str


#: The answer to a request a newer request of its resource has overtaken.
OVERTAKEN = (
    "A newer request of this resource (its rollback or a later update) began before this "
    "delivery: this request was not carried on. Nothing was changed by it"
)


def admits_legacy(
    event: Mapping[str, Any], latest_entry: Callable[[str, str], Entry | None]
) -> Callable[[RequestKeys], bool]:
    """Whether a request the previous release began may go on under this one.

    Only while the resource's latest journal entry is its own: then nothing
    newer has written to the resource, and its steps carry on from that
    entry. A Delete is the resource's last request, so it always may.
    """

    def admit(keys: RequestKeys) -> bool:
        if event.get("RequestType") == "Delete":
            return True
        entry = latest_entry(keys.stack_id, keys.logical_id)
        return entry is not None and entry.request_id == keys.request_id

    return admit


def dispatch(
    event: Mapping[str, Any],
    store: RequestStore,
    engine: Engine,
    dispatching: Callable[[bool], None],
    latest_entry: Callable[[str, str], Entry | None] = lambda _stack, _logical: None,
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
    registration = store.register(event, admits_legacy(event, latest_entry))
    if registration.answer is not None:
        logger.info("duplicate delivery of an answered request: sending its answer again")
        return registration.answer
    if registration.stale:
        logger.warning("overtaken by a newer request of the resource: not started")
        return store.claim(registration.keys, Answer.failed(failed_physical_id(event), OVERTAKEN))
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
