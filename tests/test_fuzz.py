"""Hypothesis-made events through the real handler: whatever arrives, the function stays safe.

Events are CloudFormation's shape with each part kept, dropped or replaced
(wrong types where CloudFormation puts strings, nested garbage, huge and
unicode values, the sensitive test values anywhere), ResponseURLs that are
allowed or forged (``localhost`` reaches the same receiver, so a PUT to a
forged URL would be recorded), and StackIds of an allowed stack, another
stack, another account or region. ``app.handler`` runs as deployed except
for its clients: security-ir answers from a botocore hook (parameters are
still validated against the service model) and DynamoDB is moto's.

Properties, for every event:

* no exception leaves the handler;
* an event with an allowed URL gets exactly one answer, at that URL; any
  other gets none (and makes no call);
* every answer is within 4,096 bytes, a single-line reason, never
  "Internal error" (the guard and the property parser name the problem);
* a forged stack, account or region, or an unknown RequestType, is answered
  FAILED without any security-ir call;
* no sensitive value (names, emails, job titles, the membership name, the
  URL's path or signature) is in any log line at DEBUG, nor in an answer.
"""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from botocore.awsrequest import AWSResponse
from conftest import (
    SECRET_EMAILS,
    SECRET_MEMBERSHIP_NAME,
    SECRET_NAMES,
    SECRET_TITLES,
    function_table,
    get_membership,
    ou,
    props,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from receiver import Receiver
from test_app import context

from sir_membership import app, guard, tasks
from sir_membership.response import MAX_BODY_BYTES

#: 2,000 events in `make test`; FUZZ_EXAMPLES changes it (e.g. a longer run by hand).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2000"))
TABLE = "sir-membership-idempotency-test"
ACCOUNT, REGION = "123456789012", "us-east-1"
ALLOWED_STACKS = "fuzz-ok-*,demo"
SIGNATURE = "fuzzsignature0123456789abcdef"
SECRETS = (*SECRET_NAMES, *SECRET_EMAILS, *SECRET_TITLES, SECRET_MEMBERSHIP_NAME)
#: The keys to drop or garble (the ResponseURL has kinds of its own below).
EVENT_KEYS = tuple(k for k in guard.CLOUDFORMATION_KEYS if k != "ResponseURL")


@dataclass
class SecurityIR:
    """security-ir behind the real client: every call recorded, answered from the test's data."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def answer(self, model: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        name, params = self.calls[-1]
        if name != "GetMembership":
            return AWSResponse(None, 200, {}, None), {}
        arn = f"arn:aws:security-ir:{REGION}:{ACCOUNT}:membership/{params['membershipId']}"
        # Covers one OU fewer than the declarations do, so valid events lead to writes.
        parsed = get_membership(
            membershipId=params["membershipId"],
            membershipArn=arn,
            membershipAccountsConfigurations={"organizationalUnits": [ou(1)]},
        )
        return AWSResponse(None, 200, {}, None), parsed


class EveryField(logging.Formatter):
    """A record with all it carries (message, arguments, extra keys), for the leak check."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record.__dict__, default=str, ensure_ascii=False)


@dataclass
class Rig:
    receiver: Receiver
    security_ir: SecurityIR
    logs: io.StringIO

    @property
    def port(self) -> int:
        return int(self.receiver.server.server_address[1])

    def reset(self) -> None:
        for kept in (self.receiver.bodies, self.receiver.paths, self.receiver.headers):
            kept.clear()
        self.security_ir.calls.clear()
        self.logs.seek(0)
        self.logs.truncate()


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setenv("ALLOWED_STACK_NAMES", ALLOWED_STACKS)
    monkeypatch.setenv("RESPONSE_URL_PATTERNS", "http://127.0.0.1:*")
    fake = SecurityIR()
    events = tasks.security_ir().meta.events
    events.register("before-parameter-build.security-ir", fake.record, unique_id="fuzz-record")
    events.register("before-call.security-ir", fake.answer, unique_id="fuzz-answer")
    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setFormatter(EveryField())
    powertools = logging.StreamHandler(buffer)
    powertools.setFormatter(app.logger.registered_formatter)
    logging.root.addHandler(capture)
    root_level = logging.root.level
    logging.root.setLevel(logging.DEBUG)
    app.logger.addHandler(powertools)
    app.logger.setLevel("DEBUG")
    app._configure_logging()
    try:
        with mock_aws(), Receiver() as receiver:
            function_table(monkeypatch, TABLE)
            yield Rig(receiver, fake, buffer)
    finally:
        events.unregister("before-parameter-build.security-ir", unique_id="fuzz-record")
        events.unregister("before-call.security-ir", unique_id="fuzz-answer")
        logging.root.removeHandler(capture)
        logging.root.setLevel(root_level)
        app.logger.removeHandler(powertools)
        app.logger.setLevel("INFO")
        app._configure_logging()


# --- strategies -------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(SECRETS),
)
#: Long values without the cost of drawing every character.
huge = st.builds(
    lambda chunk, n: chunk * n,
    st.sampled_from(["x", "é", "\U0001f600", "\u0000", "A ", "ou-ab12-", SECRET_EMAILS[0]]),
    st.integers(min_value=300, max_value=6000),
)
garbage = st.recursive(
    st.one_of(scalars, huge),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.sampled_from(EVENT_KEYS)), inner, max_size=4
        ),
    ),
    max_leaves=10,
)
team_member = st.fixed_dictionaries(
    {
        "Name": st.one_of(st.sampled_from(SECRET_NAMES), garbage),
        "JobTitle": st.one_of(st.sampled_from(SECRET_TITLES), garbage),
        "Email": st.one_of(st.sampled_from(SECRET_EMAILS), garbage),
    },
    optional={"CommunicationPreferences": st.one_of(st.just(["Case Created"]), garbage)},
)
property_values = {
    "MembershipId": st.one_of(st.just("m-abcdef0123"), st.just("m-zzzzzzzzzz99"), garbage),
    "MembershipName": st.one_of(st.just(SECRET_MEMBERSHIP_NAME), huge, garbage),
    "IncidentResponseTeam": st.one_of(st.lists(team_member, max_size=3), garbage),
    "OptInFeatures": st.one_of(
        st.just([{"FeatureName": "Triage", "IsEnabled": "true"}]), st.lists(garbage, max_size=2)
    ),
    "OrganizationalUnits": st.one_of(
        st.lists(st.integers(1, 60).map(ou), max_size=30), st.lists(garbage, max_size=3), huge
    ),
    "CoverEntireOrganization": st.one_of(st.sampled_from(["true", "false"]), garbage),
    "UndoMembershipCancellation": st.one_of(st.sampled_from(["true", "false"]), garbage),
    "OnDelete": st.one_of(st.sampled_from(["Retain", "RemoveOrganizationalUnits"]), garbage),
}


