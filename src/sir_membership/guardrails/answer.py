"""A verdict as a Lambda hook's response (pure).

The documented response: ``hookStatus`` SUCCESS or FAILED, ``errorCode``
NonCompliant (a rule failed) or InternalFailure (nothing could be
evaluated), the caller's ``clientRequestToken``, a ``message`` that
CloudFormation truncates at 4,096 characters (fitted here, whole lines
first, so the cut never falls mid-line), and one annotation per rule. The
hook's FailureMode (WARN or FAIL) decides what CloudFormation does with a
FAILED answer; a rule that cannot be evaluated answers SUCCESS with a
warning line unless FailOnUnevaluable.
"""

from __future__ import annotations

from typing import Any

from .evaluate import Verdict
from .render import verdict_lines
from .rules import RULE_NAMES

MAX_MESSAGE = 4096
MAX_ANNOTATION_TEXT = 1024
PREFIX = "sir-membership guardrails: "
SEVERITY = {
    "valid-declaration": "MEDIUM",
    "min-responders": "HIGH",
    "responder-email-domains": "MEDIUM",
    "triage-stays-on": "HIGH",
    "max-ous-removed": "CRITICAL",
    "cover-entire-organization-stays": "CRITICAL",
    "membership-id-fixed": "HIGH",
    "retain-on-removal": "HIGH",
    "on-delete-remove-allowed": "HIGH",
}
DOCS = "https://github.com/example-org/sir-membership/blob/main/docs/governance.md"


def fit(lines: list[str], limit: int = MAX_MESSAGE) -> str:
    """``lines`` joined, cut at a line boundary to ``limit`` characters with a count of the rest."""
    lines = [line if len(line) <= 1000 else line[:997] + "..." for line in lines]
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    kept: list[str] = []
    for i, line in enumerate(lines):
        tail = f"... and {len(lines) - i} more line(s): see the annotations"
        if len("\n".join([*kept, line, tail])) > limit:
            return "\n".join([*kept, tail])
        kept.append(line)
    return text[:limit]  # not reached: the whole text was longer than the limit


def _annotation(rule: str, verdict: Verdict) -> dict[str, Any]:
    mine = [f for f in verdict.findings if f.rule == rule]
    failed = [f for f in verdict.failures if f.rule == rule]
    warned = [f for f in verdict.warnings if f.rule == rule]
    passed = [f for f in mine if f.outcome == "pass"]
    annotation: dict[str, Any] = {"annotationName": f"sir-membership-{rule}"}
    if failed:
        text = "; ".join(f"{f.stack}/{f.logical_id}: {f.detail}" for f in failed)
        annotation |= {
            "status": "FAILED",
            "statusMessage": text[:MAX_ANNOTATION_TEXT],
            "remediationMessage": failed[0].fix[:MAX_ANNOTATION_TEXT],
            "remediationLink": DOCS,
        }
    elif warned:
        text = "; ".join(f"{f.stack}/{f.logical_id}: {f.detail}" for f in warned)
        annotation |= {"status": "SKIPPED", "statusMessage": text[:MAX_ANNOTATION_TEXT]}
    elif passed:
        annotation |= {"status": "PASSED", "statusMessage": f"{len(passed)} resource(s) passed"}
    else:
        annotation |= {"status": "SKIPPED", "statusMessage": "not applicable, or turned off"}
    annotation["severityLevel"] = SEVERITY[rule]
    return annotation


def hook_answer(token: str, verdict: Verdict) -> dict[str, Any]:
    """The response to one hook invocation for a verdict."""
    message = fit([PREFIX + verdict.summary(), *verdict_lines(verdict)])
    out: dict[str, Any] = {
        "hookStatus": "SUCCESS" if verdict.passed else "FAILED",
        "message": message,
        "clientRequestToken": token,
    }
    if not verdict.passed:
        out["errorCode"] = "NonCompliant"
    if verdict.resources:
        out["annotations"] = [_annotation(rule, verdict) for rule in RULE_NAMES]
    return out


def internal_failure(token: str, reason: str) -> dict[str, Any]:
    """Nothing could be evaluated: FAILED with InternalFailure and the one-line reason."""
    return {
        "hookStatus": "FAILED",
        "errorCode": "InternalFailure",
        "message": fit([f"{PREFIX}not evaluated: {reason}"]),
        "clientRequestToken": token,
    }
