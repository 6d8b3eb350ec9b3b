"""Validation data read from botocore's model of ``security-ir``.

The property rules (lengths, patterns, enums, list sizes, OU batch size) are
the service's own, so they come from the model that ships with botocore
instead of being copied here: when AWS adds a communication preference or a
feature, upgrading botocore updates the rules.

The Lambda function hands over its ``security-ir`` client's model
(``share_model``), which botocore has already parsed: a fresh loader would
list botocore's data directory and parse the same JSON again on the first
request after each cold start, about 10 ms (bench/results.md).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from botocore.loaders import create_loader
from botocore.model import (
    ListShape,
    MapShape,
    ServiceModel,
    Shape,
    StringShape,
    StructureShape,
)

SERVICE_NAME = "security-ir"


@dataclass(frozen=True)
class StringRule:
    """Constraints of one string shape of the model."""

    min_length: int | None
    max_length: int | None
    pattern: re.Pattern[str] | None
    enum: tuple[str, ...]
    #: The model marks the value sensitive (a name, email, job title): never shown.
    sensitive: bool = False

    def problem(self) -> str:
        """A short description of what a valid value looks like."""
        if self.enum:
            return "one of " + ", ".join(self.enum)
        parts = []
        if self.min_length is not None or self.max_length is not None:
            parts.append(f"{self.min_length or 0} to {self.max_length or 'any'} characters")
        if self.pattern is not None:
            parts.append(f"matching {self.pattern.pattern}")
        return ", ".join(parts)

    def broken(self, value: str) -> str:
        """The first constraint ``value`` breaks, said without the value ("" if none)."""
        if self.enum:
            return "" if value in self.enum else "not an accepted value"
        if self.min_length is not None and len(value) < self.min_length:
            return f"fewer than {self.min_length} character{'' if self.min_length == 1 else 's'}"
        if self.max_length is not None and len(value) > self.max_length:
            return f"more than {self.max_length} characters"
        if self.pattern is not None and self.pattern.fullmatch(value) is None:
            return f"does not match {self.pattern.pattern}"
        return ""

    def accepts(self, value: str) -> bool:
        """Whether ``value`` satisfies every constraint."""
        if self.enum:
            return value in self.enum
        if self.min_length is not None and len(value) < self.min_length:
            return False
        if self.max_length is not None and len(value) > self.max_length:
            return False
        return self.pattern is None or self.pattern.fullmatch(value) is not None


@dataclass(frozen=True)
class SizeRule:
    """Bounds on a list shape's length."""

    min_items: int | None
    max_items: int | None


@dataclass(frozen=True)
class Rules:
    """Everything the property parser and planner take from the model."""

    membership_id: StringRule
    membership_name: StringRule
    responder_name: StringRule
    job_title: StringRule
    email: StringRule
    communication_type: StringRule
    feature_name: StringRule
    organizational_unit: StringRule
    team_size: SizeRule
    features_size: SizeRule
    ou_batch_size: int
    tag_key: StringRule
    tag_value: StringRule
    #: Most tags one TagResource call (and so one declaration) may carry.
    tags_size: SizeRule


def _string(shape: Shape) -> StringRule:
    assert isinstance(shape, StringShape)
    meta = shape.metadata
    pattern = meta.get("pattern")
    return StringRule(
        min_length=meta.get("min"),
        max_length=meta.get("max"),
        pattern=re.compile(pattern) if pattern else None,
        enum=tuple(shape.enum),
        sensitive=bool(meta.get("sensitive")),
    )


def _size(shape: Shape) -> SizeRule:
    assert isinstance(shape, ListShape)
    return SizeRule(shape.metadata.get("min"), shape.metadata.get("max"))


def _member(shape: Shape, name: str) -> Shape:
    assert isinstance(shape, StructureShape)
    return shape.members[name]


#: Models handed over by ``share_model``, by service name.
_SHARED: dict[str, ServiceModel] = {}


def share_model(model: ServiceModel) -> None:
    """Take the rules from ``model`` (a client's ``meta.service_model``) when first needed.

    The same data as a fresh loader's, already parsed. Call it before the
    first ``rules()``; afterwards the rules are already made and it changes
    nothing.
    """
    if model.service_name != SERVICE_NAME:
        raise ValueError(f"expected the {SERVICE_NAME} model, got {model.service_name}")
    _SHARED.setdefault(SERVICE_NAME, model)


def load_model() -> ServiceModel:
    """The shared model if there is one, else botocore's, parsed by a fresh loader."""
    shared = _SHARED.get(SERVICE_NAME)
    if shared is not None:
        return shared
    loader = create_loader()
    return ServiceModel(loader.load_service_model(SERVICE_NAME, "service-2"), SERVICE_NAME)


@functools.cache
def rules() -> Rules:
    """The rules, made once per process (the model is loaded on first use)."""
    return rules_from(load_model())


def rules_from(model: ServiceModel) -> Rules:
    """The rules read from ``model``."""
    update = model.operation_model("UpdateMembership").input_shape
    assert update is not None
    team = _member(update, "incidentResponseTeam")
    assert isinstance(team, ListShape)
    responder = team.member
    prefs = _member(responder, "communicationPreferences")
    assert isinstance(prefs, ListShape)
    features = _member(update, "optInFeatures")
    assert isinstance(features, ListShape)
    accounts = _member(update, "membershipAccountsConfigurationsUpdate")
    to_add = _member(accounts, "organizationalUnitsToAdd")
    assert isinstance(to_add, ListShape)
    batch = to_add.metadata.get("max")
    tag_input = model.operation_model("TagResource").input_shape
    assert tag_input is not None
    tag_map = _member(tag_input, "tags")
    assert isinstance(tag_map, MapShape)
    return Rules(
        membership_id=_string(_member(update, "membershipId")),
        membership_name=_string(_member(update, "membershipName")),
        responder_name=_string(_member(responder, "name")),
        job_title=_string(_member(responder, "jobTitle")),
        email=_string(_member(responder, "email")),
        communication_type=_string(prefs.member),
        feature_name=_string(_member(features.member, "featureName")),
        organizational_unit=_string(to_add.member),
        team_size=_size(team),
        features_size=_size(features),
        ou_batch_size=int(batch) if batch else 5,
        tag_key=_string(tag_map.key),
        tag_value=_string(tag_map.value),
        tags_size=SizeRule(tag_map.metadata.get("min"), tag_map.metadata.get("max")),
    )
