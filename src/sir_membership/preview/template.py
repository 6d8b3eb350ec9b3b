"""Template resolution: declared properties from GetTemplate + DescribeStacks.

For drift, the properties CloudFormation sent the function are rebuilt from
the deployed template and the stack's parameters. Only plain-value
intrinsics are evaluated; whatever depends on another stack or a resource
attribute is reported instead of guessed.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..properties import CLOUDFORMATION_KEYS
from .base import PreviewError, arn_part, normal


def parse_template(body: Any) -> dict[str, Any]:
    """A template body as GetTemplate returns it: already decoded JSON, JSON text or YAML.

    YAML needs PyYAML (imported only here: the function never parses
    templates); CloudFormation's short tags become their long forms.
    """
    if isinstance(body, Mapping):
        return dict(body)
    if not isinstance(body, str):
        raise PreviewError("the stack's template is empty")
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = _load_yaml(body)
    if not isinstance(decoded, Mapping):
        raise PreviewError("the stack's template is not an object")
    return dict(decoded)


def _load_yaml(text: str) -> Any:
    try:
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        raise PreviewError(
            "the stack's template is YAML and PyYAML is not installed: pip install pyyaml "
            "(the CLI needs it for YAML templates), or pass --properties-file"
        ) from None

    def tag(loader: Any, suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix in ("Ref", "Condition"):
            return {suffix: value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{suffix}": value}

    loader: Any = type("CloudFormationLoader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("!", tag)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as error:
        # Only the problem and its line: the error's own text quotes the line,
        # which may hold a literal email.
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise PreviewError(
            f"the stack's template is neither JSON nor YAML ({problem}{where})"
        ) from None


@dataclass(frozen=True)
class StackContext:
    """What intrinsic functions can be resolved from without CloudFormation."""

    stack_id: str
    stack_name: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    physical_ids: Mapping[str, str] = field(default_factory=dict)
    notification_arns: tuple[str, ...] = ()

    def pseudo(self, name: str) -> Any:
        """A pseudo parameter's value (``None`` if it is not one this knows)."""
        partition = arn_part(self.stack_id, 1) or "aws"
        return {
            "AWS::AccountId": arn_part(self.stack_id, 4),
            "AWS::Region": arn_part(self.stack_id, 3),
            "AWS::StackId": self.stack_id,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": partition,
            "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
            "AWS::NotificationARNs": list(self.notification_arns),
        }.get(name)


@dataclass(frozen=True)
class Resolved:
    """Declared properties, and what could not be resolved (``path: why``)."""

    properties: Mapping[str, Any] = field(repr=False)
    unresolved: tuple[str, ...] = ()


class _Unresolvable(Exception):
    pass


class _NoValue:
    """``AWS::NoValue``: the property or list item is dropped."""


