"""Carrying one request across several invocations of the function (pure).

Why: Security IR applies account changes asynchronously and may refuse the
next UpdateMembership for minutes while an earlier one propagates. A change
of many calls can then outlast one Lambda invocation (15 minutes at most),
while CloudFormation waits for the answer up to the resource's
``ServiceTimeout`` (an hour at most). So when the work does not fit in the
invocation, it is handed to a fresh asynchronous invocation of the same
function with the same event plus a ``Continuation`` marker, and only the
invocation that finishes (or gives up) answers.

What makes that safe when every event may be forged:

* the hand-off record (``Handoff``, in the table, keyed by stack and
  request) holds the only token that may continue the request, the time its
  first invocation started and its ServiceTimeout; a continuation whose token
  is not the record's (forged, stale, or a late retry of an earlier link)
  stops without a call, and so does one whose request is already answered;
* each hand-off writes a new token conditionally on the old one, so at most
  one chain carries a request, and the idempotency key includes the token,
  so a duplicate delivery of one link runs once;
* every link re-reads the membership and re-plans from what it is, under the
  membership's lease, so nothing is applied twice.

Storage is in ``journal_store``; this module is data and decisions only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .response import Answer
from .timing import TIMING

#: The event key that marks a continuation (never sent by CloudFormation).
MARKER = "SirMembershipContinuation"
#: CloudFormation's default and largest ServiceTimeout for a custom resource.
DEFAULT_SERVICE_TIMEOUT = 3600
#: Seconds before ServiceTimeout by which the last answer is sent.
ANSWER_MARGIN = TIMING.answer_margin
#: Seconds a new invocation needs, at least, to be worth starting: a cold
#: start, a read, one call that may take its whole timeout, and the answer.
CONTINUE_MIN = TIMING.continue_min
#: Longest chain of invocations for one request (a runaway guard: a chain
#: this long has spent far more than an hour of invocations).
MAX_INVOCATIONS = 1000

_TOKEN = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Continuation:
    """The marker on an event that continues a request: which link of its chain this is."""

    token: str
    invocation: int

    def on(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """``event`` (CloudFormation's, as screened) carrying this marker."""
        return {**event, MARKER: {"Token": self.token, "Invocation": self.invocation}}

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Continuation | None:
        """The marker of a screened event (``marker_problem`` found none), or None."""
        raw = event.get(MARKER)
        if not isinstance(raw, Mapping):
            return None
        return cls(str(raw["Token"]), int(raw["Invocation"]))


def marker_problem(raw: object) -> str | None:
    """Why a marker is malformed, or None when it is well formed (or absent)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or set(raw) != {"Token", "Invocation"}:
        return f"Malformed request: {MARKER} must hold exactly Token and Invocation"
    token, invocation = raw["Token"], raw["Invocation"]
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return f"Malformed request: {MARKER}.Token must be 32 lower-case hex digits"
    if type(invocation) is not int or not 2 <= invocation <= MAX_INVOCATIONS:
        return f"Malformed request: {MARKER}.Invocation must be an integer 2..{MAX_INVOCATIONS}"
    return None


def service_timeout(properties: Mapping[str, Any]) -> int:
    """The resource's ServiceTimeout in seconds (CloudFormation sends it as a string).

    CloudFormation itself rejects a value outside 1..3600 before any event is
    sent, so anything unreadable here counts as the default (3600 s).
    """
    raw = properties.get("ServiceTimeout")
    try:
        seconds = int(str(raw).strip()) if raw is not None else DEFAULT_SERVICE_TIMEOUT
    except ValueError:
        return DEFAULT_SERVICE_TIMEOUT
    return seconds if 1 <= seconds <= DEFAULT_SERVICE_TIMEOUT else DEFAULT_SERVICE_TIMEOUT


@dataclass(frozen=True)
class Handoff:
    """The table's record of a request carried across invocations.

    ``previous_applied`` is the first link's verdict on whether the old
    declaration's OUs may be removed (``journal.Forward``), or None if it
    handed off before it could tell. ``not_before`` is when the service said
    the next call may be sent. ``answer`` is set, once, by the link that
    finishes, before it answers, so a late duplicate can send it again.
    """

    request_id: str
    token: str
    started: float
    service_timeout: int
    invocations: int
    previous_applied: bool | None = None
    not_before: float = 0.0
    answer: Answer | None = None

    @property
    def deadline(self) -> float:
        """When the last answer must be sent (epoch seconds)."""
        return self.started + self.service_timeout - ANSWER_MARGIN

    def can_continue(self, now: float) -> bool:
        """Whether another invocation still has time to do something useful."""
        return self.deadline - now >= CONTINUE_MIN and self.invocations < MAX_INVOCATIONS

    def next(
        self, token: str, *, now: float, wait: float, previous_applied: bool | None
    ) -> Handoff:
        """The record after handing off to the link that will hold ``token``."""
        return replace(
            self,
            token=token,
            invocations=self.invocations + 1,
            previous_applied=previous_applied,
            not_before=now + max(wait, 0.0),
        )


def first(request_id: str, token: str, started: float, properties: Mapping[str, Any]) -> Handoff:
    """The record of a request's first invocation (kept in memory until it hands off)."""
    return Handoff(request_id, token, started, service_timeout(properties), 1)


@dataclass(frozen=True)
class HandedOff:
    """The request continues in another invocation; this one sends no answer."""

    token: str
    invocation: int


@dataclass(frozen=True)
class Stopped:
    """A continuation that has nothing to do (answered, superseded, or not the record's)."""

    why: str


#: What carrying out a request gives: the answer, or why there is none yet.
Outcome = Answer | HandedOff | Stopped


def _answer_to_json(answer: Answer | None) -> dict[str, Any] | None:
    if answer is None:
        return None
    return {
        "status": answer.status,
        "physicalResourceId": answer.physical_resource_id,
        "reason": answer.reason,
        "data": dict(answer.data),
    }


def _answer_from_json(raw: Any) -> Answer | None:
    if raw is None:
        return None
    if raw["status"] == "SUCCESS":
        return Answer.success(str(raw["physicalResourceId"]), dict(raw["data"]))
    return Answer.failed(str(raw["physicalResourceId"]), str(raw["reason"]))


def to_json(handoff: Handoff) -> str:
    """The record as the JSON text stored in the table."""
    return json.dumps(
        {
            "requestId": handoff.request_id,
            "token": handoff.token,
            "started": handoff.started,
            "serviceTimeout": handoff.service_timeout,
            "invocations": handoff.invocations,
            "previousApplied": handoff.previous_applied,
            "notBefore": handoff.not_before,
            "answer": _answer_to_json(handoff.answer),
        },
        sort_keys=True,
    )


def from_json(text: str) -> Handoff:
    """The record stored as ``text`` (see ``to_json``)."""
    raw = json.loads(text)
    previous = raw["previousApplied"]
    return Handoff(
        request_id=str(raw["requestId"]),
        token=str(raw["token"]),
        started=float(raw["started"]),
        service_timeout=int(raw["serviceTimeout"]),
        invocations=int(raw["invocations"]),
        previous_applied=None if previous is None else bool(previous),
        not_before=float(raw["notBefore"]),
        answer=_answer_from_json(raw["answer"]),
    )


def outcome_to_dict(outcome: Outcome) -> dict[str, Any]:
    """An outcome as the idempotency record stores it."""
    if isinstance(outcome, Answer):
        return {"answer": _answer_to_json(outcome)}
    if isinstance(outcome, HandedOff):
        return {"handedOff": {"token": outcome.token, "invocation": outcome.invocation}}
    return {"stopped": outcome.why}


def outcome_from_dict(raw: Mapping[str, Any]) -> Outcome:
    """The outcome an idempotency record holds (see ``outcome_to_dict``)."""
    if "handedOff" in raw:
        handed = raw["handedOff"]
        return HandedOff(str(handed["token"]), int(handed["invocation"]))
    if "stopped" in raw:
        return Stopped(str(raw["stopped"]))
    answer = _answer_from_json(raw.get("answer"))
    if answer is None:
        raise ValueError("an idempotency record without an outcome")
    return answer
