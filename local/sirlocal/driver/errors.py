"""The driver's errors: it could not play the stack, or an answer broke the contract."""

from __future__ import annotations

from collections.abc import Sequence


class DriverError(Exception):
    """The driver could not play the stack (worker failed to start, wrong stack state)."""


class ContractViolation(DriverError):
    """The function's answer breaks CloudFormation's custom resource response contract."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("response contract broken: " + "; ".join(problems))
        self.problems = list(problems)


class NoResponse(ContractViolation):
    """No answer was accepted before the invocation ended (CloudFormation would time out)."""
