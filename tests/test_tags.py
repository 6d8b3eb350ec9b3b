"""``Tags``: parsing, the pure planner, and the function against the emulator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from conftest import MEMBERSHIP_ID, props
from hypothesis import given
from hypothesis import strategies as st
from memory_store import MemoryStore

from sir_membership.errors import InvalidProperties
from sir_membership.properties import parse_properties
from sir_membership.request import Request
from sir_membership.resource import Shell, handle
from sir_membership.service import MembershipService
from sir_membership.service_model import rules
from sir_membership.tags import apply_tag_call, declarations, managed, plan_tags

ARN = f"arn:aws:security-ir:us-east-1:123456789012:membership/{MEMBERSHIP_ID}"
STACK = "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1"


def tags(**pairs: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


# -- parsing -------------------------------------------------------------------------------


def test_tags_parse_to_sorted_pairs_and_absent_means_not_managed() -> None:
    declared = parse_properties(props(Tags=tags(team="sec", cost="42")))
    assert declared.tags == (("cost", "42"), ("team", "sec"))
    assert parse_properties(props()).tags is None
    assert parse_properties(props(Tags=[])).tags == ()


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (tags(**{"aws:cloudformation": "x"}), "Tags[0].Key aws:cloudformation starts with aws:"),
        (tags(**{"AWS:Owner": "x"}), "Tags[0].Key AWS:Owner starts with aws:"),
        (
            [{"Key": "", "Value": "v"}],
            "Tags[0].Key is invalid (0 characters, not shown): fewer than 1 character; "
            "declare 1 to 128 characters",
        ),
        (
            [{"Key": "k" * 129, "Value": "v"}],
            "Tags[0].Key is invalid (129 characters, not shown): more than 128 characters",
        ),
        (
            [{"Key": "k", "Value": "v" * 257}],
            "Tags[0].Value is invalid (257 characters, not shown): more than 256 characters",
        ),
        ([{"Key": "k", "Value": 1}], "Tags[0].Value must be a string"),
        ([{"Key": "k"}], "Tags[0].Value is required"),
        ([{"Key": "k", "Value": "v", "Propagate": "true"}], "unknown property Tags[0].Propagate"),
        (
            [{"Key": "k", "Value": "a"}, {"Key": "k", "Value": "b"}],
            "Tags[1].Key k is declared twice",
        ),
        ("k=v", "Tags must be a list"),
        (["k"], "Tags[0] must be an object with Key and Value"),
    ],
)
def test_bad_tags_fail_with_the_property_named(declared: Any, message: str) -> None:
    with pytest.raises(InvalidProperties, match=re.escape(message)):
        parse_properties(props(Tags=declared))


def test_the_limits_come_from_botocores_model() -> None:
    r = rules()
    assert (r.tag_key.min_length, r.tag_key.max_length) == (1, 128)
    assert (r.tag_value.min_length, r.tag_value.max_length) == (0, 256)
    assert r.tags_size.max_items == 200
    too_many = [{"Key": f"k{i}", "Value": "v"} for i in range(201)]
    with pytest.raises(InvalidProperties, match="Tags must have at most 200 entries, not 201"):
        parse_properties(props(Tags=too_many))


def test_tag_values_are_not_echoed_in_errors() -> None:
    with pytest.raises(InvalidProperties) as failed:
        parse_properties(props(Tags=[{"Key": "k", "Value": "secret-value" * 30}]))
    assert "secret-value" not in failed.value.reason


# -- the planner ---------------------------------------------------------------------------

keys = st.text(alphabet="abcdef", min_size=1, max_size=3)
tag_maps = st.dictionaries(keys, st.text(alphabet="xyz", max_size=2), max_size=6)


def run(plan_calls: Any, actual: dict[str, str]) -> dict[str, str]:
    for call in plan_calls:
        actual = apply_tag_call(actual, call)
    return actual


@given(declared=tag_maps, previous=st.one_of(st.none(), tag_maps), actual=tag_maps)
def test_a_plan_sets_the_declaration_and_removes_only_dropped_keys(
    declared: dict[str, str], previous: dict[str, str] | None, actual: dict[str, str]
) -> None:
    plan = plan_tags(declared, previous, actual, ARN)
    after = run(plan.calls, actual)
    assert all(after[k] == v for k, v in declared.items())
    dropped = set(previous or {}) - set(declared)
    assert not (dropped & set(after))
    # Everything else, tags set outside the stack included, is untouched.
    for key in set(actual) - set(declared) - dropped:
        assert after[key] == actual[key]
    # The before-values a journal records are exactly the changed keys' old values.
    changed = {k for k in set(actual) | set(after) if actual.get(k) != after.get(k)}
    assert plan.before == {k: actual.get(k) for k in changed}
    assert plan_tags(declared, previous, after, ARN).empty  # converged
    assert len(plan.calls) <= 2
    assert all(c.resource_arn == ARN for c in plan.calls)


@given(old=tag_maps, new=tag_maps, outside=tag_maps)
def test_a_rollback_restores_the_old_declaration(
    old: dict[str, str], new: dict[str, str], outside: dict[str, str]
) -> None:
    """Update old -> new, then CloudFormation's rollback Update new -> old."""
    start = {k: v for k, v in outside.items() if k not in old.keys() | new.keys()} | old
    updated = run(plan_tags(new, old, start, ARN).calls, start)
    rolled_back = run(plan_tags(old, new, updated, ARN).calls, updated)
    assert rolled_back == start


