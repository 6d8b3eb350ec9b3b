"""The service shell: exact calls, retries inside the deadline, error reasons."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError
from botocore.stub import Stubber
from conftest import MEMBERSHIP_ID, get_membership, ou
from hypothesis import given, settings
from hypothesis import strategies as st

from sir_membership.errors import (
    MembershipNotFound,
    OutOfTime,
    PermissionDenied,
    ServiceFailure,
)
from sir_membership.membership import state_from_api
from sir_membership.plan import plan_changes
from sir_membership.properties import MembershipProperties
from sir_membership.service import MembershipService, RetryPolicy


class Clock:
    """A fake deadline: sleeping spends the invocation's remaining time."""

    def __init__(self, remaining: float = 300.0) -> None:
        self.left = remaining
        self.sleeps: list[float] = []

    def remaining(self) -> float:
        return self.left

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.left -= seconds


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "security-ir", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1})
    )


def service(client: Any, clock: Clock, **policy: Any) -> MembershipService:
    return MembershipService(
        client,
        clock.remaining,
        policy=RetryPolicy(**policy),
        sleep=clock.sleep,
        jitter=lambda low, high: high,
        account_id="123456789012",
        region="us-east-1",
    )


def add_ous(n: int) -> MembershipProperties:
    return MembershipProperties(
        MEMBERSHIP_ID,
        organizational_units=frozenset({ou(1), ou(2)} | {ou(100 + i) for i in range(n)}),
    )


def update_params(adds: list[str]) -> dict[str, Any]:
    return {
        "membershipId": MEMBERSHIP_ID,
        "membershipAccountsConfigurationsUpdate": {"organizationalUnitsToAdd": adds},
    }


def test_get_parses_state(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_response("get_membership", get_membership(), {"membershipId": MEMBERSHIP_ID})
        state = service(client, Clock()).get(MEMBERSHIP_ID)
        stub.assert_no_pending_responses()
    assert state.organizational_units == {ou(1), ou(2)}
    assert state.attributes()["MembershipArn"].endswith(MEMBERSHIP_ID)


def test_apply_sends_each_planned_request_in_order(client: Any) -> None:
    desired = add_ous(7)
    start = state_from_api(get_membership())
    plan = plan_changes(desired, start)
    with Stubber(client) as stub:
        for request in plan.requests:
            stub.add_response("update_membership", {}, request.to_api())
        applied = service(client, Clock()).apply(
            start, plan, lambda now: plan_changes(desired, now)
        )
        stub.assert_no_pending_responses()
    assert applied.calls == 2
    assert applied.state.organizational_units == desired.organizational_units


@pytest.mark.parametrize("code", ["ThrottlingException", "ConflictException"])
def test_refused_calls_are_retried_with_backoff(client: Any, code: str) -> None:
    clock = Clock()
    desired = add_ous(1)
    start = state_from_api(get_membership())
    params = update_params([ou(100)])
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_client_error(
                "update_membership",
                code,
                http_status_code=429 if "Thr" in code else 409,
                expected_params=params,
            )
        stub.add_response("update_membership", {}, params)
        applied = service(client, clock).apply(
            start, plan_changes(desired, start), lambda now: plan_changes(desired, now)
        )
        stub.assert_no_pending_responses()
    assert applied.calls == 1
    assert clock.sleeps == [0.4, 0.8, 1.6]


def test_retry_after_is_honoured(client: Any) -> None:
    clock = Clock()
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_membership",
            "ThrottlingException",
            http_status_code=429,
            response_meta={},
            modeled_fields={"retryAfterSeconds": 5, "message": "slow"},
        )
        stub.add_response("get_membership", get_membership())
        service(client, clock).get(MEMBERSHIP_ID)
    assert clock.sleeps == [5.0]


