"""In-memory stand-ins for the function's DynamoDB table, for fast property tests.

``MemoryStore`` keeps the promises ``journal_store.JournalStore`` keeps on
DynamoDB (the latest entry per resource; a lease that only one holder can
take until it lapses); ``MemoryRequestStore`` those of
``request_store.RequestStore`` (request records, generation fences, one
answer per request). Both can be told to fail, so tests can cover a table
that refuses. The DynamoDB implementations themselves are tested on moto.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sir_membership.errors import JournalUnavailable
from sir_membership.journal import Entry, Record
from sir_membership.journal_codec import from_json, to_json
from sir_membership.journal_store import busy
from sir_membership.request_record import (
    RequestKeys,
    RequestRecord,
    answer_from_json,
    answer_to_json,
)
from sir_membership.request_store import (
    CLOSED,
    Registration,
    _holder_keys,
    refuse_if_too_large,
)
from sir_membership.response import Answer


@dataclass
class MemoryStore:
    entries: dict[tuple[str, str], str] = field(default_factory=dict)
    leases: dict[str, tuple[str, float]] = field(default_factory=dict)
    records: dict[tuple[str, str], Record] = field(default_factory=dict)
    seen: dict[tuple[str, str], float] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    #: While True, every read and write fails as an unreachable table would.
    down: bool = False
    writes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _check(self) -> None:
        if self.down:
            raise JournalUnavailable("could not reach the change journal (table down)")

    def read(self, stack_id: str, logical_id: str) -> Entry | None:
        self._check()
        text = self.entries.get((stack_id, logical_id))
        return None if text is None else from_json(text)

    def write(self, stack_id: str, logical_id: str, entry: Entry) -> None:
        self._check()
        self.writes += 1
        self.entries[(stack_id, logical_id)] = to_json(entry)

    def acquire(
        self,
        membership_id: str,
        holder: str,
        until: float,
        *,
        wait_until: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        while True:
            self._check()
            with self.lock:
                held = self.leases.get(membership_id)
                if held is None or held[0] == holder or held[1] < self.clock():
                    self.leases[membership_id] = (holder, until)
                    return
            if self.clock() + 0.05 > wait_until:
                held = self.leases.get(membership_id)
                raise busy(membership_id, held[0] if held else "")
            sleep(0.05)

    def release(self, membership_id: str, holder: str) -> None:
        with self.lock:
            if self.leases.get(membership_id, ("", 0.0))[0] == holder:
                del self.leases[membership_id]

    def read_record(self, stack_id: str, logical_id: str) -> Record | None:
        self._check()
        return self.records.get((stack_id, logical_id))

    def write_record(self, stack_id: str, logical_id: str, record: Record | None) -> None:
        self._check()
        self.writes += 1
        if record is None:
            self.records.pop((stack_id, logical_id), None)
        else:
            self.records[(stack_id, logical_id)] = record

    def first_seen(self, stack_id: str, request_id: str, now: float) -> float:
        self._check()
        self.writes += 1
        return self.seen.setdefault((stack_id, request_id), now)


@dataclass
class MemoryRequestStore:
    """An in-memory twin of ``request_store.RequestStore``: request records and fences.

    Same methods, same conditions, same answers as the DynamoDB one
    (``tests/test_request_store.py`` runs its tests on both): a duplicate
    delivery registers nothing new, a new request takes its resource's
    fence, a step is begun once, an answer is claimed once. ``seen`` is the
    first-sight time the journal's ``MemoryStore.first_seen`` reads (one
    item, ``firstSeen``, on DynamoDB): pass the journal store's to share it.
    """

    clock: Callable[[], float] = time.time
    table_name: str = "memory"
    #: Per (StackId, RequestId): the request item's attributes (as DynamoDB keeps them).
    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: Per (StackId, LogicalResourceId): (holder, generation).
    fences: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    #: Per (StackId, LogicalResourceId): when its holder's attempt was first seen.
    fence_since: dict[tuple[str, str], float] = field(default_factory=dict)
    seen: dict[tuple[str, str], float] = field(default_factory=dict)
    #: While True, every read and write fails as an unreachable table would.
    down: bool = False
    #: Called before and after each write, with its name: a test's crash point.
    point: Callable[[str], None] = lambda _name: None

    def _check(self) -> None:
        if self.down:
            raise JournalUnavailable(
                f"could not write the request record in table {self.table_name} (down)"
            )

    def _write(self, name: str) -> None:
        self._check()
        self.point(f"before {name}")

    # -- the dispatcher -----------------------------------------------------------

    def register(
        self, event: Mapping[str, Any], admit_legacy: Callable[[RequestKeys], bool] | None = None
    ) -> Registration:
        """``RequestStore.register``."""
        self._write("the request's registration")
        now = self.clock()
        keys = RequestKeys.of_event(event)
        text = json.dumps(dict(event), sort_keys=True)
        refuse_if_too_large(text)
        key = (keys.stack_id, keys.request_id)
        # First seen by the previous release (``first_seen`` only, no event).
        legacy = key in self.seen and "event" not in self.items.get(key, {})
        item = self.items.setdefault(key, {})
        self.seen.setdefault(key, round(now, 3))
        item.setdefault("event", text)
        item.setdefault("attempt", 1)
        self.point("after the request's registration")
        stored = self._record(key)
        keys = stored.keys
        since = float(item.get("attemptSeen", stored.first_seen))
        if stored.event.get("ResponseURL") != event.get("ResponseURL"):
            if stored.answer is None:
                return Registration(keys, stored.first_seen, new=False)
            keys, since = self._next_attempt(stored, text), now
        elif "fenceTaken" in item:
            return Registration(keys, stored.first_seen, new=False, answer=stored.answer)
        if legacy and admit_legacy is not None and not admit_legacy(keys):
            return Registration(keys, stored.first_seen, new=False, stale=True)
        return self._take_fence(keys, stored.first_seen, since)

    def _next_attempt(self, stored: RequestRecord, text: str) -> RequestKeys:
        keys = stored.keys
        self._write("the next attempt")
        item = self.items[(keys.stack_id, keys.request_id)]
        if item.get("attempt") != keys.attempt:
            return self.read_keys(keys.stack_id, keys.logical_id, keys.request_id)
        item.update(attempt=keys.attempt + 1, event=text, workStep=0, attemptSeen=self.clock())
        for gone in ("answer", "outcome", "fenceTaken"):
            item.pop(gone, None)
        self.point("after the next attempt")
        return RequestKeys(keys.stack_id, keys.logical_id, keys.request_id, keys.attempt + 1)

    def read_keys(self, stack_id: str, logical_id: str, request_id: str) -> RequestKeys:
        """``RequestStore.read_keys``."""
        self._check()
        item = self.items.get((stack_id, request_id))
        attempt = int(item["attempt"]) if item else 1
        return RequestKeys(stack_id, logical_id, request_id, attempt)

    def _take_fence(self, keys: RequestKeys, first_seen: float, since: float) -> Registration:
        self._write("the fence's take-over")
        fence = (keys.stack_id, keys.logical_id)
        if self.fence_since.get(fence, since) > since:
            return Registration(keys, first_seen, new=False, stale=True)
        previous, generation = self.fences.get(fence, ("", 0))
        self.fences[fence] = (keys.holder, generation + 1)
        self.fence_since[fence] = since
        self.point("after the fence's take-over")
        self._write("the fence's mark")
        self.items[(keys.stack_id, keys.request_id)]["fenceTaken"] = True
        self.point("after the fence's mark")
        superseded = _holder_keys(keys, previous) if previous != keys.holder else None
        return Registration(keys, first_seen, new=True, superseded=superseded)

    # -- the tasks ----------------------------------------------------------------

    def read(self, keys: RequestKeys) -> RequestRecord | None:
        """``RequestStore.read``."""
        self._check()
        key = (keys.stack_id, keys.request_id)
        return self._record(key) if key in self.items else None

    def fence_holder(self, keys: RequestKeys) -> str:
        """``RequestStore.fence_holder``."""
        self._check()
        return self.fences.get((keys.stack_id, keys.logical_id), ("", 0))[0]

    def holds(self, keys: RequestKeys) -> bool:
        """``RequestStore.holds``."""
        return self.fence_holder(keys) == keys.holder

    def closed_by(self, keys: RequestKeys) -> bool:
        """``RequestStore.closed_by``."""
        return self.fence_holder(keys) == keys.holder + CLOSED

    def close_fence(self, keys: RequestKeys) -> None:
        """``RequestStore.close_fence``."""
        self._write("the fence's close")
        fence = (keys.stack_id, keys.logical_id)
        holder, generation = self.fences.get(fence, ("", 0))
        if fence in self.fences and holder == keys.holder:
            self.fences[fence] = (keys.holder + CLOSED, generation + 1)
        self.point("after the fence's close")

    def begin_step(self, keys: RequestKeys, step: int) -> bool:
        """``RequestStore.begin_step``."""
        self._write("the step's beginning")
        item = self.items.get((keys.stack_id, keys.request_id))
        if item is None or item.get("attempt") != keys.attempt or item.get("workStep", -1) >= step:
            self.point("after the step's beginning")
            return True
        item["workStep"] = step
        self.point("after the step's beginning")
        return False

    def record_outcome(self, keys: RequestKeys, answer: Answer) -> None:
        """``RequestStore.record_outcome``."""
        self._write("the outcome's record")
        item = self.items.get((keys.stack_id, keys.request_id))
        if item is not None and item.get("attempt") == keys.attempt:
            item["outcome"] = answer_to_json(answer)
        self.point("after the outcome's record")

    def claim(self, keys: RequestKeys, answer: Answer) -> Answer:
        """``RequestStore.claim``."""
        self._write("the answer's claim")
        item = self.items.get((keys.stack_id, keys.request_id))
        if item is not None and item.get("attempt") == keys.attempt and "answer" not in item:
            item["answer"] = answer_to_json(answer)
            self.point("after the answer's claim")
            return answer
        self.point("after the answer's claim")
        stored = self.read(keys)
        if stored is None or stored.answer is None:
            raise JournalUnavailable(
                "the request's answer was claimed by another attempt: nothing is sent"
            )
        return stored.answer

    def _record(self, key: tuple[str, str]) -> RequestRecord:
        item = self.items[key]
        event = json.loads(item["event"])
        return RequestRecord(
            keys=RequestKeys.of_event(event, int(item.get("attempt", 1))),
            event=event,
            first_seen=float(self.seen[key]),
            outcome=answer_from_json(item["outcome"]) if "outcome" in item else None,
            answer=answer_from_json(item["answer"]) if "answer" in item else None,
            work_step=int(item.get("workStep", 0)),
        )
