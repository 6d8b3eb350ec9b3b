"""The Lambda hook: documented requests, a local HTTPS payload server, stubbed AWS.

No local engine runs CloudFormation Hooks, so the requests are built from
the shapes AWS documents (Hooks User Guide, "Create Lambda functions to
evaluate resources for Lambda Hooks"): STACK and CHANGE_SET targets,
CREATE/UPDATE/DELETE invocation points, the payload behind a pre-signed S3
URL (``template``/``previousTemplate``, or ``template``/``changedResources``
whose contexts hold every scalar as a string). The shared table of cases
runs through both targets and must agree with ``sir-membership check``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from guardrail_cases import (
    ACCOUNT,
    BASE,
    CASES,
    LOGICAL_ID,
    REGION,
    SECRETS,
    STACK,
    STACK_ID,
    Case,
    check_outcomes,
    properties,
    resource,
    state,
    template,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from payload_server import PayloadServer

from sir_membership.guard import url_allowed
from sir_membership.guardrails import hook
from sir_membership.guardrails.answer import MAX_MESSAGE
from sir_membership.guardrails.payload import DEFAULT_PAYLOAD_PATTERNS
from sir_membership.preview.base import normal

CHANGE_SET_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/guarded/1a2345b6-0000-00a0-a123-00abc0abc000"
HOOK_NAME = "Private::SirMembership::Guardrails"


@pytest.fixture(scope="module")
def server() -> Iterator[PayloadServer]:
    with PayloadServer() as running:
        yield running


def stack_request(url: str, point: str) -> dict[str, Any]:
    """A STACK request as documented (the example's spelling of the keys)."""
    return {
        "clientRequestToken": "f8da6d11-b23f-48f4-814c-0fb6a667f50e",
        "awsAccountId": ACCOUNT,
        "stackId": STACK_ID,
        "changeSetId": None,
        "hookTypeName": HOOK_NAME,
        "hookTypeVersion": "00000001",
        "hookModel": {"LambdaFunction": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:hook"},
        "actionInvocationPoint": point,
        "requestData": {
            "targetName": "STACK",
            "targetType": "STACK",
            "targetLogicalId": STACK,
            "payload": url,
        },
        "requestContext": {"invocation": 1, "callbackContext": None},
    }


def change_set_request(url: str) -> dict[str, Any]:
    """A CHANGE_SET request, in the input syntax's spelling (``clientRequesttoken``, ``stackID``)."""
    return {
        "clientRequesttoken": "0b7c3f2a-token",
        "awsAccountId": ACCOUNT,
        "stackID": STACK_ID,
        "changeSetId": CHANGE_SET_ID,
        "hookTypeName": HOOK_NAME,
        "hookTypeVersion": "00000001",
        "hookModel": {"LambdaFunction": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:hook"},
        "requestData": {
            "targetName": "CHANGE_SET",
            "targetType": "CHANGE_SET",
            "targetLogicalId": CHANGE_SET_ID,
            "payload": url,
        },
        "requestContext": {"invocation": 1, "callbackContext": None},
    }


def stack_payload(case: Case) -> dict[str, str]:
    """Templates as submitted: YAML for the new one, JSON for the previous one."""
    previous = json.dumps(template(case.old)) if case.old is not None else ""
    return {"template": yaml.safe_dump(template(case.new)), "previousTemplate": previous}


def change(action: str, old: Any, new: Any) -> dict[str, Any]:
    def context(res: Any) -> str | None:
        return None if res is None else json.dumps({"Properties": normal(res["Properties"])})

    return {
        "logicalResourceId": LOGICAL_ID,
        "resourceType": "Custom::SecurityIRMembership",
        "action": action,
        "lineNumber": None if action == "DELETE" else 3,
        "beforeContext": context(old),
        "afterContext": context(new),
    }


def change_set_payload(case: Case) -> dict[str, Any]:
    """The new template and the membership's change (none when it does not change)."""
    changes = []
    if case.old is None:
        changes.append(change("CREATE", None, case.new))
    elif case.new is None:
        changes.append(change("DELETE", case.old, None))
    elif case.old != case.new:
        changes.append(change("UPDATE", case.old, case.new))
    return {"template": json.dumps(template(case.new)), "changedResources": changes}


class Stubs:
    """security-ir and CloudFormation clients whose every call is expected (Stubber)."""

    def __init__(self) -> None:
        self.security_ir = boto3.client("security-ir", region_name=REGION)
        self.cloudformation = boto3.client("cloudformation", region_name=REGION)
        self.sir = Stubber(self.security_ir)
        self.cfn = Stubber(self.cloudformation)

    def read(self, document: dict[str, Any]) -> None:
        membership_id = document["membershipId"]
        self.sir.add_response("get_membership", document, {"membershipId": membership_id})

    def deployed(self, body: dict[str, Any] | None) -> None:
        params = {"StackName": STACK_ID, "TemplateStage": "Original"}
        if body is None:
            self.cfn.add_client_error("get_template", "AccessDenied", "denied", 403, None, params)
        else:
            self.cfn.add_response(
                "get_template", {"TemplateBody": json.dumps(body)}, expected_params=params
            )

    def deps(self, server: PayloadServer, env: dict[str, str], left: float = 25.0) -> hook.Deps:
        environment = {"PayloadUrlPatterns": server.origin, **env}
        end = time.monotonic() + left
        return hook.Deps(
            environment,
            lambda: end - time.monotonic(),
            lambda region: self.security_ir,
            lambda region: self.cloudformation,
            server.client_context(),
        )

    def __enter__(self) -> Stubs:
        self.sir.activate()
        self.cfn.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sir.assert_no_pending_responses()
        self.cfn.assert_no_pending_responses()
        self.sir.deactivate()
        self.cfn.deactivate()


def failing(answer: dict[str, Any]) -> set[str]:
    """The rules an answer's message fails, for the case's resource."""
    prefix = f"FAIL {STACK}/{LOGICAL_ID}: "
    return {
        line.removeprefix(prefix).split(":")[0]
        for line in answer["message"].splitlines()
        if line.startswith(prefix)
    }


def annotation(answer: dict[str, Any], rule: str) -> dict[str, Any]:
    (found,) = [a for a in answer["annotations"] if a["annotationName"] == f"sir-membership-{rule}"]
    return found


def run_stack(case: Case, server: PayloadServer) -> dict[str, Any]:
    point = "CREATE_PRE_PROVISION" if case.old is None else "UPDATE_PRE_PROVISION"
    url = server.url_for(stack_payload(case))
    with Stubs() as stubs:
        stubs.read(case.actual)
        return hook.handle(stack_request(url, point), stubs.deps(server, case.settings))


def run_change_set(case: Case, server: PayloadServer) -> dict[str, Any]:
    payload = change_set_payload(case)
    url = server.url_for(payload)
    with Stubs() as stubs:
        if payload["changedResources"]:
            stubs.read(case.actual)
        if case.new is None:
            stubs.deployed(template(case.old))
        return hook.handle(change_set_request(url), stubs.deps(server, case.settings))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_case_through_the_hook_agrees_with_check(
    case: Case, server: PayloadServer, tmp_path: Path
) -> None:
    by_check = {
        rule for rule, outcome in check_outcomes(case, tmp_path).items() if outcome == "fail"
    }
    stack = run_stack(case, server)
    change_set = run_change_set(case, server)
    assert failing(stack) == failing(change_set) == by_check
    assert annotation(stack, case.rule)["status"] == (
        "FAILED" if case.expect == "fail" else "PASSED"
    )
    for answer, token in (
        (stack, "f8da6d11-b23f-48f4-814c-0fb6a667f50e"),
        (change_set, "0b7c3f2a-token"),
    ):
        assert answer["clientRequestToken"] == token
        if case.expect == "fail":
            assert answer["hookStatus"] == "FAILED"
            assert answer["errorCode"] == "NonCompliant"
            assert f"FAIL {STACK}/{LOGICAL_ID}: {case.rule}: " in answer["message"]
        else:
            assert answer["hookStatus"] == "SUCCESS"
            assert "errorCode" not in answer
        text = json.dumps(answer)
        assert len(answer["message"]) <= MAX_MESSAGE
        for secret in (*SECRETS, "secret-signature"):
            assert secret not in text


def test_a_failed_annotation_says_how_to_fix_it(server: PayloadServer) -> None:
    case = next(c for c in CASES if c.name == "many-ous-removed")
    found = annotation(run_stack(case, server), "max-ous-removed")
    assert found == {
        "annotationName": "sir-membership-max-ous-removed",
        "status": "FAILED",
        "statusMessage": f"{STACK}/{LOGICAL_ID}: removes 6 of 7 OUs from coverage "
        "(GetMembership); MaxOrganizationalUnitsRemoved is 5",
        "remediationMessage": "remove at most 5 OUs per change (deploy in steps), or raise "
        "MaxOrganizationalUnitsRemoved",
        "remediationLink": found["remediationLink"],
        "severityLevel": "CRITICAL",
    }
    assert found["remediationLink"].startswith("https://")


# -- deletions ---------------------------------------------------------------------------


def test_a_stack_deletion_reads_the_deployed_template(server: PayloadServer) -> None:
    """A delete-stack payload holds no template: the deployed one says what is removed."""
    url = server.url_for({"template": "", "previousTemplate": ""})
    deployed = template(resource(properties(), policy="Delete"))
    with Stubs() as stubs:
        stubs.deployed(deployed)
        stubs.read(state())
        answer = hook.handle(stack_request(url, "DELETE_PRE_PROVISION"), stubs.deps(server, {}))
    assert answer["hookStatus"] == "FAILED"
    assert failing(answer) == {"retain-on-removal"}
    url = server.url_for({"template": "", "previousTemplate": ""})
    with Stubs() as stubs:
        stubs.deployed(template(BASE))
        stubs.read(state())
        answer = hook.handle(stack_request(url, "DELETE_PRE_PROVISION"), stubs.deps(server, {}))
    assert answer["hookStatus"] == "SUCCESS"


def test_an_unreadable_deployed_template_warns_or_fails(server: PayloadServer) -> None:
    for strict, status in (("false", "SUCCESS"), ("true", "FAILED")):
        url = server.url_for({"template": "", "previousTemplate": ""})
        with Stubs() as stubs:
            stubs.deployed(None)
            deps = stubs.deps(server, {"FailOnUnevaluable": strict})
            answer = hook.handle(stack_request(url, "DELETE_PRE_PROVISION"), deps)
        assert answer["hookStatus"] == status
        kind = "FAIL" if strict == "true" else "WARN"
        assert (
            f"{kind} {STACK}/(stack): retain-on-removal: GetTemplate failed (AccessDenied)"
            in answer["message"]
        )


def test_a_change_sets_own_deletion_policy_needs_no_template(server: PayloadServer) -> None:
    removed = change("DELETE", BASE, None)
    removed["beforeContext"] = json.dumps(
        {"Properties": normal(BASE["Properties"]), "DeletionPolicy": "Delete"}
    )
    url = server.url_for({"template": "{}", "changedResources": [removed]})
    with Stubs() as stubs:  # no GetTemplate expected
        stubs.read(state())
        answer = hook.handle(change_set_request(url), stubs.deps(server, {}))
    assert failing(answer) == {"retain-on-removal"}


# -- what cannot be evaluated ------------------------------------------------------------

PARAMETERIZED = {
    "Parameters": {"Lead": {"Type": "String", "Default": "Jane Doe"}},
    "Resources": {
        LOGICAL_ID: {
            "Type": "Custom::SecurityIRMembership",
            "DeletionPolicy": "Retain",
            "Properties": properties(
                IncidentResponseTeam=[
                    {"Name": {"Ref": "Lead"}, "JobTitle": "Lead", "Email": "a@example.com"},
                    {"Name": "B Person", "JobTitle": "IR", "Email": "b@example.com"},
                ]
            ),
        }
    },
}


def test_a_stack_payload_has_no_parameter_values_so_the_rule_warns(server: PayloadServer) -> None:
    for strict, status in (("false", "SUCCESS"), ("true", "FAILED")):
        url = server.url_for({"template": json.dumps(PARAMETERIZED), "previousTemplate": ""})
        with Stubs() as stubs:
            stubs.read(state())
            deps = stubs.deps(server, {"FailOnUnevaluable": strict, "MinResponders": "2"})
            answer = hook.handle(stack_request(url, "CREATE_PRE_PROVISION"), deps)
        assert answer["hookStatus"] == status
        kind = "FAIL" if strict == "true" else "WARN"
        assert (
            f"{kind} {STACK}/{LOGICAL_ID}: min-responders: cannot be evaluated: "
            "IncidentResponseTeam: parameter Lead has no value" in answer["message"]
        )
        assert annotation(answer, "min-responders")["status"] == (
            "FAILED" if strict == "true" else "SKIPPED"
        )


def test_a_masked_noecho_value_in_a_change_set_warns(server: PayloadServer) -> None:
    masked = change("CREATE", None, BASE)
    after = json.loads(masked["afterContext"])
    after["Properties"]["IncidentResponseTeam"][0]["Email"] = "****"
    masked["afterContext"] = json.dumps(after)
    url = server.url_for({"template": "{}", "changedResources": [masked]})
    with Stubs() as stubs:
        stubs.read(state())
        answer = hook.handle(change_set_request(url), stubs.deps(server, {}))
    assert answer["hookStatus"] == "SUCCESS"
    assert (
        f"WARN {STACK}/{LOGICAL_ID}: min-responders: cannot be evaluated: IncidentResponseTeam: "
        "masked (a NoEcho parameter)" in answer["message"]
    )


def test_a_membership_that_cannot_be_read_warns_only_where_it_matters(
    server: PayloadServer,
) -> None:
    case = next(c for c in CASES if c.name == "triage-turned-off")
    url = server.url_for(stack_payload(case))
    with Stubs() as stubs:
        stubs.sir.add_client_error("get_membership", "AccessDeniedException", "no", 403)
        answer = hook.handle(stack_request(url, "UPDATE_PRE_PROVISION"), stubs.deps(server, {}))
    assert answer["hookStatus"] == "SUCCESS"
    warned = [line for line in answer["message"].splitlines() if line.startswith("WARN")]
    assert len(warned) == 1
    assert warned[0].startswith(f"WARN {STACK}/{LOGICAL_ID}: triage-stays-on: cannot be evaluated:")
    assert "security-ir:GetMembership" in warned[0]


# -- the payload URL and what is behind it ----------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example/payload",
        "https://bucket.s3.amazonaws.com.attacker.example/payload",
        "http://bucket.s3.amazonaws.com/payload",
        "https://bucket.s3.amazonaws.com:8443/payload",
        "https://amazonaws.com@attacker.example/payload",
        "https://abc.execute-api.us-east-1.amazonaws.com/payload",
        "file:///etc/passwd",
        "",
    ],
)
def test_a_forged_payload_host_is_refused_before_any_request(url: str) -> None:
    def never(region: str) -> Any:
        raise AssertionError("no AWS client for a refused request")

    deps = hook.Deps({}, lambda: 25.0, never, never)
    answer = hook.handle(stack_request(url, "CREATE_PRE_PROVISION"), deps)
    assert answer["hookStatus"] == "FAILED"
    assert answer["errorCode"] == "InternalFailure"
    assert "/payload" not in answer["message"]
    assert (
        "nothing was fetched" in answer["message"] or "no requestData.payload" in answer["message"]
    )


def test_the_local_server_is_refused_under_the_default_patterns(server: PayloadServer) -> None:
    asked = len(server.requests)
    url = server.url_for(stack_payload(CASES[0]))
    deps = hook.Deps({}, lambda: 25.0, lambda r: None, lambda r: None, server.client_context())  # type: ignore[arg-type,return-value]
    answer = hook.handle(stack_request(url, "CREATE_PRE_PROVISION"), deps)
    assert answer["errorCode"] == "InternalFailure"
    assert "host 127.0.0.1:" in answer["message"]
    assert len(server.requests) == asked


@pytest.mark.parametrize(
    "host",
    [
        "bucket.s3.amazonaws.com",
        "s3.amazonaws.com",
        "bucket.s3.us-west-2.amazonaws.com",
        "s3.us-west-2.amazonaws.com",
        "bucket.s3-us-west-2.amazonaws.com",
        "bucket.s3.cn-north-1.amazonaws.com.cn",
    ],
)
def test_the_documented_s3_host_forms_are_allowed(host: str) -> None:
    assert url_allowed(f"https://{host}/key?X-Amz-Signature=x", DEFAULT_PAYLOAD_PATTERNS)


@pytest.mark.parametrize(
    ("served", "message"),
    [
        ({"raw": b"not json"}, "the payload is not JSON"),
        ({"raw": b"[1, 2]"}, "the payload is not a JSON object"),
        ({"raw": b"", "status": 403}, "the payload could not be read (HTTP 403)"),
        ({"raw": b"", "status": 302, "location": "https://attacker.example/"}, "(HTTP 302)"),
        ({"document": {"template": "Resources: [unclosed"}}, "neither JSON nor YAML"),
        ({"document": {"template": 42}}, "the payload's template is not a template"),
    ],
)
def test_a_malformed_payload_is_an_internal_failure_not_a_crash(
    served: dict[str, Any], message: str, server: PayloadServer
) -> None:
    url = server.url_for(served.pop("document", None), **served)
    with Stubs() as stubs:
        answer = hook.handle(stack_request(url, "UPDATE_PRE_PROVISION"), stubs.deps(server, {}))
    assert answer["hookStatus"] == "FAILED"
    assert answer["errorCode"] == "InternalFailure"
    assert message in answer["message"]
    assert "secret-signature" not in answer["message"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"changedResources": "everything"}, "changedResources is not a list"),
        ({"changedResources": [{"action": "CREATE"}]}, "not an object with a logicalResourceId"),
        (
            {"changedResources": [{**change("CREATE", None, BASE), "afterContext": "{oops"}]},
            "afterContext is not JSON",
        ),
    ],
)
def test_a_malformed_change_set_payload_is_an_internal_failure(
    payload: dict[str, Any], message: str, server: PayloadServer
) -> None:
    url = server.url_for(payload)
    with Stubs() as stubs:
        answer = hook.handle(change_set_request(url), stubs.deps(server, {}))
    assert (answer["hookStatus"], answer["errorCode"]) == ("FAILED", "InternalFailure")
    assert message in answer["message"]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("not an object", "not a JSON object"),
        ({"clientRequestToken": "t"}, "no requestData object"),
        ({"requestData": {"targetType": "RESOURCE"}}, "targetType RESOURCE is not one"),
        (
            {"requestData": {"targetType": "STACK"}, "actionInvocationPoint": "X"},
            "not a documented",
        ),
        ({"requestData": {"targetType": "STACK"}}, "no requestData.payload URL"),
    ],
)
def test_a_malformed_request_is_an_internal_failure(event: Any, message: str) -> None:
    answer = hook.handle(event, hook.Deps({}, lambda: 25.0, lambda r: None, lambda r: None))  # type: ignore[arg-type,return-value]
    assert (answer["hookStatus"], answer["errorCode"]) == ("FAILED", "InternalFailure")
    assert message in answer["message"]