def mostly(draw: st.DrawFn, common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> Any:
    """``common`` seven times in ten (Hypothesis favours small numbers: 0 picks it)."""
    return draw(common if draw(st.integers(0, 9)) < 7 else rare)


@st.composite
def properties(draw: st.DrawFn) -> Any:
    """Mostly a valid declaration with some values replaced; sometimes not an object at all."""
    roll = draw(st.integers(0, 9))  # Hypothesis favours small numbers: 0 is the valid case
    if roll == 9:
        return draw(garbage)
    out = props()
    if roll < 5:  # left valid: the event reaches security-ir
        return out
    for key in draw(st.lists(st.sampled_from(sorted(property_values)), max_size=4, unique=True)):
        if draw(st.booleans()):
            out[key] = draw(property_values[key])
        else:
            out.pop(key, None)
    if draw(st.integers(0, 5)) == 5:
        out[draw(st.one_of(st.text(max_size=10), st.sampled_from(SECRETS)))] = draw(garbage)
    return out


@dataclass(frozen=True)
class Case:
    """One event and what is known about it by construction."""

    event: Any
    url_allowed: bool
    stack_ok: bool
    request_type_ok: bool


# The first kinds are the valid ones, drawn most often (``mostly``), so the paths past
# the guard are exercised as much as the refusals.
URL_KINDS = ("allowed", "localhost", "https", "userinfo", "garbage", "missing", "other-host")
STACK_KINDS = ("ok", "demo", "other-name", "other-account", "other-region", "garbage")


def response_url(kind: str, port: int, path: str) -> Any:
    query = f"X-Amz-Signature={SIGNATURE}&X-Amz-Expires=7200"
    return {
        "allowed": f"http://127.0.0.1:{port}/cfn/{path}?{query}",
        "localhost": f"http://localhost:{port}/forged/{path}?{query}",
        "https": f"https://127.0.0.1:{port}/cfn/{path}?{query}",
        "userinfo": f"http://127.0.0.1:{port}@127.0.0.1:{port}/cfn/{path}?{query}",
        "other-host": f"http://cloudformation-response.example:{port}/cfn/{path}?{query}",
    }[kind]


def stack(kind: str, name: str) -> str:
    account, region = ACCOUNT, REGION
    if kind == "other-account":
        account = "210987654321"
    if kind == "other-region":
        region = "eu-west-1"
    if kind == "other-name":
        name = f"other-{name}"
    elif kind == "demo":
        name = "demo"
    else:
        name = f"fuzz-ok-{name}"
    return f"arn:aws:cloudformation:{region}:{account}:stack/{name}/{uuid.uuid4()}"


@st.composite
def cases(draw: st.DrawFn, port: int) -> Case:
    if draw(st.integers(0, 39)) == 39:  # not even an object
        return Case(draw(garbage), url_allowed=False, stack_ok=False, request_type_ok=False)
    request_type = mostly(
        draw,
        st.sampled_from(["Create", "Update", "Delete"]),
        st.sampled_from(["Frobnicate", "create", "DELETE", ""]) | garbage,
    )
    url_kind = mostly(draw, st.just("allowed"), st.sampled_from(URL_KINDS[1:]))
    stack_kind = mostly(draw, st.sampled_from(STACK_KINDS[:2]), st.sampled_from(STACK_KINDS[2:]))
    name = draw(st.text(alphabet="abcxyz019-", max_size=12))
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sir",
        "StackId": stack(stack_kind, name) if stack_kind != "garbage" else draw(garbage),
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": "Membership",
        "ResourceType": "Custom::SecurityIRMembership",
        "PhysicalResourceId": draw(st.sampled_from(["m-abcdef0123", "Membership-failed-1"])),
        "ResourceProperties": draw(properties()),
        "OldResourceProperties": draw(properties()),
    }
    if url_kind == "garbage":
        event["ResponseURL"] = draw(garbage)
    elif url_kind != "missing":
        path = draw(st.one_of(st.sampled_from(SECRETS), st.text(max_size=10))).replace(" ", "%20")
        event["ResponseURL"] = response_url(url_kind, port, quote(path, safe="%"))
    # Any other key may be dropped or replaced by garbage.
    mutated = draw(st.lists(st.sampled_from(EVENT_KEYS), max_size=3, unique=True))
    for key in mutated if draw(st.integers(0, 2)) == 2 else ():
        if draw(st.booleans()):
            event.pop(key, None)
        else:
            event[key] = draw(garbage)
    if draw(st.integers(0, 9)) == 9:
        event[draw(st.sampled_from(["CrHelperData", "CrHelperPoll", "Extra"]))] = draw(garbage)
    return Case(
        event,
        url_allowed=url_kind == "allowed",
        stack_ok=stack_kind in ("ok", "demo") and event.get("StackId") is not None,
        request_type_ok=event.get("RequestType") in ("Create", "Update", "Delete"),
    )