def test_not_declared_now_or_before_means_no_call_at_all() -> None:
    assert not managed(None, None)
    assert not managed(None, {})
    assert managed({}, None)
    assert managed(None, {"a": "1"})  # Tags removed from the template: its keys go


def test_calls_untag_first_then_tag_in_boto3_shape() -> None:
    plan = plan_tags(
        {"a": "2", "c": "3"}, {"a": "1", "b": "1"}, {"a": "1", "b": "1", "x": "9"}, ARN
    )
    assert [c.to_api() for c in plan.calls] == [
        {"resourceArn": ARN, "tagKeys": ["b"]},
        {"resourceArn": ARN, "tags": {"a": "2", "c": "3"}},
    ]
    assert [c.operation for c in plan.calls] == ["UntagResource", "TagResource"]
    assert plan.before == {"a": "1", "b": "1", "c": None}
    assert plan.outside == ("x",)


def test_declarations_follow_the_request() -> None:
    old = props(Tags=tags(a="1"))
    new = props(Tags=tags(b="2"))
    update = Request("Update", STACK, "r", "M", MEMBERSHIP_ID, new, old)
    assert declarations(update) == ({"b": "2"}, {"a": "1"})
    replaced = Request("Update", STACK, "r", "M", "m-0123456789ab", new, old)
    assert declarations(replaced) == ({"b": "2"}, None)
    invalid_old = Request("Update", STACK, "r", "M", MEMBERSHIP_ID, new, {"MembershipId": "x"})
    assert declarations(invalid_old) == ({"b": "2"}, None)
    assert declarations(Request("Delete", STACK, "r", "M", MEMBERSHIP_ID, new)) == (None, None)
    assert declarations(Request("Create", STACK, "r", "M", "", props())) == (None, None)


# -- the function against the emulator ------------------------------------------------------


@pytest.fixture
def emulator() -> Iterator[Any]:
    module = pytest.importorskip("sirlocal.emulator")
    with module.SecurityIREmulator() as running:
        running.seed(
            {
                "membershipId": MEMBERSHIP_ID,
                "tags": {"owner": "set-outside", "env": "old"},
                "membershipAccountsConfigurations": {
                    "coverEntireOrganization": False,
                    "organizationalUnits": ["ou-ab12-00000001", "ou-ab12-00000002"],
                },
            }
        )
        yield running


def send(emulator: Any, request: Request) -> Any:
    client = boto3.client(
        "security-ir", region_name="us-east-1", endpoint_url=emulator.endpoint_url
    )
    service = MembershipService(client, lambda: 60.0, account_id="123456789012", region="us-east-1")
    store = emulator.__dict__.setdefault("_test_journal", MemoryStore())
    return handle(request, service, Shell(store, lambda: 60.0))


def operations(emulator: Any) -> list[str]:
    return [c.operation for c in emulator.calls()]


