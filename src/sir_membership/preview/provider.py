"""The provider's guard, applied to a preview: the function refuses before anything else.

A preview that shows calls for a request the provider will refuse is a green
plan and a failed deploy. So each request goes first through the function's
own check (``guard.stack_refusal``), with what the preview can know: the
stack's account and region against the ServiceToken's (always, both are in
the change set), and the provider's ``AllowedStackNames`` when it was read
from the function's configuration or given on the command line. What could
not be checked is said, never assumed to pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..guard import Policy, echo_fields, is_function_arn, stack_refusal
from ..request import Request


@dataclass(frozen=True)
class ProviderPolicy:
    """What is known of one provider function's ``AllowedStackNames``.

    ``stack_patterns`` is None when it could not be read; ``source`` says
    where it came from, or why it is unknown (shown as a note).
    """

    stack_patterns: tuple[str, ...] | None
    source: str


#: Why a request is refused, or None: ``steps`` runs it before the function's decision.
Guard = Callable[[Request], str | None]


def patterns_from(value: str) -> tuple[str, ...]:
    """``AllowedStackNames`` as the function reads it (``ALLOWED_STACK_NAMES``)."""
    return Policy.from_environ({"ALLOWED_STACK_NAMES": value}).stack_patterns


def provider_guard(policies: Mapping[str, ProviderPolicy]) -> Guard:
    """The function's refusal for a request, from its ServiceToken's policy.

    The account and region rule applies whenever the StackId and the
    ServiceToken can be read; ``AllowedStackNames`` only when its value is
    known. A ServiceToken that is not a function ARN cannot be checked (the
    function would be invoked by another name) and is let through.
    """

    def refusal(request: Request) -> str | None:
        token = request.properties.get("ServiceToken")
        stack_id = request.stack_id
        if not is_function_arn(token) or not echo_fields({"StackId": stack_id})["StackId"]:
            return None
        assert isinstance(token, str)
        policy = policies.get(token)
        patterns = policy.stack_patterns if policy is not None else None
        error = stack_refusal(stack_id, token, patterns if patterns is not None else ("*",))
        return error.reason if error is not None else None

    return refusal


def guard_notes(policies: Mapping[str, ProviderPolicy]) -> tuple[str, ...]:
    """One line per provider: where its AllowedStackNames came from, or why it is unchecked."""
    notes = []
    for token, policy in policies.items():
        name = token.split(":")[6] if is_function_arn(token) else token
        if policy.stack_patterns is None:
            notes.append(
                f"provider {name}: AllowedStackNames not checked ({policy.source}); pass "
                "--allowed-stack-names with the provider stack's value to check it (the "
                "account and region were checked)"
            )
        else:
            shown = ",".join(policy.stack_patterns) or "(empty)"
            notes.append(
                f"provider {name}: the stack is checked as the function will check it (same "
                f"account and region, AllowedStackNames {shown}, {policy.source})"
            )
    return tuple(notes)
