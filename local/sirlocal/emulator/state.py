"""Memberships and the service's rules for changing them (pure functions).

Why: the business rules (strict OU add/remove, Terminated, undo of a
cancellation) are kept apart from faults and HTTP so they can be tested and
reused (the stateful test drives :func:`apply_update` directly).
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sirlocal.emulator.model import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    FieldViolation,
    _invalid,
    service_model,
    validate,
    validation_error,
)

# --------------------------------------------------------------------------- memberships


def _default_team() -> list[dict[str, Any]]:
    return [
        {"name": "Primary Responder", "jobTitle": "Security Lead", "email": "lead@example.com"},
        {"name": "Backup Responder", "jobTitle": "Engineer", "email": "backup@example.com"},
    ]


def new_membership(spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A complete membership (GetMembershipResponse fields) from a partial ``spec``.

    Defaults make seeding easy; the result is validated against the model's
    GetMembershipResponse shape so a bad seed fails loudly, not mid-test.
    """
    m: dict[str, Any] = copy.deepcopy(dict(spec or {}))
    membership_id = m.setdefault("membershipId", "m-" + secrets.token_hex(8))
    account = m.setdefault("accountId", DEFAULT_ACCOUNT)
    region = m.setdefault("region", DEFAULT_REGION)
    m.setdefault(
        "membershipArn", f"arn:aws:security-ir:{region}:{account}:membership/{membership_id}"
    )
    m.setdefault("membershipName", "emulated-membership")
    m.setdefault("membershipStatus", "Active")
    m.setdefault("customerType", "Organization")
    # The emulator does not model the accounts inside OUs: the count is the
    # seed's, or the management account alone.
    m.setdefault("numberOfAccountsCovered", 1)
    m.setdefault("membershipActivationTimestamp", round(time.time(), 3))
    if m["membershipStatus"] != "Active":
        m.setdefault("membershipDeactivationTimestamp", round(time.time(), 3))
    m.setdefault("incidentResponseTeam", _default_team())
    m.setdefault("optInFeatures", [{"featureName": "Triage", "isEnabled": True}])
    accounts = m.setdefault("membershipAccountsConfigurations", {})
    accounts.setdefault("coverEntireOrganization", False)
    accounts.setdefault("organizationalUnits", [])
    shape = service_model().operation_model("GetMembership").output_shape
    assert shape is not None
    problems = validate(shape, m)
    if problems:
        raise ValueError(
            "invalid membership seed: " + "; ".join(f"{p.name}: {p.message}" for p in problems)
        )
    return m


def _duplicates(values: Sequence[str]) -> list[int]:
    seen: set[str] = set()
    dupes = []
    for index, value in enumerate(values):
        if value in seen:
            dupes.append(index)
        seen.add(value)
    return dupes


def _apply_accounts(
    accounts: dict[str, Any], change: Mapping[str, Any], violations: list[FieldViolation]
) -> bool:
    """Apply ``membershipAccountsConfigurationsUpdate`` strictly; True if OUs or coverage changed."""
    prefix = "membershipAccountsConfigurationsUpdate"
    current: list[str] = list(accounts.get("organizationalUnits") or [])
    add: list[str] = list(change.get("organizationalUnitsToAdd") or [])
    remove: list[str] = list(change.get("organizationalUnitsToRemove") or [])
    for name, ous in (("organizationalUnitsToAdd", add), ("organizationalUnitsToRemove", remove)):
        for index in _duplicates(ous):
            violations.append(
                FieldViolation(f"{prefix}.{name}[{index}]", f"Duplicate OU {ous[index]}")
            )
    for index, ou in enumerate(add):
        if ou in remove:
            message = f"OU {ou} is in both organizationalUnitsToAdd and organizationalUnitsToRemove"
            violations.append(
                FieldViolation(f"{prefix}.organizationalUnitsToAdd[{index}]", message)
            )
        elif ou in current:
            message = f"OU {ou} is already associated with the membership"
            violations.append(
                FieldViolation(f"{prefix}.organizationalUnitsToAdd[{index}]", message)
            )
    for index, ou in enumerate(remove):
        if ou not in current and ou not in add:
            message = f"OU {ou} is not associated with the membership"
            violations.append(
                FieldViolation(f"{prefix}.organizationalUnitsToRemove[{index}]", message)
            )
    cover = accounts.get("coverEntireOrganization")
    if "coverEntireOrganization" in change:
        accounts["coverEntireOrganization"] = change["coverEntireOrganization"]
    accounts["organizationalUnits"] = [ou for ou in current if ou not in remove] + add
    return bool(add or remove) or accounts.get("coverEntireOrganization") != cover


def apply_update(
    current: Mapping[str, Any], request: Mapping[str, Any]
) -> tuple[dict[str, Any], bool]:
    """UpdateMembership on one membership: the new membership and whether its
    account configuration (OUs or coverage) changed.

    Pure (works on a copy) so a request applies all or nothing. Raises
    :class:`ServiceError` (ValidationException) for every rule it breaks.
    """
    if current["membershipStatus"] == "Terminated":
        raise _invalid("membershipId", "Membership is Terminated and can no longer be updated")
    updated = copy.deepcopy(dict(current))
    violations: list[FieldViolation] = []
    undo = request.get("undoMembershipCancellation")
    if undo is False:
        violations.append(
            FieldViolation("undoMembershipCancellation", "Member must be true when present")
        )
    elif undo is True and current["membershipStatus"] != "Cancelled":
        violations.append(
            FieldViolation("undoMembershipCancellation", "Membership is not Cancelled")
        )
    elif undo is True:
        updated["membershipStatus"] = "Active"
        updated.pop("membershipDeactivationTimestamp", None)
    if "membershipName" in request:
        updated["membershipName"] = request["membershipName"]
    if "incidentResponseTeam" in request:
        updated["incidentResponseTeam"] = copy.deepcopy(request["incidentResponseTeam"])
    if "optInFeatures" in request:
        names = [feature["featureName"] for feature in request["optInFeatures"]]
        for index in _duplicates(names):
            violations.append(FieldViolation(f"optInFeatures[{index}]", "Duplicate featureName"))
        merged = {f["featureName"]: dict(f) for f in updated.get("optInFeatures") or []}
        for feature in request["optInFeatures"]:
            merged[feature["featureName"]] = {
                "featureName": feature["featureName"],
                "isEnabled": feature["isEnabled"],
            }
        updated["optInFeatures"] = list(merged.values())
    accounts_changed = False
    change = request.get("membershipAccountsConfigurationsUpdate")
    if change is not None:
        accounts = updated.setdefault("membershipAccountsConfigurations", {})
        accounts_changed = _apply_accounts(accounts, change, violations)
    if violations:
        raise validation_error(violations)
    return updated, accounts_changed


def _as_membership_list(payload: Any) -> list[Mapping[str, Any]]:
    if isinstance(payload, dict) and isinstance(payload.get("memberships"), list):
        return list(payload["memberships"])
    if isinstance(payload, dict):
        return [payload]
    if isinstance(payload, list):
        return list(payload)
    raise ValueError("seed must be a membership, a list of them, or {'memberships': [...]}")


def load_seed(path: str | Path) -> list[Mapping[str, Any]]:
    """Memberships from a JSON seed file (see :meth:`SecurityIREmulator.seed_file`)."""
    return _as_membership_list(json.loads(Path(path).read_text(encoding="utf-8")))