def test_5xx_rereads_and_replans_instead_of_resending(client: Any) -> None:
    """The failed call was in fact applied: the re-read shows it, so it is not sent again."""
    desired = add_ous(7)
    start = state_from_api(get_membership())
    plan = plan_changes(desired, start)
    first, second = (r.to_api() for r in plan.requests)
    after_first = get_membership(
        membershipAccountsConfigurations={
            "coverEntireOrganization": False,
            "organizationalUnits": [
                ou(1),
                ou(2),
                *first["membershipAccountsConfigurationsUpdate"]["organizationalUnitsToAdd"],
            ],
        }
    )
    with Stubber(client) as stub:
        stub.add_client_error(
            "update_membership",
            "InternalServerException",
            http_status_code=500,
            expected_params=first,
        )
        stub.add_response("get_membership", after_first, {"membershipId": MEMBERSHIP_ID})
        stub.add_response("update_membership", {}, second)
        applied = service(client, Clock()).apply(
            start, plan, lambda now: plan_changes(desired, now)
        )
        stub.assert_no_pending_responses()
    assert applied.calls == 2, "the 5xx call was applied (the re-read shows it): it counts"
    assert applied.state.organizational_units == desired.organizational_units


def test_5xx_not_applied_is_not_counted(client: Any) -> None:
    desired = add_ous(7)
    start = state_from_api(get_membership())
    plan = plan_changes(desired, start)
    first, second = (r.to_api() for r in plan.requests)
    with Stubber(client) as stub:
        stub.add_client_error("update_membership", "InternalServerException", http_status_code=500)
        stub.add_response("get_membership", get_membership(), {"membershipId": MEMBERSHIP_ID})
        stub.add_response("update_membership", {}, first)
        stub.add_response("update_membership", {}, second)
        applied = service(client, Clock()).apply(
            start, plan, lambda now: plan_changes(desired, now)
        )
        stub.assert_no_pending_responses()
    assert applied.calls == 2


