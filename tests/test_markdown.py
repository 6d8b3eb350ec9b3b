"""``--format markdown``: the same plan and drift, as a pull-request comment."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st
from test_cli import MID, REGION, STACK, clients_for, live, stub_stack

from sir_membership import cli
from sir_membership.preview import load_change_set, offline_lookup, preview, select
from sir_membership.preview.labels import call_line
from sir_membership.preview.render_markdown import (
    COMMENT_LIMIT,
    PLAN_MARKER,
    cell,
    code,
    fit,
    plan_markdown,
)

FIXTURES = Path(__file__).parent / "fixtures"
SENSITIVE_KEYS = ("Name", "Email", "JobTitle", "MembershipName")


def run(argv: list[str], clients: cli.Clients | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, clients=clients, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def plan_argv(name: str, *extra: str) -> list[str]:
    return [
        "plan",
        "--change-set-file",
        str(FIXTURES / "changesets" / f"{name}.json"),
        "--state-file",
        str(FIXTURES / "states" / f"{name}.json"),
        *extra,
    ]


def sensitive_values(document: Any) -> set[str]:
    """Every name, email, job title and membership name declared in a change set."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, item in node.items():
                if key in SENSITIVE_KEYS and isinstance(item, str):
                    found.add(item)
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for change in document["Changes"]:
        for key in ("BeforeContext", "AfterContext"):
            context = change["ResourceChange"].get(key)
            if context:
                walk(json.loads(context).get("Properties"))
    return found


@pytest.mark.parametrize("name", ["modify", "replacement", "add", "remove", "invalid"])
def test_markdown_has_the_summary_and_exactly_the_json_calls(name: str) -> None:
    code_md, markdown, err_md = run(plan_argv(name, "--format", "markdown"))
    code_json, document, err_json = run(plan_argv(name, "--json"))
    assert (code_md, err_md) == (code_json, err_json)
    plan = json.loads(document)
    assert markdown.startswith(PLAN_MARKER + "\n")
    assert "| Logical ID | Action | Membership | Result |" in markdown
    for resource in plan["resources"]:
        assert f"| {resource['logicalId']} | {resource['action']}" in markdown
    calls = [line for line in markdown.splitlines() if line[:1].isdigit() and ". `" in line]
    expected = [
        f"{i}. {code(call_line(r, False))}"
        for step in (s for r in plan["resources"] for s in r["steps"])
        for i, r in enumerate(step["requests"], 1)
    ]
    assert calls == expected
    verdict = {0: "no change", 1: "the function would fail", 2: "changes planned"}[code_md]
    assert f"**Result: {verdict}" in markdown


def test_the_modify_summary_row() -> None:
    code_md, markdown, _ = run(plan_argv("modify", "--format", "markdown"))
    assert code_md == cli.EXIT_CHANGES
    assert "| Membership | Modify | m-abcdef0123 | 1 UpdateMembership call |" in markdown
    assert "OUs to add: `ou-cd34-def12345`, `ou-ef56-ef123456`" in markdown


@pytest.mark.parametrize("name", ["modify", "add", "replacement"])
def test_sensitive_values_are_masked_unless_asked_for(name: str) -> None:
    secrets = sensitive_values(json.loads((FIXTURES / "changesets" / f"{name}.json").read_text()))
    assert secrets  # the fixture has names and emails to leak
    _, masked, _ = run(plan_argv(name, "--format", "markdown"))
    assert [s for s in secrets if s in masked] == []
    assert "masked (--show-sensitive shows them)" in masked
    _, shown, _ = run(plan_argv(name, "--format", "markdown", "--show-sensitive"))
    assert [s for s in secrets if s in shown]
    assert "masked (--show-sensitive" not in shown


def big_change_set(copies: int) -> Any:
    document = json.loads((FIXTURES / "changesets" / "modify.json").read_text())
    (change,) = [
        c
        for c in document["Changes"]
        if c["ResourceChange"]["ResourceType"] == "Custom::SecurityIRMembership"
    ]
    document["Changes"] = []
    for i in range(copies):
        one = copy.deepcopy(change)
        one["ResourceChange"]["LogicalResourceId"] = f"Membership{i:04d}"
        document["Changes"].append(one)
    return document


def test_a_plan_too_big_for_a_comment_is_truncated_with_a_note() -> None:
    change_set = load_change_set(big_change_set(300))
    selection = select(change_set)
    result = preview(change_set, selection, offline_lookup(selection, {}))
    markdown = plan_markdown(result, "assumed", False)
    assert len(markdown) <= COMMENT_LIMIT
    assert "Truncated to fit a pull-request comment (65,536 characters)" in markdown
    # The summary comes first and is whole: every resource has its row.
    assert all(f"| Membership{i:04d} | Modify |" in markdown for i in range(300))
    assert "#### Membership0000 " in markdown
    assert "#### Membership0299 " not in markdown
    small = plan_markdown(result, "assumed", False, limit=10**7)
    assert "Truncated" not in small
    assert "#### Membership0299 " in small


blocks = st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=30)


@given(blocks=blocks, limit=st.integers(min_value=200, max_value=5000))
def test_fit_is_never_over_the_limit_and_keeps_as_much_as_fits(
    blocks: list[str], limit: int
) -> None:
    out = fit(blocks, "plan", limit)
    assert len(out) <= limit
    whole = "\n\n".join(blocks)
    if len(whole) <= limit:
        assert out == whole
        return
    body, marker, note = out.rpartition("> [!WARNING]")
    assert marker
    kept = [k for k in range(len(blocks)) if "\n\n".join([*blocks[:k], ""]) == body]
    assert kept, "what is shown is whole blocks from the start"
    k = kept[-1]
    assert f"{len(blocks) - k} of {len(blocks)} sections left out" in note
    # The next block would not have fitted with its note.
    longer = "\n\n".join([*blocks[: k + 1], marker + note])
    assert len(longer) > limit - len(str(len(blocks)))


def test_cells_and_code_survive_pipes_newlines_and_backticks() -> None:
    assert cell("a|b\n c") == "a\\|b c"
    assert code("x`y") == "``x`y``"
    assert code("`") == "`` ` ``"


@pytest.fixture
def cloudformation() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("cloudformation", region_name=REGION)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def test_drift_as_markdown(cloudformation: tuple[Any, Stubber]) -> None:
    client, stub = cloudformation
    stub_stack(stub)
    drifted = live(membershipName="renamed by hand")
    from test_cli import RecordingSecurityIR  # noqa: PLC0415

    reader = RecordingSecurityIR([drifted])
    code_md, markdown, _ = run(
        ["drift", "--stack-name", STACK, "--format", "markdown"], clients_for(client, reader)
    )
    assert code_md == cli.EXIT_CHANGES
    assert markdown.startswith("<!-- sir-membership drift -->\n")
    assert f"| Membership | {MID} | drifted |" in markdown
    assert "| MembershipName | changed |" in markdown
    assert "1. `membershipId=m-abcdef0123 membershipName=***`" in markdown
    assert "demo-membership" not in markdown
    assert "renamed by hand" not in markdown
