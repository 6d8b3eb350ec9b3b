"""``JournalStore`` on DynamoDB (moto): records, first sight and leases.

The resource's own tests keep the journal in memory (``memory_store``); here
the DynamoDB implementation is the point: the items it writes, its
conditional writes, and a lease write whose answer was lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from sir_membership.errors import JournalUnavailable, MembershipBusy
from sir_membership.journal import Record
from sir_membership.journal_store import JournalStore, busy, holder_name
from sir_membership.request_store import RequestStore

REGION, ACCOUNT = "us-east-1", "123456789012"
STACK = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/security-ir/5b6f1c20-3e4d-11ef-9a1b-0e7c3f2a9d41"
OTHER = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/security-ir-other/0d1e2f30-3e4d-11ef-9a1b-0e7c3f2a9d42"
MID = "m-abcdef0123"
ME = f"{STACK}#Membership#11111111-2222-3333-4444-555555555555"
THEM = f"{OTHER}#Coverage#99999999-8888-7777-6666-555555555555"


@contextlib.contextmanager
def _table() -> Iterator[Any]:
    """A DynamoDB client on moto with the table ``t`` (the idempotency table's key)."""
    with mock_aws():
        import boto3  # noqa: PLC0415

        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _item(client: Any, key: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = client.get_item(
        TableName="t", Key={"id": {"S": key}}, ConsistentRead=True
    ).get("Item")
    return item


def _server_error(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "InternalServerError", "Message": "boom"}}, operation)


def _timeout(_operation: str) -> ReadTimeoutError:
    return ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")


class LostAnswers:
    """The real client, except that a ``lease#`` PutItem's answer is lost.

    ``applied``: the put reaches the table before its answer is lost (else it
    is lost on the way there). ``lost``: how many lease puts lose their
    answer. ``reads_fail``: a ``lease#`` GetItem fails as well.
    """

    def __init__(
        self,
        client: Any,
        error: Any,
        *,
        applied: bool = True,
        lost: int = 1,
        reads_fail: bool = False,
    ) -> None:
        self.client, self.error = client, error
        self.applied, self.lost, self.reads_fail = applied, lost, reads_fail
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def put_item(self, **params: Any) -> Any:
        key = params["Item"]["id"]["S"]
        self.calls.append(("PutItem", key))
        if not key.startswith("lease#") or self.lost <= 0:
            return self.client.put_item(**params)
        self.lost -= 1
        if self.applied:
            self.client.put_item(**params)
        raise self.error("PutItem")

    def get_item(self, **params: Any) -> Any:
        key = params["Key"]["id"]["S"]
        self.calls.append(("GetItem", key))
        if key.startswith("lease#") and self.reads_fail:
            raise _server_error("GetItem")
        return self.client.get_item(**params)

    def delete_item(self, **params: Any) -> Any:
        self.calls.append(("DeleteItem", params["Key"]["id"]["S"]))
        return self.client.delete_item(**params)


# -- the declaration record ------------------------------------------------------------


def test_the_declaration_record_round_trips_and_never_expires() -> None:
    with _table() as client:
        store = JournalStore(client, "t", clock=lambda: 1000.0)
        assert store.read_record(STACK, "Membership") is None
        record = Record("d" * 32, frozenset({"ou-ab12-abcdef12", "ou-cd34-cdef1234"}))
        store.write_record(STACK, "Membership", record)
        assert store.read_record(STACK, "Membership") == record
        assert store.read_record(STACK, "Other") is None, "one record per resource"
        item = _item(client, f"declared#{STACK}#Membership")
        assert item is not None
        assert set(item) == {"id", "record"}, "no TTL attribute: the record outlives entries"
        replaced = Record("e" * 32)
        store.write_record(STACK, "Membership", replaced)
        assert store.read_record(STACK, "Membership") == replaced
        store.write_record(STACK, "Membership", None)
        assert store.read_record(STACK, "Membership") is None
        assert _item(client, f"declared#{STACK}#Membership") is None


