"""``RequestStore`` on DynamoDB (moto) and its in-memory twin: records, fences and claims.

The in-memory twin (``memory_store.MemoryRequestStore``, used by the simulated-clock
tests) runs every test here too, so the two keep the same semantics.

What the engine's promises rest on: a duplicate delivery registers nothing
new; a new request of a resource takes its fence from the older one (and
says which, so its execution can be stopped); a closed fence keeps a late
Work call out; an answer is claimed once, and everyone after gets that one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from memory_store import MemoryRequestStore
from moto import mock_aws

from sir_membership.errors import InvalidProperties
from sir_membership.journal_store import JournalStore
from sir_membership.request_record import RequestKeys, answer_from_json, answer_to_json
from sir_membership.request_store import RequestStore
from sir_membership.response import Answer

REGION, ACCOUNT = "us-east-1", "123456789012"
STACK = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/security-ir/5b6f1c20-3e4d-11ef-9a1b-0e7c3f2a9d41"
URL = "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?sig=1"
RETRY_URL = "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?sig=2"


def _event(request_id: str, url: str = URL, logical: str = "Membership") -> dict[str, Any]:
    return {
        "RequestType": "Update",
        "StackId": STACK,
        "RequestId": request_id,
        "LogicalResourceId": logical,
        "PhysicalResourceId": "m-abcdef0123",
        "ResponseURL": url,
        "ResourceProperties": {"MembershipId": "m-abcdef0123"},
    }


@contextlib.contextmanager
def _dynamodb(clock: list[float] | None = None) -> Iterator[RequestStore]:
    with mock_aws():
        import boto3  # noqa: PLC0415

        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        now = clock or [1_000.0]
        yield RequestStore(client, "t", clock=lambda: now[0])


@contextlib.contextmanager
def _memory(clock: list[float] | None = None) -> Iterator[MemoryRequestStore]:
    now = clock or [1_000.0]
    yield MemoryRequestStore(clock=lambda: now[0], table_name="t")


Store = Callable[..., contextlib.AbstractContextManager[Any]]


@pytest.fixture(params=["dynamodb", "memory"])
def open_store(request: pytest.FixtureRequest) -> Store:
    """The DynamoDB store on moto, and the tests' in-memory twin: the same promises."""
    return _dynamodb if request.param == "dynamodb" else _memory


def test_the_first_delivery_records_the_event_and_takes_the_fence(open_store: Store) -> None:
    with open_store() as store:
        registered = store.register(_event("r1"))
        assert registered.new
        assert registered.superseded is None
        assert registered.keys == RequestKeys(STACK, "Membership", "r1", 1)
        assert registered.first_seen == 1_000.0
        assert store.holds(registered.keys)
        record = store.read(registered.keys)
        assert record is not None
        assert record.event["ResponseURL"] == URL  # kept in the table, never in the execution
        assert (record.outcome, record.answer, record.work_step) == (None, None, 0)


def test_a_duplicate_delivery_registers_nothing_new(open_store: Store) -> None:
    clock = [1_000.0]
    with open_store(clock) as store:
        first = store.register(_event("r1"))
        clock[0] = 1_050.0
        again = store.register(_event("r1"))
        assert not again.new
        assert again.keys == first.keys
        assert again.first_seen == 1_000.0  # the ServiceTimeout counts from the first delivery
        assert store.holds(first.keys)


def test_a_newer_request_of_the_resource_takes_the_fence_and_names_the_older(
    open_store: Store,
) -> None:
    with open_store() as store:
        forward = store.register(_event("forward")).keys
        rollback = store.register(_event("rollback"))
        assert rollback.superseded == forward
        assert store.holds(rollback.keys)
        assert not store.holds(forward)
        # A late duplicate of the superseded request does not take the fence back.
        assert not store.register(_event("forward")).new
        assert not store.holds(forward)
        assert store.holds(rollback.keys)


