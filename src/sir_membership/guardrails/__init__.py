"""Membership guardrails: rules a stack operation must pass, from the function's own core.

The rules run in two places and agree because they are the same pure
functions: the ``check`` command (CI and pre-commit, on a template before a
change set exists) and a CloudFormation Lambda Hook (``hook``: every stack
and change-set operation of the account). One job per module:

* ``settings``: the rules' parameters, their defaults and parsing;
* ``declarations``: each membership resource's old and new declaration,
  from templates (the preview's resolver) or a change set's resolved values;
* ``rules``: one pure function per rule -> a ``Finding``;
* ``evaluate``: every rule over every resource -> a ``Verdict``;
* ``render``: a verdict as text or markdown;
* ``payload`` and ``hook``: the hook's shell (never in the provider's package).
"""

from .declarations import Declaration, Subject, change_subjects, template_subjects
from .evaluate import Verdict, evaluate
from .rules import RULE_NAMES, RULES, Actual, Finding
from .settings import NAMES, PARAMETERS, Settings

__all__ = [
    "NAMES",
    "PARAMETERS",
    "RULES",
    "RULE_NAMES",
    "Actual",
    "Declaration",
    "Finding",
    "Settings",
    "Subject",
    "Verdict",
    "change_subjects",
    "evaluate",
    "template_subjects",
]