def test_an_unreadable_record_names_the_table_and_the_permission() -> None:
    with _table() as client:
        store = JournalStore(client, "missing")
        with pytest.raises(JournalUnavailable, match=r"table missing \(ResourceNotFound"):
            store.read_record(STACK, "Membership")
        with pytest.raises(JournalUnavailable, match="dynamodb:GetItem/PutItem"):
            store.write_record(STACK, "Membership", Record("d" * 32))


# -- first sight -------------------------------------------------------------------------


def test_first_seen_keeps_the_first_time() -> None:
    with _table() as client:
        store = JournalStore(client, "t")
        assert store.first_seen(STACK, "r1", 1000.25) == 1000.25
        assert store.first_seen(STACK, "r1", 1030.0) == 1000.25, "a retry counts from the first"
        assert store.first_seen(STACK, "r1", 1090.0) == 1000.25
        assert store.first_seen(STACK, "r2", 1090.0) == 1090.0, "another request is its own"
        item = _item(client, f"request#{STACK}#r1")
        assert item is not None
        assert int(item["expiration"]["N"]) == 1000 + 2 * 3600, "expires from the first sight"


def test_a_work_step_counts_from_the_dispatchers_first_sight() -> None:
    """One item: the request's record (``RequestStore.register``) holds its first sight."""
    with _table() as client:
        event = {
            "RequestType": "Update",
            "StackId": STACK,
            "RequestId": "r1",
            "LogicalResourceId": "Membership",
            "ResponseURL": "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x",
        }
        RequestStore(client, "t", clock=lambda: 1000.25).register(event)
        store = JournalStore(client, "t")
        assert store.first_seen(STACK, "r1", 1240.0) == 1000.25


# -- the lease -----------------------------------------------------------------------------


def test_the_dynamodb_lease_is_exclusive_and_lapses() -> None:
    with _table() as client:
        now = [1000.0]
        store = JournalStore(client, "t", clock=lambda: now[0])
        store.acquire("m-x", "a", 1010.0, wait_until=1000.0)
        with pytest.raises(MembershipBusy, match="being changed by another request"):
            store.acquire("m-x", "b", 1020.0, wait_until=1000.1, sleep=lambda _s: None)
        store.acquire("m-x", "a", 1015.0, wait_until=1000.0)  # its holder may renew it
        store.release("m-x", "b")  # not b's to release
        now[0] = 1016.0  # a's deadline passed: the lease lapses
        store.acquire("m-x", "b", 1030.0, wait_until=1016.0)
        store.release("m-x", "b")
        store.acquire("m-x", "c", 1040.0, wait_until=1016.0)


@pytest.mark.parametrize("error", [_timeout, _server_error], ids=["read-timeout", "500"])
def test_a_lease_write_applied_but_unanswered_is_held(error: Any) -> None:
    with _table() as real:
        client = LostAnswers(real, error)
        store = JournalStore(client, "t", clock=lambda: 1000.0)
        store.acquire(MID, ME, 1300.0, wait_until=1000.0)  # no MembershipBusy, no wait
        lease = _item(real, f"lease#{MID}")
        assert lease is not None
        assert lease["holder"]["S"] == ME
        assert client.calls == [("PutItem", f"lease#{MID}"), ("GetItem", f"lease#{MID}")]
        store.release(MID, ME)
        # Nothing is left to lapse: another holder takes it at once, not at 1300.
        store.acquire(MID, THEM, 1400.0, wait_until=1000.0)
        assert store.holder_of(MID) == THEM


def test_a_lease_write_lost_before_it_was_applied_is_tried_again() -> None:
    with _table() as real:
        client = LostAnswers(real, _timeout, applied=False)
        store = JournalStore(client, "t", clock=lambda: 1000.0)
        slept: list[float] = []
        store.acquire(MID, ME, 1300.0, wait_until=1010.0, sleep=slept.append)
        assert store.holder_of(MID) == ME
        assert slept == [0.2], "the read-back showed no lease: one more try"
        puts = [c for c in client.calls if c[0] == "PutItem"]
        assert len(puts) == 2


def _denied(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, operation)