# --- the property --------------------------------------------------------------------


def test_any_event_is_handled_safely(rig: Rig) -> None:
    seen = {"answered": 0, "called": 0, "written": 0}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(case=cases(rig.port))
    def check(case: Case) -> None:
        rig.reset()
        app.handler(case.event, context())  # an exception here fails the example
        puts = list(zip(rig.receiver.paths, rig.receiver.bodies, rig.receiver.headers, strict=True))
        calls = rig.security_ir.calls
        if case.url_allowed:
            assert len(puts) == 1, "an event with an allowed URL is answered exactly once"
            assert puts[0][0].startswith("/cfn/")
        else:
            assert puts == [], "no answer to a URL outside RESPONSE_URL_PATTERNS"
            assert calls == [], "no call for an event that cannot be answered"
        for _path, body, headers in puts:
            assert int(headers["content-length"]) <= MAX_BODY_BYTES
            assert body["Status"] in ("SUCCESS", "FAILED")
            assert "\n" not in body["Reason"]
            assert not body["Reason"].startswith(("Internal error", "Malformed request;"))
            shown = dict(body)
            if isinstance(case.event, dict) and shown["PhysicalResourceId"] == case.event.get(
                "PhysicalResourceId"
            ):
                # CloudFormation requires a Delete's (or failed Update's) answer to carry
                # the id it sent: echoing CloudFormation's own value back reveals nothing.
                shown.pop("PhysicalResourceId")
            text = json.dumps(shown, ensure_ascii=False)
            assert not [s for s in SECRETS if s in text], "a sensitive value in the answer"
        if not (case.stack_ok and case.request_type_ok):
            assert calls == [], "a forged stack/account/region or RequestType made a call"
            assert all(body["Status"] == "FAILED" for _, body, _ in puts)
        logged = rig.logs.getvalue()
        for secret in (*SECRETS, SIGNATURE, "/cfn/", "/forged/"):
            assert secret not in logged, f"{secret!r} was logged"
        seen["answered"] += bool(puts)
        seen["called"] += bool(calls)
        seen["written"] += any(name == "UpdateMembership" for name, _ in calls)

    check()
    # The generator reaches every path: refused, answered, read, and written.
    assert seen["answered"] >= EXAMPLES // 10, seen
    assert seen["called"] >= EXAMPLES // 50, seen
    assert seen["written"] >= 1, seen
