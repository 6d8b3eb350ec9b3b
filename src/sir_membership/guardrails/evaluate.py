"""Every rule over every membership resource of one stack operation, and the verdict.

Pure: the caller (the ``check`` command, the hook) reads the memberships
and hands in what it found. A failure fails; a rule that cannot be
evaluated warns, or fails under ``FailOnUnevaluable``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .declarations import Subject
from .rules import RULES, Actual, Finding
from .settings import Settings

NOT_READ = Actual(None, "not read")


@dataclass(frozen=True)
class Verdict:
    """The findings of one evaluation, and what they add up to."""

    findings: tuple[Finding, ...]
    fail_on_unevaluable: bool = False
    resources: int = 0

    @property
    def failures(self) -> tuple[Finding, ...]:
        """What blocks: failed rules, and unevaluable ones under ``FailOnUnevaluable``."""
        return tuple(
            f
            for f in self.findings
            if f.outcome == "fail" or (f.outcome == "unevaluable" and self.fail_on_unevaluable)
        )

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """Rules that could not be evaluated and do not block."""
        return tuple(
            f for f in self.findings if f.outcome == "unevaluable" and not self.fail_on_unevaluable
        )

    @property
    def passed(self) -> bool:
        """Whether the operation may go ahead."""
        return not self.failures

    def summary(self) -> str:
        """One line: how many resources, failures and warnings."""
        if not self.resources:
            return "no membership resource changes: nothing to check"
        verdict = "FAILED" if self.failures else "passed"
        return (
            f"guardrails {verdict}: {self.resources} membership resource(s), "
            f"{len(self.failures)} failure(s), {len(self.warnings)} warning(s)"
        )


def evaluate(
    subjects: Sequence[Subject], actuals: Mapping[str, Actual], settings: Settings
) -> Verdict:
    """Every rule on every subject; ``actuals`` by logical id (missing: not read)."""
    findings = tuple(
        rule(subject, actuals.get(subject.logical_id, NOT_READ), settings)
        for subject in subjects
        for _, rule in RULES
    )
    return Verdict(findings, settings.fail_on_unevaluable, len(subjects))
