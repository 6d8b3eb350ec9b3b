"""The IAM action tables of docs/security.md and README.md, generated from template.yaml.

Why: a threat model whose action table is written by hand drifts from the
template (it once listed 8 actions where the role had 12). Here the tables
are a function of the template: every role, every statement that grants it
something (inline policies and ``AWS::IAM::RolePolicy`` / ``Policy`` /
``ManagedPolicy`` resources attached to it), the resource each action is
scoped to, any IAM condition, when the grant exists at all (a resource
``Condition``), and why (the ``Metadata: ActionReasons`` of the resource
that carries the statement, or of the role). A statement added to the
template shows up on the next run; tests/test_iam_tables.py fails while the
documents differ from what this prints.

    python scripts/iam_tables.py --write   # rewrite the marked sections
    python scripts/iam_tables.py --check   # exit 1 if a section differs

Each document marks its section with ``<!-- BEGIN GENERATED: NAME ... -->``
and ``<!-- END GENERATED: NAME -->``; only the text between is rewritten.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
COMMAND = "python scripts/iam_tables.py --write"
NO_REASON = "(no ActionReasons entry in template.yaml)"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short-form tags as their long forms."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as data, short-form tags in their long forms."""
    with path.open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506
    return document


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Grant:
    """One action a role is allowed, where, under which IAM condition, when, and why."""

    role: str
    action: str
    resource: str
    condition: str
    when: str
    why: str
    sid: str


#: Resource types whose ``Ref`` is their ARN (a ``Ref`` to any other resource says "its Ref").
REF_IS_ARN = frozenset(
    {"AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine", "AWS::SNS::Topic"}
)


def _render_ref(name: str, resources: Mapping[str, Any]) -> str:
    if name not in resources:
        return f"the `{name}` parameter's value"
    kind = (resources[name] or {}).get("Type")
    return f"`{name}` (its {'ARN' if kind in REF_IS_ARN else 'Ref'})"


def render_value(value: Any, resources: Mapping[str, Any] | None = None) -> str:
    """An intrinsic as a reader would say it (``Fn::GetAtt [T, Arn]`` is "T's ARN").

    ``resources`` (the template's) tells a ``Ref`` to a resource from a ``Ref``
    to a parameter; without it every ``Ref`` reads as a parameter's value.
    """
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, Mapping) and len(value) == 1:
        (key, inner), *_ = value.items()
        if key == "Fn::Sub":
            return f"`{inner if isinstance(inner, str) else inner[0]}`"
        if key == "Fn::GetAtt":
            name, attribute = _as_list(inner)[:2]
            return f"`{name}` (its {attribute})"
        if key == "Ref":
            return _render_ref(inner, resources or {})
    if isinstance(value, list):
        return ", ".join(render_value(v, resources) for v in value)
    return f"`{value}`"


def _render_condition(condition: Any) -> str:
    if not condition:
        return ""
    parts = []
    for operator, tests in condition.items():
        for key, expected in tests.items():
            parts.append(f"{operator} `{key}` = {render_value(expected)}")
    return "; ".join(parts)


def _describe_condition(name: str, conditions: Mapping[str, Any]) -> str:
    """``Not [Equals [Ref P, ""]]`` reads "only when P is set"; anything else by name."""
    definition = conditions.get(name)
    match definition:
        case {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}:
            return f"only when `{parameter}` is set"
    return f"only when condition `{name}` holds"


def _attached_to(properties: Mapping[str, Any], role: str) -> bool:
    if properties.get("RoleName") == {"Ref": role}:
        return True
    return {"Ref": role} in _as_list(properties.get("Roles") or [])


