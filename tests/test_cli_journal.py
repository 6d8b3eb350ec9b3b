"""``sir-membership journal``: a resource's record and latest entry, masked.

The table is moto's, written by the function's own ``JournalStore``; the
stack name is resolved through a stubbed DescribeStacks.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from conftest import SECRET_EMAILS, SECRET_MEMBERSHIP_NAME, SECRET_NAMES, SECRET_TITLES
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from sir_membership import cli
from sir_membership.journal import Entry, Record, Touched
from sir_membership.journal_store import JournalStore
from sir_membership.membership import Responder
from sir_membership.preview.render_journal import JournalReport, journal_json, journal_text

REGION, ACCOUNT = "us-east-1", "123456789012"
STACK = "security-ir"
STACK_ID = (
    f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/5b6f1c20-3e4d-11ef-9a1b-0e7c3f2a9d41"
)
TABLE = "sir-provider-IdempotencyTable-1ABC"
MID = "m-abcdef0123"
A, B, C = "ou-ab12-abcdef12", "ou-ab12-bcdef123", "ou-cd34-cdef1234"
REQUEST_ID = "7f0c6c1e-1a2b-4c3d-9e8f-0123456789ab"
TEAM = tuple(
    Responder(n, t, e, frozenset({"Email"}))
    for n, t, e in zip(SECRET_NAMES, SECRET_TITLES, SECRET_EMAILS, strict=True)
)
RECORD = Record("d" * 32, frozenset({A, C}))
ENTRY = Entry(
    request_id=REQUEST_ID,
    request_type="Update",
    membership_id=MID,
    old="a" * 32,
    new="d" * 32,
    touched=Touched(
        name_before=SECRET_MEMBERSHIP_NAME,
        name_after="f" * 64,
        team_before=TEAM,
        team_after="e" * 64,
        features_before={"Triage": False},
        ous_added=frozenset({C}),
        ous_removed=frozenset({B}),
        tags_before={"CostCentre": "1234", "Owner": None},
        tags_after={"CostCentre": "5678", "Owner": "security"},
    ),
    planned=2,
    applied=2,
    phase="applied",
    ous_now=frozenset({A, C}),
    record_before=Record("a" * 32, frozenset({A, B})),
)
SECRETS = (*SECRET_NAMES, *SECRET_EMAILS, *SECRET_TITLES, SECRET_MEMBERSHIP_NAME)


def run(argv: list[str], clients: cli.Clients) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, clients=clients, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def argv(*extra: str, stack: str = STACK, logical: str = "Membership") -> list[str]:
    return [
        "journal",
        "--stack-name",
        stack,
        "--logical-id",
        logical,
        "--table-name",
        TABLE,
        "--region",
        REGION,
        *extra,
    ]


def refuse(_region: str | None) -> Any:
    raise AssertionError("this command must not create this client")


@contextlib.contextmanager
def provider(
    record: Record | None = RECORD, entry: Entry | None = ENTRY, *, describe: bool = True
) -> Iterator[cli.Clients]:
    """A table holding ``record`` and ``entry`` for STACK_ID/Membership, and a stubbed
    DescribeStacks that resolves STACK (once, when ``describe``)."""
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        store = JournalStore(dynamodb, TABLE)
        if record is not None:
            store.write_record(STACK_ID, "Membership", record)
        if entry is not None:
            store.write(STACK_ID, "Membership", entry)
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        with Stubber(cloudformation) as stub:
            if describe:
                stub.add_response(
                    "describe_stacks",
                    {
                        "Stacks": [
                            {
                                "StackName": STACK,
                                "StackId": STACK_ID,
                                "CreationTime": "2026-12-01T00:00:00Z",
                                "StackStatus": "UPDATE_COMPLETE",
                            }
                        ]
                    },
                    {"StackName": STACK},
                )
            yield cli.Clients(lambda _r: cloudformation, refuse, dynamodb=lambda _r: dynamodb)
            stub.assert_no_pending_responses()


# -- what is printed --------------------------------------------------------------------


def test_text_shows_the_record_and_the_entry_masked() -> None:
    with provider() as clients:
        code, out, err = run(argv(), clients)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"resource Membership of stack {STACK_ID}",
        f"table {TABLE}",
        "",
        f"declaration record: {'d' * 32}, OUs: {A}, {C}",
        "",
        "latest journal entry:",
        f"  request:      {REQUEST_ID} (Update)",
        f"  membership:   {MID}",
        "  phase:        applied (planned 2, applied 2, unknown 0)",
        f"  declarations: {'a' * 32} -> {'d' * 32}",
        "  old OUs removable: yes",
        f"  OUs after its last call: {A}, {C}",
        f"  record before: {'a' * 32}",
        "  touched:      MembershipName, IncidentResponseTeam, OptInFeatures, "
        "OrganizationalUnits, Tags",
        "    IncidentResponseTeam before: 3 responders",
        "    OptInFeatures Triage before: false",
        f"    OUs added:   {C}",
        f"    OUs removed: {B}",
        "    tag keys: CostCentre, Owner",
        "",
        "Names, emails, job titles and the membership name are masked "
        "(--show-sensitive shows them).",
    ]


def test_show_sensitive_shows_what_the_entry_holds() -> None:
    with provider() as clients:
        code, out, _ = run(argv("--show-sensitive"), clients)
    assert code == 0
    assert f"    MembershipName before: {SECRET_MEMBERSHIP_NAME}" in out.splitlines()
    assert f"      {SECRET_NAMES[1]} <{SECRET_EMAILS[1]}> {SECRET_TITLES[1]}" in out.splitlines()
    assert "      Owner: None -> security" in out.splitlines()
    assert "masked" not in out


def test_json_is_the_same_document_masked() -> None:
    with provider() as clients:
        code, out, _ = run(argv("--format", "json"), clients)
    assert code == 0
    document = json.loads(out)
    assert document["stackId"] == STACK_ID
    assert document["record"] == {"declaration": "d" * 32, "organizationalUnits": [A, C]}
    entry = document["entry"]
    assert {k: entry[k] for k in ("requestId", "requestType", "membershipId", "phase")} == {
        "requestId": REQUEST_ID,
        "requestType": "Update",
        "membershipId": MID,
        "phase": "applied",
    }
    assert (entry["planned"], entry["applied"], entry["unknown"]) == (2, 2, 0)
    assert entry["touched"] == {
        "properties": [
            "MembershipName",
            "IncidentResponseTeam",
            "OptInFeatures",
            "OrganizationalUnits",
            "Tags",
        ],
        "respondersBefore": 3,
        "featuresBefore": {"Triage": False},
        "coverEntireOrganizationBefore": None,
        "organizationalUnitsAdded": [C],
        "organizationalUnitsRemoved": [B],
        "reactivated": False,
        "tagKeys": ["CostCentre", "Owner"],
    }
    assert document["sensitiveShown"] is False
    assert not any(secret in out for secret in SECRETS)


def test_json_with_show_sensitive_holds_the_before_values() -> None:
    with provider() as clients:
        code, out, _ = run(argv("--format", "json", "--show-sensitive"), clients)
    assert code == 0
    touched = json.loads(out)["entry"]["touched"]
    assert touched["membershipNameBefore"] == SECRET_MEMBERSHIP_NAME
    assert touched["teamBefore"] == [r.to_api() for r in TEAM]
    assert touched["tagsAfter"] == {"CostCentre": "5678", "Owner": "security"}


@pytest.mark.parametrize("output", ["text", "json"])
def test_nothing_sensitive_is_printed_unless_asked(output: str) -> None:
    with provider() as clients:
        code, out, err = run(argv("--format", output), clients)
    assert code == 0
    assert not any(secret in out + err for secret in SECRETS)


#: Each generated secret carries a mark no label has, so any leak of one is seen.
MARK = "\N{SNOWMAN}"
_secret = st.text(max_size=20).map(lambda text: MARK + text)


@settings(max_examples=50)
@given(
    name=_secret,
    people=st.lists(st.tuples(_secret, _secret, _secret), min_size=1, max_size=4),
)
def test_no_name_email_or_title_is_ever_rendered_masked(
    name: str, people: list[tuple[str, str, str]]
) -> None:
    team = tuple(Responder(n, t, f"{e}@example.com") for n, t, e in people)
    entry = Entry(
        "r", "Update", MID, "a", "b", Touched(name_before=name, name_after="x", team_before=team)
    )
    document = journal_json(JournalReport(STACK_ID, "M", TABLE, None, entry), show=False)
    printed = json.dumps(document, ensure_ascii=False) + journal_text(document)
    assert MARK not in printed
    assert f"before: {len(team)} responders" in printed


# -- what is read ---------------------------------------------------------------------------


def without_cloudformation(clients: cli.Clients) -> cli.Clients:
    """No CloudFormation client may be made: a StackId needs no DescribeStacks."""
    return cli.Clients(refuse, refuse, dynamodb=clients.dynamodb)


def test_a_stack_id_is_used_as_is() -> None:
    with provider(describe=False) as clients:
        code, out, _ = run(argv(stack=STACK_ID), without_cloudformation(clients))
    assert code == 0
    assert out.startswith(f"resource Membership of stack {STACK_ID}\n")


def test_a_record_without_an_entry_is_shown() -> None:
    with provider(entry=None) as clients:
        code, out, _ = run(argv(), clients)
    assert code == 0
    assert "latest journal entry: none (never written, or expired after 14 days)" in out


def test_an_entry_without_a_record_is_shown() -> None:
    with provider(record=None) as clients:
        code, out, _ = run(argv(), clients)
    assert code == 0
    assert (
        "declaration record: none (not converged by this version, or removed by its Delete)" in out
    )


def test_nothing_recorded_is_an_error() -> None:
    with provider(record=None, entry=None) as clients:
        code, out, err = run(argv(logical="Other"), clients)
    assert (code, out) == (1, "")
    assert err == (
        f"sir-membership: error: nothing recorded for resource Other of stack {STACK_ID} in "
        f"table {TABLE}: check --logical-id, and that the stack's ServiceToken is the function "
        "of the provider stack that owns this table\n"
    )


def test_a_missing_table_is_named() -> None:
    with provider() as clients:
        code, out, err = run([*argv(), "--table-name", "nope"], clients)
    assert (code, out) == (1, "")
    assert err == (
        f"sir-membership: error: table nope in {REGION} does not exist: pass the provider "
        "stack's IdempotencyTableName output as --table-name, and its region as --region\n"
    )


def test_a_denied_read_names_the_permission() -> None:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    with Stubber(dynamodb) as stub:
        stub.add_client_error("get_item", "AccessDeniedException", "not authorized")
        code, out, err = run(
            argv(stack=STACK_ID), cli.Clients(refuse, refuse, dynamodb=lambda _r: dynamodb)
        )
    assert (code, out) == (1, "")
    assert err == (
        f"sir-membership: error: cannot read table {TABLE} in {REGION}: GetItem failed: "
        "AccessDeniedException: not authorized; the credentials running this command need "
        "dynamodb:GetItem on it\n"
    )


def test_a_stack_that_does_not_exist_is_an_error() -> None:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with Stubber(cloudformation) as stub:
        stub.add_client_error(
            "describe_stacks", "ValidationError", f"Stack with id {STACK} does not exist"
        )
        clients = cli.Clients(lambda _r: cloudformation, refuse, dynamodb=refuse)
        code, out, err = run(argv(), clients)
    assert (code, out) == (1, "")
    assert err == (
        f"sir-membership: error: stack {STACK} does not exist in {REGION}: check --stack-name "
        "and --region; for a deleted stack pass its StackId (ARN)\n"
    )


def test_the_journal_command_needs_its_arguments() -> None:
    code, out, err = run(
        ["journal", "--stack-name", STACK], cli.Clients(refuse, refuse, dynamodb=refuse)
    )
    assert (code, out) == (1, "")
    assert "the following arguments are required: --logical-id, --table-name" in err