def test_bad_settings_are_an_internal_failure_naming_the_parameter(server: PayloadServer) -> None:
    url = server.url_for(stack_payload(CASES[0]))
    with Stubs() as stubs:
        deps = stubs.deps(server, {"MaxOrganizationalUnitsRemoved": "lots"})
        answer = hook.handle(stack_request(url, "UPDATE_PRE_PROVISION"), deps)
    assert answer["errorCode"] == "InternalFailure"
    assert "MaxOrganizationalUnitsRemoved must be a whole number" in answer["message"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(["template", "previousTemplate", "changedResources", "x"]),
                    inner,
                    max_size=4,
                )
            ),
            max_leaves=12,
        ).map(lambda d: json.dumps(d).encode()),
    ),
    target=st.sampled_from(["STACK", "CHANGE_SET"]),
)
def test_any_payload_gets_an_answer(body: bytes, target: str, server: PayloadServer) -> None:
    url = server.url_for(raw=body)
    event = (
        stack_request(url, "UPDATE_PRE_PROVISION") if target == "STACK" else change_set_request(url)
    )
    stubs = Stubs()
    stubs.sir.activate()
    stubs.cfn.activate()
    answer = hook.handle(event, stubs.deps(server, {}))
    assert answer["hookStatus"] in ("SUCCESS", "FAILED")
    assert len(answer["message"]) <= MAX_MESSAGE
    assert "unexpected" not in answer["message"]


