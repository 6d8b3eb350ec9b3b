"""AccessDenied messages in AWS's standard wording, read into the kind of deny (pure).

The reasons built from them, through the service, are in
test_service.py::test_access_denied_names_the_kind_of_deny_and_what_to_check.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sir_membership import denial
from sir_membership.denial import Denial

ACTION = "security-ir:UpdateMembership"
PREFIX = (
    "User: arn:aws:sts::123456789012:assumed-role/r/s is not authorized to perform: "
    f"{ACTION} on resource: arn:aws:security-ir:us-east-1:123456789012:membership/m-abcdef0123 "
)
ALLOW = "allow it in the function's role"


def check(message: str) -> str:
    return denial.read(PREFIX + message).check(
        ACTION, "123456789012", "membership m-abcdef0123", ALLOW
    )


@pytest.mark.parametrize("kind", denial.KINDS)
def test_every_kind_is_read_explicit_and_implicit(kind: str) -> None:
    article = "an" if kind.startswith("identity") else "a"
    assert denial.read(f"{PREFIX}with an explicit deny in {article} {kind}") == Denial(
        kind, explicit=True
    )
    assert denial.read(f"{PREFIX}because no {kind} allows the {ACTION} action") == Denial(kind)


@pytest.mark.parametrize(
    ("message", "fix"),
    [
        (
            "with an explicit deny in a resource control policy",
            "check the resource control policies of AWS Organizations that apply to account "
            f"123456789012 (on the account, its OUs and the root) for a Deny of {ACTION}",
        ),
        (
            "with an explicit deny in a session policy",
            f"check the session policy of the function's role session for a Deny of {ACTION}",
        ),
        (
            f"because no VPC endpoint policy allows the {ACTION} action",
            "check the policy of the VPC endpoint the function reaches security-ir through for "
            f"one that allows {ACTION}",
        ),
        (
            f"because no resource-based policy allows the {ACTION} action",
            f"check the resource-based policy of membership m-abcdef0123 for one that allows {ACTION}",
        ),
    ],
)
def test_the_other_kinds_say_what_to_check(message: str, fix: str) -> None:
    assert check(message) == fix


def test_only_a_missing_identity_allow_prescribes_the_allow() -> None:
    prescribing = [
        message
        for kind in denial.KINDS
        for message in (
            f"with an explicit deny in {'an' if kind.startswith('identity') else 'a'} {kind}",
            f"because no {kind} allows the {ACTION} action",
        )
        if check(message) == ALLOW
    ]
    assert prescribing == [f"because no identity-based policy allows the {ACTION} action"]
    assert check("") == ALLOW, "a message that names no kind: the usual missing allow"


@given(st.text(max_size=300))
def test_any_message_reads_as_a_known_kind_or_none(message: str) -> None:
    read = denial.read(message)
    assert read.kind in ("", *denial.KINDS)
    said = read.said(ACTION)
    assert said in ("", " with an explicit deny") or any(k in said for k in denial.KINDS)