def test_other_resources_have_fences_of_their_own(open_store: Store) -> None:
    with open_store() as store:
        one = store.register(_event("r1")).keys
        other = store.register(_event("r2", logical="Coverage"))
        assert other.superseded is None
        assert store.holds(one)
        assert store.holds(other.keys)


def test_a_closed_fence_keeps_the_request_out_and_is_taken_by_the_next(open_store: Store) -> None:
    with open_store() as store:
        keys = store.register(_event("r1")).keys
        store.close_fence(keys)
        assert not store.holds(keys)
        assert store.closed_by(keys)
        following = store.register(_event("r2"))
        assert following.superseded is None  # nobody to stop: the fence was closed
        assert store.holds(following.keys)
        assert not store.closed_by(keys)


def test_a_step_is_begun_once_and_its_retry_knows(open_store: Store) -> None:
    with open_store() as store:
        keys = store.register(_event("r1")).keys
        assert store.begin_step(keys, 1) is False
        assert store.begin_step(keys, 1) is True  # Step Functions retried a step that died
        assert store.begin_step(keys, 2) is False
        record = store.read(keys)
        assert record is not None
        assert record.work_step == 2


def test_the_first_claim_decides_and_later_ones_get_it(open_store: Store) -> None:
    with open_store() as store:
        keys = store.register(_event("r1")).keys
        success = Answer.success("m-abcdef0123", {"MembershipId": "m-abcdef0123"})
        assert store.claim(keys, success) == success
        late = Answer.failed("m-abcdef0123", "The change's execution ended TIMED_OUT")
        assert store.claim(keys, late) == success
        again = store.register(_event("r1"))
        assert again.answer == success  # a duplicate after the answer sends it again


def test_a_deployment_retry_with_a_new_url_after_the_answer_is_a_new_attempt(
    open_store: Store,
) -> None:
    with open_store() as store:
        first = store.register(_event("r1")).keys
        store.record_outcome(first, Answer.failed("m-abcdef0123", "refused"))
        store.claim(first, Answer.failed("m-abcdef0123", "refused"))
        retry = store.register(_event("r1", RETRY_URL))
        assert retry.new
        assert retry.keys == RequestKeys(STACK, "Membership", "r1", 2)
        assert retry.keys.execution_name == f"{first.execution_name}-2"
        record = store.read(retry.keys)
        assert record is not None
        assert (record.answer, record.outcome, record.event["ResponseURL"]) == (
            None,
            None,
            RETRY_URL,
        )
        assert store.holds(retry.keys)
        assert not store.holds(first)
        # The first attempt can no longer claim or record anything.
        assert store.claim(retry.keys, Answer.success("m-abcdef0123", {})).status == "SUCCESS"


def test_a_second_url_while_unanswered_keeps_the_first(open_store: Store) -> None:
    with open_store() as store:
        keys = store.register(_event("r1")).keys
        again = store.register(_event("r1", RETRY_URL))
        assert not again.new
        assert again.keys == keys
        record = store.read(keys)
        assert record is not None
        assert record.event["ResponseURL"] == URL


def test_execution_names_fit_step_functions() -> None:
    keys = RequestKeys(STACK, "Membership", "r1")
    assert len(keys.execution_name) == 64
    assert len(RequestKeys(STACK, "Membership", "r1", 9999).execution_name) <= 80
    assert keys.execution_name != RequestKeys(STACK, "Coverage", "r1").execution_name
    assert RequestKeys.from_input(keys.to_input()) == keys


@settings(max_examples=50)
@given(
    status=st.sampled_from(["SUCCESS", "FAILED"]),
    physical=st.text(min_size=1, max_size=40),
    reason=st.text(max_size=200),
    data=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=4),
)
def test_answers_round_trip_through_the_table(
    status: str, physical: str, reason: str, data: dict[str, str]
) -> None:
    answer = (
        Answer.success(physical, data) if status == "SUCCESS" else Answer.failed(physical, reason)
    )
    assert answer_from_json(answer_to_json(answer)) == answer