def test_network_errors(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    svc = service(client, clock)
    outcomes: list[Exception | dict[str, Any]] = [
        ConnectTimeoutError(endpoint_url="x"),
        ReadTimeoutError(endpoint_url="x"),
        get_membership(),
    ]

    def fake_get(**_: Any) -> dict[str, Any]:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(client, "get_membership", fake_get)
    assert svc.get(MEMBERSHIP_ID).membership_id == MEMBERSHIP_ID
    assert svc.calls == 3
    assert len(clock.sleeps) == 2


def test_partial_failure_says_how_many_calls_were_applied(client: Any) -> None:
    desired = add_ous(12)
    start = state_from_api(get_membership())
    plan = plan_changes(desired, start)
    assert len(plan.requests) == 3
    with Stubber(client) as stub:
        stub.add_response("update_membership", {}, plan.requests[0].to_api())
        stub.add_client_error(
            "update_membership",
            "ValidationException",
            http_status_code=400,
            modeled_fields={
                "message": "bad",
                "reason": "OTHER",
                "fieldList": [{"name": "organizationalUnitsToAdd", "message": "x"}],
            },
        )
        with pytest.raises(ServiceFailure) as info:
            service(client, Clock()).apply(start, plan, lambda now: plan_changes(desired, now))
    assert str(info.value) == (
        "UpdateMembership was rejected: ValidationException on organizationalUnitsToAdd. "
        "1 of 3 UpdateMembership calls were applied"
    )
    assert info.value.applied == 1


def test_retries_stop_before_the_deadline(client: Any) -> None:
    clock = Clock(remaining=25.0)
    with Stubber(client) as stub:
        for _ in range(10):
            stub.add_client_error("get_membership", "ThrottlingException", http_status_code=429)
        with pytest.raises(
            ServiceFailure, match="ran out of time before GetMembership could be sent"
        ):
            service(client, clock).get(MEMBERSHIP_ID)
    assert clock.left >= RetryPolicy().answer_reserve, "time is kept to answer CloudFormation"


def test_attempts_are_bounded(client: Any) -> None:
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_client_error("get_membership", "InternalServerException", http_status_code=500)
        with pytest.raises(ServiceFailure, match="still failing after 3 attempts"):
            service(client, Clock(), max_attempts=3).get(MEMBERSHIP_ID)


def test_a_refusal_is_retried_past_max_attempts_until_the_time_runs_out(client: Any) -> None:
    # The service may refuse for minutes while accounts propagate: only time ends it.
    policy = RetryPolicy()
    clock = Clock(remaining=policy.call_timeout + policy.answer_reserve + 30.0)
    with Stubber(client) as stub:
        for _ in range(6):
            stub.add_client_error("get_membership", "ThrottlingException", http_status_code=429)
        stub.add_response("get_membership", get_membership(), {"membershipId": MEMBERSHIP_ID})
        state = service(client, clock, max_attempts=3).get(MEMBERSHIP_ID)
        stub.assert_no_pending_responses()
    assert state.membership_id == MEMBERSHIP_ID
    assert len(clock.sleeps) == 6
    with Stubber(client) as stub:
        for _ in range(40):
            stub.add_client_error("get_membership", "ThrottlingException", http_status_code=429)
        with pytest.raises(OutOfTime, match="ran out of time before GetMembership"):
            service(client, clock, max_attempts=3).get(MEMBERSHIP_ID)


def test_not_found_says_to_check_account_and_region(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_client_error("get_membership", "ResourceNotFoundException", http_status_code=404)
        svc = service(client, Clock())
        with pytest.raises(MembershipNotFound) as info:
            svc.get(MEMBERSHIP_ID)
        stub.add_client_error("get_membership", "ResourceNotFoundException", http_status_code=404)
        assert svc.find(MEMBERSHIP_ID) is None
    assert str(info.value) == (
        f"Membership {MEMBERSHIP_ID} was not found in account 123456789012 region us-east-1: "
        "deploy this stack in the membership's account and region, and check MembershipId"
    )


def test_access_denied_names_the_permission(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_client_error("get_membership", "AccessDeniedException", http_status_code=403)
        with pytest.raises(PermissionDenied, match="allow security-ir:GetMembership on arn:"):
            service(client, Clock()).get(MEMBERSHIP_ID)


ROLE = "arn:aws:sts::123456789012:assumed-role/sir-membership-FunctionRole-X/sir-membership"
ON = f"arn:aws:security-ir:us-east-1:123456789012:membership/{MEMBERSHIP_ID}"
SCP = "arn:aws:organizations::111111111111:policy/o-a1b2c3d4e5/service_control_policy/p-examp1e9"
DENIED_BY = f"Access denied for security-ir:GetMembership on membership {MEMBERSHIP_ID}"
ALLOW_IN_ROLE = (
    "allow security-ir:GetMembership on arn:<partition>:security-ir:<region>:<account>:"
    "membership/* in the function's role"
)


def denied(cause: str) -> str:
    """AccessDeniedException's message in AWS's standard form."""
    return (
        f"User: {ROLE} is not authorized to perform: security-ir:GetMembership on resource: "
        f"{ON} {cause}"
    )


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        pytest.param(
            denied("with an explicit deny in a service control policy"),
            f"{DENIED_BY} with an explicit deny in a service control policy: check the "
            "service control policies of AWS Organizations that apply to account 123456789012 "
            "(on the account, its OUs and the root) for a Deny of security-ir:GetMembership",
            id="scp-explicit",
        ),
        pytest.param(
            denied(f"with an explicit deny in a service control policy: {SCP}"),
            f"{DENIED_BY} with an explicit deny in a service control policy ({SCP}): check the "
            "service control policies of AWS Organizations that apply to account 123456789012 "
            "(on the account, its OUs and the root) for a Deny of security-ir:GetMembership",
            id="scp-explicit-named",
        ),
        pytest.param(
            denied("because no service control policy allows the security-ir:GetMembership action"),
            f"{DENIED_BY} because no service control policy allows the security-ir:GetMembership "
            "action: check the service "
            "control policies of AWS Organizations that apply to account 123456789012 (on the "
            "account, its OUs and the root) for one that allows security-ir:GetMembership",
            id="scp-implicit",
        ),
        pytest.param(
            denied("with an explicit deny in a permissions boundary"),
            f"{DENIED_BY} with an explicit deny in a permissions boundary: check the "
            "permissions boundary of the function's role for a Deny of security-ir:GetMembership",
            id="boundary-explicit",
        ),
        pytest.param(
            denied("because no permissions boundary allows the security-ir:GetMembership action"),
            f"{DENIED_BY} because no permissions boundary allows the security-ir:GetMembership "
            "action: check the permissions "
            "boundary of the function's role for one that allows security-ir:GetMembership",
            id="boundary-implicit",
        ),
        pytest.param(
            denied("with an explicit deny in a resource-based policy"),
            f"{DENIED_BY} with an explicit deny in a resource-based policy: check the "
            f"resource-based policy of membership {MEMBERSHIP_ID} for a Deny of "
            "security-ir:GetMembership",
            id="resource-explicit",
        ),
        pytest.param(
            denied("with an explicit deny in an identity-based policy"),
            f"{DENIED_BY} with an explicit deny in an identity-based policy: check the "
            "function's role for a Deny of security-ir:GetMembership",
            id="identity-explicit",
        ),
        pytest.param(
            denied("because no identity-based policy allows the security-ir:GetMembership action"),
            f"{DENIED_BY} because no identity-based policy allows the security-ir:GetMembership "
            f"action: {ALLOW_IN_ROLE}",
            id="identity-implicit",
        ),
        pytest.param(
            "User is not authorized to perform this action",
            f"{DENIED_BY}: {ALLOW_IN_ROLE}",
            id="kind-not-said",
        ),
    ],
)
def test_access_denied_names_the_kind_of_deny_and_what_to_check(
    message: str, reason: str, client: Any
) -> None:
    """AWS's wording of the kind is kept; only an identity policy's implicit deny says "allow"."""
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_membership", "AccessDeniedException", message, http_status_code=403
        )
        with pytest.raises(PermissionDenied) as info:
            service(client, Clock()).get(MEMBERSHIP_ID)
    assert info.value.reason == reason
    assert ROLE not in info.value.reason, "the role session's ARN is not repeated"