# -- time, size, logs --------------------------------------------------------------------


def test_a_hanging_payload_host_is_given_up_in_time(server: PayloadServer) -> None:
    url = server.url_for(stack_payload(CASES[0]), hang=10.0)
    start = time.monotonic()
    with Stubs() as stubs:
        answer = hook.handle(
            stack_request(url, "UPDATE_PRE_PROVISION"), stubs.deps(server, {}, left=3.0)
        )
    assert time.monotonic() - start < 2.5
    assert answer["errorCode"] == "InternalFailure"
    assert (
        "could not be read (TimeoutError)" in answer["message"] or "timed out" in answer["message"]
    )


def test_many_failures_fit_in_the_message(server: PayloadServer) -> None:
    members = {
        f"Membership{i:03d}": resource(
            properties(
                MembershipId=f"m-member{i:06d}",
                IncidentResponseTeam=[
                    {"Name": "A B", "JobTitle": "IR", "Email": f"a{i}@gmail.com"},
                    {"Name": "C D", "JobTitle": "IR", "Email": f"c{i}@gmail.com"},
                ],
            )
        )
        for i in range(60)
    }
    url = server.url_for({"template": json.dumps({"Resources": members}), "previousTemplate": ""})
    with Stubs() as stubs:
        for i in range(60):
            stubs.read(state(membership_id=f"m-member{i:06d}"))
        deps = stubs.deps(server, {"MinResponders": "3", "AllowedEmailDomains": "example.com"})
        answer = hook.handle(stack_request(url, "CREATE_PRE_PROVISION"), deps)
    assert answer["hookStatus"] == "FAILED"
    assert len(answer["message"]) <= MAX_MESSAGE
    assert answer["message"].splitlines()[-1].endswith("more line(s): see the annotations")
    assert answer["message"].startswith(
        "sir-membership guardrails: guardrails FAILED: 60 membership resource(s), 120 failure(s)"
    )