def test_a_refused_lease_write_nobody_holds_is_that_failure_not_a_busy_membership() -> None:
    """Found by the ministack IAM matrix: without dynamodb:PutItem every lease put fails and
    nobody holds the lease; that was reported as a busy membership (held by nobody), and
    under the engine waited out in Wait states until the ServiceTimeout."""
    with _table() as real:
        client = LostAnswers(real, _denied, applied=False, lost=10)
        store = JournalStore(client, "t", clock=lambda: 1000.0)
        slept: list[float] = []
        with pytest.raises(
            JournalUnavailable,
            match=r"could not take the lease in the change journal in table t "
            r"\(AccessDeniedException\)",
        ):
            store.acquire(MID, ME, 1300.0, wait_until=1000.5, sleep=slept.append)
        assert slept == [0.2, 0.4], "tried again within its wait, as a lost answer is"
        assert store.holder_of(MID) == ""


def test_an_unanswered_lease_write_against_a_live_lease_is_not_held() -> None:
    with _table() as real:
        JournalStore(real, "t", clock=lambda: 1000.0).acquire(MID, THEM, 1300.0, wait_until=0)
        client = LostAnswers(real, _server_error, applied=True, lost=10)
        store = JournalStore(client, "t", clock=lambda: 1000.0)
        with pytest.raises(MembershipBusy) as raised:
            store.acquire(MID, ME, 1300.0, wait_until=1000.5, sleep=lambda _s: None)
        assert "(stack security-ir-other resource Coverage)" in str(raised.value)
        assert store.holder_of(MID) == THEM, "the other holder's lease stands"


def test_a_lease_write_and_its_read_back_both_failing_give_the_lease_back() -> None:
    with _table() as real:
        client = LostAnswers(real, _timeout, reads_fail=True)
        store = JournalStore(client, "t", clock=lambda: 1000.0)
        with pytest.raises(
            JournalUnavailable, match=r"change journal in table t \(InternalServerError\)"
        ):
            store.acquire(MID, ME, 1300.0, wait_until=1000.0)
        assert client.calls == [
            ("PutItem", f"lease#{MID}"),
            ("GetItem", f"lease#{MID}"),
            ("DeleteItem", f"lease#{MID}"),
        ]
        assert _item(real, f"lease#{MID}") is None, "released, not left to lapse at 1300"


def test_giving_back_an_unknown_lease_never_takes_another_holders() -> None:
    """The release after a failed read-back is conditional on the holder."""
    with _table() as real:
        JournalStore(real, "t", clock=lambda: 1000.0).acquire(MID, THEM, 1300.0, wait_until=0)
        client = LostAnswers(real, _timeout, applied=False, reads_fail=True)
        store = JournalStore(client, "t", clock=lambda: 1000.0)
        with pytest.raises(JournalUnavailable):
            store.acquire(MID, ME, 1300.0, wait_until=1000.0)
        lease = _item(real, f"lease#{MID}")
        assert lease is not None
        assert lease["holder"]["S"] == THEM


# -- naming the holder ------------------------------------------------------------------------


def test_busy_names_the_holders_stack_and_resource_only() -> None:
    message = str(busy(MID, THEM))
    assert message == (
        f"Membership {MID} is being changed by another request (stack security-ir-other "
        "resource Coverage) for longer than this request's ServiceTimeout allows it to wait: "
        "retry once that operation has finished. No change was applied by this request"
    )


@pytest.mark.parametrize(
    ("holder", "named"),
    [
        (f"{OTHER}#99999999-8888-7777-6666-555555555555", "stack security-ir-other"),
        ("a-request-id", "another request"),
        ("", "another request"),
    ],
    ids=["older-version", "not-an-arn", "nobody"],
)
def test_a_holder_without_stack_and_resource_is_named_as_far_as_known(
    holder: str, named: str
) -> None:
    assert f"({named})" in str(busy(MID, holder))


_stack_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,30}", fullmatch=True)
_logical_ids = st.from_regex(r"[A-Za-z0-9]{1,40}", fullmatch=True)


@given(stack=_stack_names, logical=_logical_ids, request_id=st.uuids())
def test_holder_name_is_the_stack_name_and_logical_id_and_nothing_else(
    stack: str, logical: str, request_id: Any
) -> None:
    arn = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack}/{request_id}"
    holder = f"{arn}#{logical}#{request_id}"
    assert holder_name(holder) == f"stack {stack} resource {logical}"