def _first_seen_by_the_previous_release(store: Any, request_id: str, at: float) -> None:
    """What the previous release left: a first sight (``firstSeen``) and no event."""
    if isinstance(store, MemoryRequestStore):
        store.seen[(STACK, request_id)] = at
    else:
        JournalStore(store.client, store.table_name).first_seen(STACK, request_id, at)


def test_a_request_never_takes_the_fence_from_one_first_seen_after_it(open_store: Store) -> None:
    """Upgrade in flight: the previous release's request, continued after its rollback began."""
    with open_store() as store:
        _first_seen_by_the_previous_release(store, "forward", 900.0)
        rollback = store.register(_event("rollback")).keys  # first seen at 1,000
        late = store.register(_event("forward"))
        assert late.stale
        assert not late.new
        assert late.superseded is None
        assert store.holds(rollback)
        assert not store.holds(late.keys)
        assert store.register(_event("forward")).stale  # and stays out on every delivery


@pytest.mark.parametrize("latest", [True, False])
def test_a_request_the_previous_release_began_goes_on_only_while_it_is_the_latest(
    open_store: Store, latest: bool
) -> None:
    """No fence yet (the newer request was the previous release's too): the journal decides."""
    with open_store() as store:
        _first_seen_by_the_previous_release(store, "old", 900.0)
        asked: list[RequestKeys] = []

        def admit(keys: RequestKeys) -> bool:
            asked.append(keys)
            return latest

        registered = store.register(_event("old"), admit_legacy=admit)
        assert asked == [RequestKeys(STACK, "Membership", "old", 1)]
        assert registered.new is latest
        assert registered.stale is not latest
        assert store.holds(registered.keys) is latest
        assert registered.first_seen == 900.0  # its ServiceTimeout still counts from then
        # A request of this release is never asked about.
        assert store.register(_event("new"), admit_legacy=admit).new
        assert len(asked) == 1


def test_a_deployment_retry_after_a_newer_request_takes_the_fence(open_store: Store) -> None:
    """The retry is a new attempt, seen when it arrives, not when its RequestId first was."""
    clock = [1_000.0]
    with open_store(clock) as store:
        first = store.register(_event("r1")).keys
        store.claim(first, Answer.failed("m-abcdef0123", "refused"))
        clock[0] = 1_010.0
        rollback = store.register(_event("rollback")).keys
        store.claim(rollback, Answer.success("m-abcdef0123", {}))
        store.close_fence(rollback)
        clock[0] = 1_020.0
        retry = store.register(_event("r1", RETRY_URL))
        assert retry.new
        assert retry.keys.attempt == 2
        assert store.holds(retry.keys)


def test_an_event_too_large_for_its_record_is_refused_before_any_write(open_store: Store) -> None:
    """A DynamoDB item holds 400 KB: thousands of OUs, old and new, must say so, not 'table down'."""
    big = _event("r1")
    ous = [f"ou-ab12-{n:08x}" for n in range(12_000)]
    big["ResourceProperties"] = {"MembershipId": "m-abcdef0123", "OrganizationalUnits": ous}
    big["OldResourceProperties"] = {"MembershipId": "m-abcdef0123", "OrganizationalUnits": ous}
    with open_store() as store:
        with pytest.raises(InvalidProperties) as refused:
            store.register(big)
        assert refused.value.reason.startswith("Invalid properties: the request is 4")
        assert "declare fewer OrganizationalUnits" in refused.value.reason
        assert refused.value.reason.endswith("No change was applied")
        assert store.read(RequestKeys(STACK, "Membership", "r1")) is None
        fits = _event("r2")
        fits["ResourceProperties"] = {"MembershipId": "m-abcdef0123", "OrganizationalUnits": ous}
        assert store.register(fits).new  # 12,000 OUs on one side fit
