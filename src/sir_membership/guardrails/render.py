"""A verdict as text (terminals, pre-commit) or markdown (a pull-request comment).

Findings carry no sensitive value, so nothing is masked here.
"""

from __future__ import annotations

from .evaluate import Verdict
from .rules import RULE_NAMES


def verdict_lines(verdict: Verdict) -> list[str]:
    """One line per failure, then one per warning (the hook's message uses these too)."""
    return [f"FAIL {f.line()}" for f in verdict.failures] + [
        f"WARN {f.line()}" for f in verdict.warnings
    ]


def verdict_text(verdict: Verdict, source: str) -> str:
    """Plain text: the lines, where states came from, the summary."""
    lines = verdict_lines(verdict)
    if verdict.resources:
        lines.append(f"membership state: {source}")
    lines.append(verdict.summary())
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def verdict_markdown(verdict: Verdict, source: str) -> str:
    """Markdown: a summary line and a table of what failed or warned."""
    mark = ":x:" if verdict.failures else ":white_check_mark:"
    out = ["### sir-membership guardrails", "", f"{mark} {verdict.summary()}", ""]
    shown = [("FAIL", f) for f in verdict.failures] + [("WARN", f) for f in verdict.warnings]
    if shown:
        out += ["| | Resource | Rule | Finding | Fix |", "|---|---|---|---|---|"]
        out += [
            f"| {kind} | `{f.stack}/{f.logical_id}` | `{f.rule}` | {_cell(f.detail)} | "
            f"{_cell(f.fix)} |"
            for kind, f in shown
        ]
        out.append("")
    if verdict.resources:
        out.append(f"Membership state: {source}. Rules: {', '.join(RULE_NAMES)}.")
    return "\n".join(out)