def test_create_update_and_rollback_against_the_emulator(emulator: Any) -> None:
    declared = props(Tags=tags(env="prod", team="sec"))
    created = send(emulator, Request("Create", STACK, "r1", "M", "", declared))
    assert created.status == "SUCCESS", created.reason
    assert emulator.tags(MEMBERSHIP_ID) == {"owner": "set-outside", "env": "prod", "team": "sec"}
    assert operations(emulator)[:2] == ["GetMembership", "ListTagsForResource"]
    assert operations(emulator)[-1] == "TagResource"

    emulator.reset_calls()
    changed = props(Tags=tags(env="staging"))
    updated = send(emulator, Request("Update", STACK, "r2", "M", MEMBERSHIP_ID, changed, declared))
    assert updated.status == "SUCCESS", updated.reason
    assert emulator.tags(MEMBERSHIP_ID) == {"owner": "set-outside", "env": "staging"}
    assert operations(emulator) == [
        "GetMembership",
        "ListTagsForResource",
        "UntagResource",
        "TagResource",
    ]

    emulator.reset_calls()
    rollback = Request("Update", STACK, "r3", "M", MEMBERSHIP_ID, declared, changed)
    assert send(emulator, rollback).status == "SUCCESS"
    assert emulator.tags(MEMBERSHIP_ID) == {"owner": "set-outside", "env": "prod", "team": "sec"}


def test_a_rollback_restores_a_key_set_outside_that_the_update_took_over(emulator: Any) -> None:
    """The journal keeps the value before, not the old declaration's (which had no such key)."""
    declared = props(Tags=tags(team="sec"))
    assert send(emulator, Request("Create", STACK, "r1", "M", "", declared)).status == "SUCCESS"
    taken = props(Tags=tags(team="sec", owner="the-stack"))
    updated = send(emulator, Request("Update", STACK, "r2", "M", MEMBERSHIP_ID, taken, declared))
    assert updated.status == "SUCCESS", updated.reason
    assert emulator.tags(MEMBERSHIP_ID)["owner"] == "the-stack"
    # A later resource fails: CloudFormation rolls this Update back.
    rollback = Request("Update", STACK, "r3", "M", MEMBERSHIP_ID, declared, taken)
    assert send(emulator, rollback).status == "SUCCESS"
    assert emulator.tags(MEMBERSHIP_ID) == {"owner": "set-outside", "env": "old", "team": "sec"}


def test_removing_tags_from_the_template_removes_only_its_keys(emulator: Any) -> None:
    declared = props(Tags=tags(team="sec"))
    assert send(emulator, Request("Create", STACK, "r1", "M", "", declared)).status == "SUCCESS"
    dropped = send(emulator, Request("Update", STACK, "r2", "M", MEMBERSHIP_ID, props(), declared))
    assert dropped.status == "SUCCESS", dropped.reason
    assert emulator.tags(MEMBERSHIP_ID) == {"owner": "set-outside", "env": "old"}


def test_without_tags_no_tag_call_is_made(emulator: Any) -> None:
    assert send(emulator, Request("Create", STACK, "r1", "M", "", props())).status == "SUCCESS"
    assert not [op for op in operations(emulator) if "Tag" in op]


def test_an_aws_prefixed_key_fails_before_any_call(emulator: Any) -> None:
    declared = props(Tags=tags(**{"aws:owner": "x"}), MembershipName="renamed-membership")
    answer = send(emulator, Request("Create", STACK, "r1", "M", "", declared))
    assert answer.status == "FAILED"
    assert "Tags[0].Key aws:owner starts with aws:" in answer.reason
    assert operations(emulator) == []


def test_the_emulator_validates_tag_calls_against_the_model(emulator: Any) -> None:
    client = boto3.client(
        "security-ir", region_name="us-east-1", endpoint_url=emulator.endpoint_url
    )
    with pytest.raises(client.exceptions.ValidationException, match="reserved"):
        client.tag_resource(resourceArn=ARN, tags={"aws:x": "y"})
    unchecked = boto3.client(
        "security-ir",
        region_name="us-east-1",
        endpoint_url=emulator.endpoint_url,
        config=Config(parameter_validation=False),
    )
    with pytest.raises(client.exceptions.ValidationException, match="tags"):
        unchecked.tag_resource(resourceArn=ARN, tags={"k" * 129: "v"})
    other = ARN.replace(MEMBERSHIP_ID, "m-0000000000")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.list_tags_for_resource(resourceArn=other)
    client.untag_resource(resourceArn=ARN, tagKeys=["owner", "env", "absent"])
    assert client.list_tags_for_resource(resourceArn=ARN)["tags"] == {}
