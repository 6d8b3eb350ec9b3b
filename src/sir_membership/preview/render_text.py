"""The preview and drift for a terminal: a summary table, then each resource.

Values are masked unless ``show`` (``--show-sensitive``); a masked team is
only counted.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _step_lines(step: Step, show: bool) -> list[str]:
    kind = step.request.request_type + (" (cleanup)" if step.cleanup else "")
    target = step.membership_id or step.request.physical_id or "-"
    head = f"  {kind} {target}"
    if step.source:
        head += f" [state: {step.source}]"
    lines = [head]
    if step.status in ("skip", "fail", "unresolved"):
        label = {"skip": "no call", "fail": "FAILS", "unresolved": "UNRESOLVED"}[step.status]
        return [*lines, f"    {label}: {step.reason}" if step.reason else f"    {label}"]
    plan = step.plan
    if (plan is None or not plan.requests) and not step.tag_calls:
        return [*lines, "    no call: the membership is already as declared"]
    if plan is not None and plan.requests:
        lines += table([(f"    {c.property}", c.detail) for c in plan.changes])
        if plan.ous_to_add:
            lines.append("      OUs to add:    " + ", ".join(plan.ous_to_add))
        if plan.ous_to_remove:
            lines.append("      OUs to remove: " + ", ".join(plan.ous_to_remove))
        lines.append("    UpdateMembership calls, in order:")
        lines += [
            f"      {i}. {call_line(api(r, show), show)}" for i, r in enumerate(plan.requests, 1)
        ]
        note = timing_note(step)
        if note is not None:
            lines.append(f"    Time: {note}")
    if step.tag_calls:
        lines.append(f"    Tags [{step.tag_source}]:")
        lines += table([(f"      {k}", d) for k, d in tag_rows(step.tag_plan)])
        lines.append("    Tag calls, in order:")
        lines += [f"      {i}. {tag_call_line(c)}" for i, c in enumerate(step.tag_calls, 1)]
    return lines


def _resource_lines(resource: ResourcePreview, show: bool) -> list[str]:
    target = resource.target
    head = f"{target.logical_id} ({target.resource_type}): {action_label(resource)}"
    if target.replacement:
        head += f"; CloudFormation Replacement: {target.replacement}"
    lines = [head]
    if resource.declared:
        lines.append(
            "  Declared properties, new in the template:"
            if target.action == "Add"
            else "  Declared properties, old -> new template (not the live state):"
        )
        rows = []
        for change in resource.declared:
            rows.append((f"    {change.key}", change.summary()))
            if show and "hidden" in change.summary():
                rows.append(("", f"{value(change.before)} -> {value(change.after)}"))
        lines += table(rows)
    for step in resource.steps:
        lines += _step_lines(step, show)
    lines += [f"  Note: {note}" for note in resource.notes]
    return lines


def plan_text(result: Preview, source: str, show: bool) -> str:
    """The preview: header, summary table, each resource, what was not previewed, verdict."""
    cs = result.change_set
    status = ", ".join(s for s in (cs.status, cs.execution_status) if s) or "status unknown"
    lines = [f"Change set {cs.name} on stack {cs.stack_name or '?'} ({status})"]
    lines.append(f"Membership state: {source}")
    lines += [f"Note: {note}" for note in result.notes]
    rows = [("LOGICAL ID", "ACTION", "MEMBERSHIP", "RESULT")]
    rows += [
        (r.target.logical_id, action_label(r), memberships(r), result_label(r))
        for r in result.resources
    ]
    lines += ["", *table(rows)]
    for resource in result.resources:
        lines += ["", *_resource_lines(resource, show)]
    if result.ignored:
        ignored = ", ".join(
            f"{i.logical_id} ({i.resource_type} {i.action})" for i in result.ignored
        )
        lines += ["", f"Not memberships, not previewed: {ignored}"]
        if any(i.custom for i in result.ignored):
            lines.append(
                "  (custom resources among them: pass --service-token or --logical-id to "
                "preview one as a membership)"
            )
    if not show:
        lines += ["", MASKED_NOTE]
    verdict = PLAN_VERDICTS[EXIT_CODES[result.status]]
    lines += ["", f"Result: {verdict}"]
    return "\n".join(lines)


def drift_text(stack_name: str, region: str, reports: Sequence[Drift], show: bool) -> str:
    """Drift: summary table, then each resource's differences and restoring calls."""
    lines = [f"Stack {stack_name} ({region}): {len(reports)} membership resource(s)", ""]
    rows = [("LOGICAL ID", "MEMBERSHIP", "RESULT")]
    rows += [(d.logical_id, d.physical_id or "-", DRIFT_LABELS[d.status]) for d in reports]
    lines += table(rows)
    for drift in reports:
        lines += [
            "",
            f"{drift.logical_id} -> {drift.physical_id or '-'}: {DRIFT_LABELS[drift.status]}",
        ]
        if drift.reason:
            lines.append(f"  {drift.reason}")
        lines += table([(f"  {c.property}", c.detail) for c in drift.differences])
        if drift.ous_missing:
            lines.append("    declared, not associated: " + ", ".join(drift.ous_missing))
        if drift.ous_outside:
            lines.append(
                "  Associated outside the stack (informational; the resource never removes "
                "them): " + ", ".join(drift.ous_outside)
            )
        lines += [f"  Note: {note}" for note in drift.notes]
        if drift.requests:
            lines.append(
                "  Calls that restore the declaration (the function sends them on this "
                "resource's next Update):"
            )
            lines += [
                f"    {i}. {call_line(api(r, show), show)}" for i, r in enumerate(drift.requests, 1)
            ]
        if drift.tag_calls:
            lines.append(
                "  Tag calls that restore the declared tags (sent on the next Update too):"
            )
            lines += [f"    {i}. {tag_call_line(c)}" for i, c in enumerate(drift.tag_calls, 1)]
    lines += ["", f"Result: {DRIFT_VERDICTS[drift_status(reports)]}"]
    return "\n".join(lines)
