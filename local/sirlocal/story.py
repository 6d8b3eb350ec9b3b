"""How a demo story is shown and checked: membership states, differences, results.

Why: both demos (on ministack, :mod:`sirlocal.ministack_demo`, and on the
project's own driver, :mod:`sirlocal.demo`) print the membership before and
after each step and check what the step promised, and must never print a
name, email, job title or membership name. Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sirlocal.fixtures import mask


@dataclass
class ChapterResult:
    """How one chapter went; ``problems`` empty means every check held."""

    title: str
    expect_status: str
    status: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the status and every state check held."""
        return not self.problems


def _ou_ranges(ids: Sequence[str]) -> str:
    """OU ids compacted: ``ou-e2e1-00000008..00000020 (13)``; ids are not sensitive."""
    groups: list[list[str]] = []
    for value in sorted(ids):
        prefix, _, number = value.rpartition("-")
        last = groups[-1][-1] if groups else ""
        last_prefix, _, last_number = last.rpartition("-")
        if (
            groups
            and prefix == last_prefix
            and number.isdigit()
            and last_number.isdigit()
            and int(number) == int(last_number) + 1
        ):
            groups[-1].append(value)
        else:
            groups.append([value])
    parts = []
    for group in groups:
        if len(group) == 1:
            parts.append(group[0])
        else:
            parts.append(f"{group[0]}..{group[-1].rpartition('-')[2]} ({len(group)})")
    return ", ".join(parts) or "none"


def _ous(state: Mapping[str, Any]) -> list[str]:
    accounts = state.get("membershipAccountsConfigurations") or {}
    return list(accounts.get("organizationalUnits") or [])


def describe_state(state: Mapping[str, Any]) -> list[str]:
    """The membership as lines, every sensitive value masked."""
    accounts = state.get("membershipAccountsConfigurations") or {}
    team = state.get("incidentResponseTeam") or []
    people = ", ".join(
        f"{mask(r.get('name'))} / {mask(r.get('jobTitle'))} / {mask(r.get('email'))}" for r in team
    )
    features = ", ".join(
        f"{f['featureName']} {'on' if f['isEnabled'] else 'off'}"
        for f in state.get("optInFeatures") or []
    )
    ou_ids = _ous(state)
    return [
        f"id {state.get('membershipId')}, status {state.get('membershipStatus')}",
        f"name: {mask(state.get('membershipName'))}",
        f"team: {len(team)} responders (name / job title / email): {people}",
        f"opt-in features: {features or 'none'}; cover entire organization: "
        f"{bool(accounts.get('coverEntireOrganization'))}",
        f"OUs ({len(ou_ids)}): {_ou_ranges(ou_ids)}",
    ]


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """What differs between two states, as field names and OU counts (no values)."""
    out = []
    for key, label in (
        ("membershipName", "name"),
        ("membershipStatus", "status"),
        ("incidentResponseTeam", "team"),
        ("optInFeatures", "features"),
    ):
        if before.get(key) != after.get(key):
            out.append(label)
    old, new = set(_ous(before)), set(_ous(after))
    if old != new:
        out.append(f"OUs +{len(new - old)} -{len(old - new)}")
    return ", ".join(out) or "nothing"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with any sensitive value masked (reasons should hold none; this makes sure)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, mask(secret))
    return text


def comparable(state: Mapping[str, Any]) -> dict[str, Any]:
    """A state with its lists in a canonical order (the service does not promise an order)."""
    out = dict(state)
    accounts = dict(out.get("membershipAccountsConfigurations") or {})
    accounts["organizationalUnits"] = sorted(accounts.get("organizationalUnits") or [])
    out["membershipAccountsConfigurations"] = accounts
    out["incidentResponseTeam"] = sorted(
        out.get("incidentResponseTeam") or [], key=lambda r: str(r.get("email", "")).lower()
    )
    return out


def restored_problems(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """How ``after`` differs from ``before`` (field names and OU ids only)."""
    if comparable(before) == comparable(after):
        return []
    out = []
    differing = changes(before, after)
    old, new = set(_ous(before)), set(_ous(after))
    if new - old:
        out.append(f"still associated: {_ou_ranges(sorted(new - old))}")
    if old - new:
        out.append(f"missing: {_ou_ranges(sorted(old - new))}")
    detail = f" ({'; '.join(out)})" if out else ""
    return [
        f"after the rollback the membership differs from before the step in: {differing}{detail}"
    ]


def indent(lines: Sequence[str] | str, prefix: str = "    ") -> str:
    if isinstance(lines, str):
        lines = lines.splitlines()
    return "\n".join(prefix + line for line in lines)


def summary(results: Sequence[ChapterResult]) -> list[str]:
    """The closing lines: one per check, then the verdict."""
    lines = ["", "Summary:"]
    for r in results:
        mark = "ok  " if r.ok else "FAIL"
        lines.append(f"  {mark} {r.title}: {r.status} (expected {r.expect_status})")
        lines += [f"         {p}" for p in r.problems]
    failed = [r for r in results if not r.ok]
    lines.append(
        "All steps ended as expected."
        if not failed
        else f"{len(failed)} of {len(results)} checks failed (see above)."
    )
    return lines