def test_an_explicit_deny_of_a_kind_not_named_points_at_every_policy(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_membership",
            "AccessDeniedException",
            denied("with an explicit deny"),
            http_status_code=403,
        )
        with pytest.raises(PermissionDenied) as info:
            service(client, Clock()).get(MEMBERSHIP_ID)
    assert info.value.reason == (
        f"{DENIED_BY} with an explicit deny: check the function's role, its permissions "
        "boundary and the service control policies that apply to account 123456789012 for a "
        "Deny of security-ir:GetMembership"
    )


def test_service_not_active(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_membership", "SecurityIncidentResponseNotActiveException", http_status_code=400
        )
        with pytest.raises(
            ServiceFailure, match="not active in account 123456789012 region us-east-1"
        ):
            service(client, Clock()).get(MEMBERSHIP_ID)


# --------------------------------------------------------------------------- Retry-After


def conflict_with(client: Any, stub: Stubber, params: dict[str, Any], header: str | None) -> None:
    """One ConflictException on UpdateMembership, optionally with a bare Retry-After header."""
    headers = {} if header is None else {"retry-after": header}
    stub.add_client_error(
        "update_membership",
        "ConflictException",
        http_status_code=409,
        expected_params=params,
        response_meta={"HTTPHeaders": headers},
    )


