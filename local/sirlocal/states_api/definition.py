"""The provider's state machine definition, and the rules of Amazon States Language it uses.

Why: the stand-in plays the repository's definition (statemachine/membership.asl.json,
read, never restated), so it needs the definition's substitutions and the few
paths, templates, Choice and Retry/Catch rules that definition relies on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sirlocal.driver.workers import REPO_ROOT
from sirlocal.worker import ACCOUNT_ID

DEFINITION = REPO_ROOT / "statemachine" / "membership.asl.json"
REGION = "us-east-1"
STATE_MACHINE_NAME = "sir-membership-local"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{STATE_MACHINE_NAME}"
WORK_FUNCTION = "sir-membership-provider-WorkFunction-LOCAL"
ANSWER_FUNCTION = "sir-membership-provider-AnswerFunction-LOCAL"
#: The function each name in the definition's substitutions runs.
HANDLERS = {
    WORK_FUNCTION: "sir_membership.tasks.work",
    ANSWER_FUNCTION: "sir_membership.tasks.answer",
}


def function_arn(name: str) -> str:
    """The ARN of a local function."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


# --------------------------------------------------------------------------- paths


def get_path(document: Any, path: str) -> Any:
    """A JSONPath of the simple kind the definition uses (``$``, ``$.a.b``)."""
    if path == "$":
        return document
    if not path.startswith("$."):
        raise ValueError(f"unsupported path {path!r}")
    value = document
    for part in path[2:].split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(path)
        value = value[part]
    return value


def put_path(document: Any, path: str | None, value: Any) -> Any:
    """``ResultPath``: ``value`` placed at ``path`` of a copy of ``document``."""
    if path is None:
        return document
    if path == "$":
        return value
    out = json.loads(json.dumps(document))
    target = out
    parts = path[2:].split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value
    return out


def apply_template(template: Any, document: Any) -> Any:
    """``Parameters`` / ``ResultSelector``: keys ending in ``.$`` are paths into ``document``."""
    if isinstance(template, Mapping):
        out: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = get_path(document, str(value))
            else:
                out[key] = apply_template(value, document)
        return out
    if isinstance(template, list):
        return [apply_template(v, document) for v in template]
    return template


def error_matches(names: Sequence[str], error: str) -> bool:
    """Whether a Retry's or Catch's ``ErrorEquals`` covers ``error`` (``States.TaskFailed``
    covers every error but a timeout)."""
    if error in names:
        return True
    if "States.ALL" in names:
        return True
    return "States.TaskFailed" in names and error != "States.Timeout"


def load_definition(path: Path = DEFINITION) -> dict[str, Any]:
    """The definition with its substitutions made (the template's DefinitionSubstitutions)."""
    text = path.read_text(encoding="utf-8")
    for name, value in {
        "Partition": "aws",
        "WorkFunctionArn": function_arn(WORK_FUNCTION),
        "AnswerFunctionArn": function_arn(ANSWER_FUNCTION),
    }.items():
        text = text.replace("${" + name + "}", value)
    definition: dict[str, Any] = json.loads(text)
    return definition


def choose(state: Mapping[str, Any], document: Any) -> str:
    """A Choice state's next state (string equality, as the definition uses)."""
    for rule in state.get("Choices", ()):
        if set(rule) - {"Variable", "StringEquals", "Next"}:
            raise ValueError("only StringEquals choices are played")
        try:
            value = get_path(document, rule["Variable"])
        except KeyError:
            continue
        if value == rule["StringEquals"]:
            return str(rule["Next"])
    if "Default" not in state:
        raise KeyError("States.NoChoiceMatched")
    return str(state["Default"])


def retry_delay(
    retriers: Sequence[Mapping[str, Any]], error: str, tries: dict[int, int]
) -> float | None:
    """Seconds to wait before the next attempt, or None when no Retry applies (any more).

    ``tries``: the attempts made so far by each retrier (updated here).
    """
    for index, retrier in enumerate(retriers):
        if not error_matches(retrier["ErrorEquals"], error):
            continue
        done = tries.get(index, 0)
        if done >= int(retrier.get("MaxAttempts", 3)):
            return None
        tries[index] = done + 1
        interval = float(retrier.get("IntervalSeconds", 1))
        return interval * float(retrier.get("BackoffRate", 2.0)) ** done
    return None