_POLICY_TYPES = ("AWS::IAM::RolePolicy", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")


def grants(template: Mapping[str, Any]) -> list[Grant]:
    """Every action every role of the template is allowed, in template order."""
    resources: Mapping[str, Any] = template.get("Resources") or {}
    conditions: Mapping[str, Any] = template.get("Conditions") or {}
    out: list[Grant] = []
    for role, definition in resources.items():
        if definition.get("Type") != "AWS::IAM::Role":
            continue
        role_reasons = (definition.get("Metadata") or {}).get("ActionReasons") or {}
        carriers: list[tuple[Mapping[str, Any], Mapping[str, Any], str]] = [
            (policy, definition, "")
            for policy in definition.get("Properties", {}).get("Policies") or ()
        ]
        for other in resources.values():
            properties = other.get("Properties") or {}
            if other.get("Type") in _POLICY_TYPES and _attached_to(properties, role):
                when = other.get("Condition", "")
                carriers.append((properties, other, when))
        for policy, owner, when in carriers:
            reasons = {**role_reasons, **((owner.get("Metadata") or {}).get("ActionReasons") or {})}
            document = policy.get("PolicyDocument") or {}
            for statement in _as_list(document.get("Statement") or []):
                for action in _as_list(statement.get("Action") or []):
                    out.append(
                        Grant(
                            role=role,
                            action=str(action),
                            resource=render_value(statement.get("Resource"), resources),
                            condition=_render_condition(statement.get("Condition")),
                            when=_describe_condition(when, conditions) if when else "always",
                            why=" ".join(str(reasons.get(action, NO_REASON)).split()),
                            sid=str(statement.get("Sid", "")),
                        )
                    )
    return out


def _boundary(definition: Mapping[str, Any], conditions: Mapping[str, Any]) -> str:
    boundary = definition.get("Properties", {}).get("PermissionsBoundary")
    match boundary:
        case None:
            return "none"
        case {"Fn::If": [name, {"Ref": parameter}, {"Ref": "AWS::NoValue"}]}:
            return f"the `{parameter}` policy, {_describe_condition(name, conditions)[5:]}"
    return render_value(boundary)


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "-"


def security_tables(template: Mapping[str, Any]) -> str:
    """Per role: every action, its resource, condition, when and why (docs/security.md)."""
    resources = template.get("Resources") or {}
    conditions = template.get("Conditions") or {}
    all_grants = grants(template)
    lines: list[str] = []
    for role, definition in resources.items():
        if definition.get("Type") != "AWS::IAM::Role":
            continue
        mine = [g for g in all_grants if g.role == role]
        description = definition.get("Properties", {}).get("Description", "")
        conditional = sum(1 for g in mine if g.when != "always")
        wild = [g.action for g in mine if "*" in g.action]
        lines += [
            f"### `{role}`" + (f": {description}" if description else ""),
            "",
            f"{len(mine)} actions ({conditional} of them only under a condition), "
            + (f"with a wildcard: {', '.join(wild)}" if wild else "none with a wildcard")
            + f". Permissions boundary: {_boundary(definition, conditions)}.",
            "",
            "| Action | Resource | IAM condition | Granted | Why |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| `{g.action}` | {_cell(g.resource)} | {_cell(g.condition)} | {g.when} | "
            f"{_cell(g.why)} |"
            for g in mine
        ]
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def readme_table(template: Mapping[str, Any]) -> str:
    """One row per statement: its actions, resource and when (README's IAM section).

    Statements that grant the same actions on the same resource under the same
    condition (the table, the table's key) share one row naming every role.
    """
    statements: dict[tuple[str, str, str, str, str], list[str]] = {}
    for g in grants(template):
        statements.setdefault((g.role, g.sid, g.resource, g.condition, g.when), []).append(g.action)
    rows: dict[tuple[tuple[str, ...], str, str, str], list[str]] = {}
    for (role, _, resource, condition, when), actions in statements.items():
        rows.setdefault((tuple(actions), resource, condition, when), []).append(role)
    lines = ["| Role | Actions | Resource | Granted |", "|---|---|---|---|"]
    for (actions, resource, condition, when), roles in rows.items():
        where = resource + (f" ({condition})" if condition else "")
        listed = ", ".join(f"`{a}`" for a in actions)
        named = ", ".join(f"`{r}`" for r in roles)
        lines.append(f"| {named} | {listed} | {_cell(where)} | {when} |")
    return "\n".join(lines)


#: Which section of which document holds what.
SECTIONS: Mapping[str, tuple[str, Callable[[Mapping[str, Any]], str]]] = {
    "docs/security.md": ("role-actions", security_tables),
    "README.md": ("iam-actions", readme_table),
}


def _markers(name: str) -> tuple[str, str]:
    return (
        f"<!-- BEGIN GENERATED: {name} (from template.yaml by {COMMAND}; do not edit) -->",
        f"<!-- END GENERATED: {name} -->",
    )


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the marked section ``name`` holding ``body``; ValueError if unmarked."""
    begin, end = _markers(name)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"no section {name!r} marked with {begin!r} ... {end!r}")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text, count=1)


def expected(path: Path, template: Mapping[str, Any]) -> str:
    """What the document ``path`` holds once its section is regenerated."""
    relative = path.relative_to(ROOT).as_posix()
    name, render = SECTIONS[relative]
    return replace_section(path.read_text(encoding="utf-8"), name, render(template))


def main(argv: list[str] | None = None) -> int:
    """Rewrite (``--write``) or compare (``--check``) every generated section."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the marked sections")
    mode.add_argument("--check", action="store_true", help="exit 1 if a section differs")
    args = parser.parse_args(argv)
    template = load_template()
    stale = []
    for relative in SECTIONS:
        path = ROOT / relative
        text = expected(path, template)
        if text != path.read_text(encoding="utf-8"):
            stale.append(relative)
            if args.write:
                path.write_text(text, encoding="utf-8")
    if stale and args.check:
        print(f"out of date: {', '.join(stale)}; run {COMMAND}", file=sys.stderr)
        return 1
    if stale:
        print(f"rewrote: {', '.join(stale)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