@pytest.mark.parametrize(
    ("header", "sleeps"),
    [("3", [3.0]), ("0", [0.4]), ("Wed, 21 Oct 2015 07:28:00 GMT", [0.4]), (None, [0.4])],
)
def test_a_retry_after_header_on_a_conflict_is_honoured(
    client: Any, header: str | None, sleeps: list[float]
) -> None:
    """A bare header counts like retryAfterSeconds; shorter, unparseable or absent: backoff."""
    clock = Clock()
    desired = add_ous(1)
    start = state_from_api(get_membership())
    params = update_params([ou(100)])
    with Stubber(client) as stub:
        conflict_with(client, stub, params, header)
        stub.add_response("update_membership", {}, params)
        applied = service(client, clock).apply(
            start, plan_changes(desired, start), lambda now: plan_changes(desired, now)
        )
        stub.assert_no_pending_responses()
    assert (applied.calls, clock.sleeps) == (1, sleeps)


def test_a_retry_after_that_cannot_fit_fails_at_once_with_the_applied_count(client: Any) -> None:
    desired = add_ous(12)
    start = state_from_api(get_membership())
    plan = plan_changes(desired, start)
    assert len(plan.requests) == 3
    policy = RetryPolicy()
    clock = Clock(remaining=policy.call_timeout + policy.answer_reserve + 20.0)
    with Stubber(client) as stub:
        stub.add_response("update_membership", {}, plan.requests[0].to_api())
        conflict_with(client, stub, plan.requests[1].to_api(), "60")
        with pytest.raises(OutOfTime) as info:
            service(client, clock).apply(start, plan, lambda now: plan_changes(desired, now))
        stub.assert_no_pending_responses()
    assert str(info.value) == (
        "UpdateMembership was refused (ConflictException) and the service asked to wait 60 s "
        "(Retry-After), more than the 20 s left to start a call. "
        "1 of 3 UpdateMembership calls were applied"
    )
    assert (info.value.applied, info.value.wait, clock.sleeps) == (1, 60.0, [])


def test_retry_after_on_a_5xx_is_honoured_before_the_re_read(client: Any) -> None:
    clock = Clock()
    desired = add_ous(1)
    start = state_from_api(get_membership())
    params = update_params([ou(100)])
    with Stubber(client) as stub:
        stub.add_client_error(
            "update_membership",
            "InternalServerException",
            http_status_code=500,
            expected_params=params,
            modeled_fields={"message": "busy", "retryAfterSeconds": 4},
        )
        stub.add_response("get_membership", get_membership(), {"membershipId": MEMBERSHIP_ID})
        stub.add_response("update_membership", {}, params)
        applied = service(client, clock).apply(
            start, plan_changes(desired, start), lambda now: plan_changes(desired, now)
        )
        stub.assert_no_pending_responses()
    assert (applied.calls, clock.sleeps) == (1, [4.0])


@settings(max_examples=40, deadline=None)
@given(
    wait=st.integers(min_value=0, max_value=120),
    left=st.floats(min_value=0.0, max_value=120.0, allow_nan=False),
)
def test_a_retry_after_is_slept_only_when_a_call_can_still_finish(wait: int, left: float) -> None:
    """Either the whole wait is slept and a call still fits after it, or nothing is slept."""
    policy = RetryPolicy()
    clock = Clock(remaining=policy.call_timeout + policy.answer_reserve + left)
    client = boto3.client(
        "security-ir", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1})
    )
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_membership",
            "ThrottlingException",
            http_status_code=429,
            modeled_fields={"message": "slow", "retryAfterSeconds": wait},
        )
        stub.add_response("get_membership", get_membership())
        if max(wait, 0.4) <= left:
            service(client, clock).get(MEMBERSHIP_ID)
            assert clock.sleeps == [max(float(wait), 0.4)]
            assert clock.left >= policy.call_timeout + policy.answer_reserve
            return
        reason = "asked to wait" if wait > left else "ran out of time"
        with pytest.raises(ServiceFailure, match=reason):
            service(client, clock).get(MEMBERSHIP_ID)
    assert clock.sleeps == []
