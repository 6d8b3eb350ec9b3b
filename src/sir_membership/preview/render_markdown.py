"""The preview and drift as markdown, sized for a pull-request comment.

Reviewers who live in pull requests read the plan where they approve it. The
comment leads with the verdict and a summary table, then each resource's
declared changes and calls. Values are masked unless ``show``
(``--show-sensitive``); a CI log or a PR comment is no place for emails.

GitHub refuses a comment over 65,536 characters. ``fit`` keeps whole blocks
in order while they fit, and says what it left out and where to see it all,
so the summary is never the part that is lost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .base import EXIT_CODES
from .drift import Drift, drift_status
from .labels import (
    DRIFT_LABELS,
    DRIFT_VERDICTS,
    MASKED_NOTE,
    PLAN_VERDICTS,
    action_label,
    api,
    call_line,
    memberships,
    result_label,
    tag_call_line,
    tag_rows,
    timing_note,
    value,
)
from .steps import Preview, ResourcePreview, Step

#: GitHub's limit on an issue or pull-request comment body, in characters.
COMMENT_LIMIT = 65_536
#: First line of every comment, so a workflow can find and update its own.
PLAN_MARKER = "<!-- sir-membership plan -->"
DRIFT_MARKER = "<!-- sir-membership drift -->"


def cell(text: Any) -> str:
    """A table cell: one line, pipes escaped."""
    return re.sub(r"\s*\n\s*", " ", str(text)).replace("|", "\\|") or " "


def code(text: str) -> str:
    """Inline code that survives backticks in the text."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub table."""
    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def truncation_note(omitted: int, total: int, command: str) -> str:
    """What ``fit`` says when it leaves blocks out."""
    return (
        f"> [!WARNING]\n> Truncated to fit a pull-request comment ({COMMENT_LIMIT:,} characters): "
        f"{omitted} of {total} sections left out. Run `sir-membership {command} --format json` "
        "(or without `--format`) to see everything."
    )


def fit(blocks: Sequence[str], command: str, limit: int = COMMENT_LIMIT) -> str:
    """Whole blocks, in order, while they fit in ``limit`` characters with the note.

    The result is never longer than ``limit``. Once a block does not fit, no
    later block is added either, so what is shown is a prefix and the note
    says how much is missing.
    """
    whole = "\n\n".join(blocks)
    if len(whole) <= limit:
        return whole
    kept: list[str] = []
    for block in blocks:
        note = truncation_note(len(blocks) - len(kept) - 1, len(blocks), command)
        if len("\n\n".join([*kept, block, note])) > limit:
            break
        kept.append(block)
    note = truncation_note(len(blocks) - len(kept), len(blocks), command)
    return "\n\n".join([*kept, note])[:limit]


def _calls(parameters: Sequence[dict[str, Any]], show: bool) -> str:
    return "\n".join(f"{i}. {code(call_line(p, show))}" for i, p in enumerate(parameters, 1))


def _step_block(step: Step, show: bool) -> str:
    kind = step.request.request_type + (" (cleanup)" if step.cleanup else "")
    target = step.membership_id or step.request.physical_id or "-"
    lines = [f"**{kind} {code(target)}**" + (f" (state: {step.source})" if step.source else "")]
    if step.status in ("skip", "fail", "unresolved"):
        label = {"skip": "No call", "fail": "FAILS", "unresolved": "UNRESOLVED"}[step.status]
        return "\n\n".join([*lines, f"{label}: {step.reason}" if step.reason else label])
    plan = step.plan
    if (plan is None or not plan.requests) and not step.tag_calls:
        return "\n\n".join([*lines, "No call: the membership is already as declared."])
    if plan is not None and plan.requests:
        if plan.changes:
            rows = [(c.property, c.detail) for c in plan.changes]
            lines.append(table(("Field", "Change"), rows))
        if plan.ous_to_add:
            lines.append("OUs to add: " + ", ".join(code(ou) for ou in plan.ous_to_add))
        if plan.ous_to_remove:
            lines.append("OUs to remove: " + ", ".join(code(ou) for ou in plan.ous_to_remove))
        calls = _calls([api(r, show) for r in plan.requests], show)
        lines.append("UpdateMembership calls, in order:\n\n" + calls)
        note = timing_note(step)
        if note is not None:
            lines.append(f"Time: {note}.")
    if step.tag_calls:
        rows = tag_rows(step.tag_plan)
        lines.append(f"Tags (state: {step.tag_source}):\n\n" + table(("Tag", "Change"), rows))
        tagging = [f"{i}. {code(tag_call_line(c))}" for i, c in enumerate(step.tag_calls, 1)]
        lines.append("Tag calls, after those:\n\n" + "\n".join(tagging))
    return "\n\n".join(lines)


