"""An in-memory stand-in for the journal's DynamoDB storage, for fast property tests.

It keeps the promises ``journal_store.JournalStore`` keeps on DynamoDB (the
latest entry per resource; a lease that only one holder can take until it
lapses), and can be told to fail, so tests can cover a table that refuses.
The DynamoDB implementation itself is tested against moto.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sir_membership.errors import JournalUnavailable
from sir_membership.journal import Entry, Record
from sir_membership.journal_codec import from_json, to_json
from sir_membership.journal_store import busy


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
