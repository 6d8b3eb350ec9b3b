"""``Fn::GetAtt`` attributes: GetMembership's identifiers, type and account count, nothing sensitive."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from conftest import (
    MEMBERSHIP_ID,
    SECRET_EMAILS,
    SECRET_MEMBERSHIP_NAME,
    SECRET_NAMES,
    get_membership,
    ou,
    props,
)
from hypothesis import given
from hypothesis import strategies as st
from memory_store import MemoryStore

from sir_membership.membership import state_from_api
from sir_membership.request import Request
from sir_membership.resource import Shell, handle
from sir_membership.service import MembershipService

ATTRIBUTES = {
    "MembershipId",
    "MembershipArn",
    "MembershipStatus",
    "Region",
    "AccountId",
    "CustomerType",
    "NumberOfAccountsCovered",
}


@given(
    customer_type=st.sampled_from(["Standalone", "Organization"]),
    count=st.one_of(st.none(), st.integers(min_value=0, max_value=10**6)),
)
def test_attributes_carry_the_type_and_count_as_strings(
    customer_type: str, count: int | None
) -> None:
    document = get_membership(customerType=customer_type)
    if count is not None:
        document["numberOfAccountsCovered"] = count
    attributes = state_from_api(document).attributes()
    assert set(attributes) == ATTRIBUTES
    assert attributes["CustomerType"] == customer_type
    assert attributes["NumberOfAccountsCovered"] == ("" if count is None else str(count))
    assert all(isinstance(v, str) for v in attributes.values())


def test_a_missing_type_or_a_non_number_count_is_empty() -> None:
    document = get_membership(numberOfAccountsCovered=True)
    del document["customerType"]
    attributes = state_from_api(document).attributes()
    assert (attributes["CustomerType"], attributes["NumberOfAccountsCovered"]) == ("", "")


@pytest.mark.e2e
def test_the_function_returns_them_from_the_emulator() -> None:
    emulator_module = pytest.importorskip("sirlocal.emulator")
    with emulator_module.SecurityIREmulator() as emulator:
        emulator.seed(
            {
                "membershipId": MEMBERSHIP_ID,
                "membershipName": SECRET_MEMBERSHIP_NAME,
                "customerType": "Standalone",
                "numberOfAccountsCovered": 17,
                "membershipAccountsConfigurations": {
                    "coverEntireOrganization": False,
                    "organizationalUnits": [ou(1), ou(2)],
                },
            }
        )
        client = boto3.client(
            "security-ir", region_name="us-east-1", endpoint_url=emulator.endpoint_url
        )
        service = MembershipService(
            client, lambda: 60.0, account_id="123456789012", region="us-east-1"
        )
        stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1"
        request = Request("Create", stack, "r1", "Membership", "", props())
        answer = handle(request, service, Shell(MemoryStore(), lambda: 60.0))
        assert [c.operation for c in emulator.calls()][:1] == ["GetMembership"]
    assert answer.status == "SUCCESS", answer.reason
    data: dict[str, Any] = dict(answer.data)
    assert set(data) == ATTRIBUTES
    assert (data["CustomerType"], data["NumberOfAccountsCovered"]) == ("Standalone", "17")
    leaked = [v for v in (*SECRET_NAMES, *SECRET_EMAILS, SECRET_MEMBERSHIP_NAME) if v in str(data)]
    assert leaked == []


def test_the_emulators_memberships_have_both_fields() -> None:
    emulator_module = pytest.importorskip("sirlocal.emulator")
    seeded = emulator_module.new_membership({"membershipId": MEMBERSHIP_ID})
    assert (seeded["customerType"], seeded["numberOfAccountsCovered"]) == ("Organization", 1)