NO_VALUE = _NoValue()
SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class _Resolver:
    """A small evaluator of the intrinsic functions templates use for plain values.

    Whatever depends on another stack or a resource attribute
    (``Fn::ImportValue``, ``Fn::GetAtt``) is reported instead of guessed.
    """

    def __init__(self, template: Mapping[str, Any], context: StackContext) -> None:
        self.template = template
        self.context = context
        self.problems: list[str] = []

    def value(self, node: Any, path: str) -> Any:
        try:
            return self._value(node, path)
        except _Unresolvable as error:
            self.problems.append(f"{path}: {error}")
            return None

    def _value(self, node: Any, path: str) -> Any:
        if isinstance(node, Mapping):
            if len(node) == 1:
                ((key, arg),) = node.items()
                if key == "Ref":
                    return self._ref(arg)
                if isinstance(key, str) and key.startswith("Fn::"):
                    return self._function(key, arg, path)
            out = {}
            for key, item in node.items():
                resolved = self.value(item, f"{path}.{key}" if path else str(key))
                if resolved is not NO_VALUE:
                    out[str(key)] = resolved
            return out
        if isinstance(node, list):
            items = [self.value(item, f"{path}[{i}]") for i, item in enumerate(node)]
            return [item for item in items if item is not NO_VALUE]
        return node

    def _ref(self, name: Any) -> Any:
        name = str(name)
        if name == "AWS::NoValue":
            return NO_VALUE
        pseudo = self.context.pseudo(name)
        if pseudo is not None:
            return pseudo
        declared = (self.template.get("Parameters") or {}).get(name)
        if isinstance(declared, Mapping):
            return self._parameter(name, declared)
        if name in self.context.physical_ids:
            return self.context.physical_ids[name]
        raise _Unresolvable(f"Ref {name} names no parameter or resource")

    def _parameter(self, name: str, declared: Mapping[str, Any]) -> Any:
        if str(declared.get("NoEcho", "false")).lower() == "true":
            raise _Unresolvable(f"parameter {name} is NoEcho (its value is not returned)")
        if name in self.context.parameters:
            value = self.context.parameters[name]
        elif "Default" in declared:
            value = normal(declared["Default"])
        else:
            raise _Unresolvable(f"parameter {name} has no value")
        kind = str(declared.get("Type", "String"))
        if kind == "CommaDelimitedList" or kind.startswith("List<"):
            return [item.strip() for item in str(value).split(",")]
        return value

    def _function(self, key: str, arg: Any, path: str) -> Any:
        if key == "Fn::If":
            if not isinstance(arg, list) or len(arg) != 3:
                raise _Unresolvable("Fn::If needs [condition, value if true, value if false]")
            return self._value(arg[1] if self._condition(arg[0]) else arg[2], path)
        if key == "Fn::Join":
            delimiter, items = self._pair(key, arg)
            values = self._value(items, path)
            if not isinstance(values, list):
                raise _Unresolvable("Fn::Join needs a list")
            return str(delimiter).join(str(v) for v in values)
        if key == "Fn::Split":
            delimiter, text = self._pair(key, arg)
            return str(self._value(text, path)).split(str(delimiter))
        if key == "Fn::Select":
            index, items = self._pair(key, arg)
            values = self._value(items, path)
            position = int(self._value(index, path))
            if not isinstance(values, list) or not 0 <= position < len(values):
                raise _Unresolvable(f"Fn::Select index {position} is out of range")
            return values[position]
        if key == "Fn::Sub":
            return self._sub(arg, path)
        if key == "Fn::FindInMap" and isinstance(arg, list) and len(arg) == 3:
            names = [str(self._value(a, path)) for a in arg]
            try:
                return self.template["Mappings"][names[0]][names[1]][names[2]]
            except (KeyError, TypeError):
                raise _Unresolvable(f"Fn::FindInMap {'.'.join(names)} is not in Mappings") from None
        raise _Unresolvable(f"{key} is only known to CloudFormation")

    @staticmethod
    def _pair(key: str, arg: Any) -> tuple[Any, Any]:
        if not isinstance(arg, list) or len(arg) != 2:
            raise _Unresolvable(f"{key} needs two arguments")
        return arg[0], arg[1]

    def _sub(self, arg: Any, path: str) -> str:
        if isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], Mapping):
            text, variables = str(arg[0]), {k: self._value(v, path) for k, v in arg[1].items()}
        else:
            text, variables = str(arg), {}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name:
                raise _Unresolvable(f"Fn::Sub ${{{name}}} is a resource attribute")
            return str(self._ref(name))

        return SUB_VARIABLE.sub(one, text)

    def _condition(self, node: Any) -> bool:
        if isinstance(node, str):
            conditions = self.template.get("Conditions") or {}
            if node not in conditions:
                raise _Unresolvable(f"condition {node} is not defined")
            return self._condition(conditions[node])
        if isinstance(node, Mapping) and len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Condition":
                return self._condition(str(arg))
            if key == "Fn::Equals":
                left, right = self._pair(key, arg)
                return bool(normal(self._value(left, "")) == normal(self._value(right, "")))
            if key == "Fn::Not" and isinstance(arg, list) and len(arg) == 1:
                return not self._condition(arg[0])
            if key == "Fn::And" and isinstance(arg, list):
                return all(self._condition(a) for a in arg)
            if key == "Fn::Or" and isinstance(arg, list):
                return any(self._condition(a) for a in arg)
        raise _Unresolvable("a condition uses a function this cannot evaluate")


def resolve_properties(
    template: Mapping[str, Any], logical_id: str, context: StackContext
) -> Resolved:
    """The properties CloudFormation sent the function, rebuilt from the template.

    ServiceToken and ServiceTimeout are left out: the function ignores them,
    and a ServiceToken is usually an ``Fn::ImportValue`` that only
    CloudFormation can resolve.
    """
    resources = template.get("Resources") or {}
    resource = resources.get(logical_id)
    if not isinstance(resource, Mapping):
        raise PreviewError(f"{logical_id} is not in the stack's template")
    properties = resource.get("Properties") or {}
    resolver = _Resolver(template, context)
    wanted = {k: v for k, v in properties.items() if k not in CLOUDFORMATION_KEYS}
    resolved = resolver.value(wanted, "")
    return Resolved(normal(resolved), tuple(resolver.problems))