def _resource_blocks(resource: ResourcePreview, show: bool) -> list[str]:
    target = resource.target
    head = f"#### {target.logical_id} ({target.resource_type}): {action_label(resource)}"
    if target.replacement:
        head += f"; CloudFormation Replacement: {target.replacement}"
    parts = [head]
    if resource.declared:
        rows = []
        for change in resource.declared:
            summary = change.summary()
            if show and "hidden" in summary:
                summary += f": {value(change.before)} -> {value(change.after)}"
            rows.append((change.key, summary))
        where = "new in the template" if target.action == "Add" else "old -> new template"
        parts.append(
            f"Declared properties, {where} (not the live state):\n\n"
            + table(("Property", "Change"), rows)
        )
    blocks = ["\n\n".join(parts)]
    blocks += [_step_block(step, show) for step in resource.steps]
    if resource.notes:
        blocks.append("\n".join(f"- Note: {note}" for note in resource.notes))
    return blocks


def plan_markdown(result: Preview, source: str, show: bool, limit: int = COMMENT_LIMIT) -> str:
    """The preview as a PR comment: verdict, summary table, then each resource."""
    cs = result.change_set
    status = ", ".join(s for s in (cs.status, cs.execution_status) if s) or "status unknown"
    verdict = PLAN_VERDICTS[EXIT_CODES[result.status]]
    head = [
        PLAN_MARKER,
        f"### Membership change-set preview: {code(cs.name)} on stack {code(cs.stack_name or '?')}",
        f"**Result: {verdict}**. Change set status: {status}. Membership state: {source}.",
    ]
    if result.notes:
        head.append("\n".join(f"- Note: {note}" for note in result.notes))
    head.append(
        table(
            ("Logical ID", "Action", "Membership", "Result"),
            [
                (r.target.logical_id, action_label(r), memberships(r), result_label(r))
                for r in result.resources
            ],
        )
    )
    blocks = ["\n\n".join(head)]
    if not show:
        blocks.append(f"_{MASKED_NOTE}_")
    for resource in result.resources:
        blocks += _resource_blocks(resource, show)
    if result.ignored:
        blocks.append(
            "Not memberships, not previewed: "
            + ", ".join(f"{i.logical_id} ({i.resource_type} {i.action})" for i in result.ignored)
        )
    return fit(blocks, "plan", limit)


def _drift_blocks(drift: Drift, show: bool) -> list[str]:
    parts = [
        f"#### {drift.logical_id} -> {code(drift.physical_id or '-')}: {DRIFT_LABELS[drift.status]}"
    ]
    if drift.reason:
        parts.append(drift.reason)
    if drift.differences:
        parts.append(
            table(("Field", "Difference"), [(c.property, c.detail) for c in drift.differences])
        )
    if drift.ous_missing:
        parts.append("Declared, not associated: " + ", ".join(code(ou) for ou in drift.ous_missing))
    if drift.ous_outside:
        parts.append(
            "Associated outside the stack (informational; the resource never removes them): "
            + ", ".join(code(ou) for ou in drift.ous_outside)
        )
    parts += [f"- Note: {note}" for note in drift.notes]
    blocks = ["\n\n".join(parts)]
    if drift.requests:
        blocks.append(
            "Calls that restore the declaration (the function sends them on this resource's "
            "next Update):\n\n" + _calls([api(r, show) for r in drift.requests], show)
        )
    if drift.tag_calls:
        tagging = [f"{i}. {code(tag_call_line(c))}" for i, c in enumerate(drift.tag_calls, 1)]
        blocks.append("Tag calls that restore the declared tags:\n\n" + "\n".join(tagging))
    return blocks


def drift_markdown(
    stack_name: str, region: str, reports: Sequence[Drift], show: bool, limit: int = COMMENT_LIMIT
) -> str:
    """Drift as a PR comment or an issue: verdict, summary table, then each resource."""
    verdict = DRIFT_VERDICTS[drift_status(reports)]
    head = [
        DRIFT_MARKER,
        f"### Membership drift: stack {code(stack_name)} ({region})",
        f"**Result: {verdict}**. {len(reports)} membership resource(s).",
        table(
            ("Logical ID", "Membership", "Result"),
            [(d.logical_id, d.physical_id or "-", DRIFT_LABELS[d.status]) for d in reports],
        ),
    ]
    blocks = ["\n\n".join(head)]
    if not show:
        blocks.append(f"_{MASKED_NOTE}_")
    for drift in reports:
        blocks += _drift_blocks(drift, show)
    return fit(blocks, "drift", limit)