def test_logs_hold_no_sensitive_value_and_no_payload_url(
    server: PayloadServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    case = next(c for c in CASES if c.name == "personal-mailbox")
    run_stack(case, server)
    url = server.url_for(raw=b"not json")
    with Stubs() as stubs:
        hook.handle(stack_request(url, "UPDATE_PRE_PROVISION"), stubs.deps(server, {}))
    logged = caplog.text
    assert (
        "evaluated target=STACK point=UPDATE_PRE_PROVISION resources=1 failures=Membership:responder-email-domains"
        in logged
    )
    assert "not evaluated: PayloadUnreadable: the payload is not JSON" in logged
    for secret in (*SECRETS, "ann@gmail.com", "secret-signature", "hooks-payloads"):
        assert secret not in logged


def test_the_lambda_entry_point_reads_settings_from_the_environment(
    server: PayloadServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = next(c for c in CASES if c.name == "too-few-responders")
    url = server.url_for(stack_payload(case))
    stubs = Stubs()
    stubs.read(case.actual)
    monkeypatch.setenv("MinResponders", "3")
    monkeypatch.setenv("PayloadUrlPatterns", server.origin)
    monkeypatch.setattr(hook, "security_ir_client", lambda region: stubs.security_ir)
    trusted = server.client_context()
    monkeypatch.setattr(hook.ssl, "create_default_context", lambda: trusted)

    class Context:
        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 24_000

    with stubs:
        answer = hook.handler(stack_request(url, "UPDATE_PRE_PROVISION"), Context())
    assert failing(answer) == {"min-responders"}
