"""The membership as data: responders, features, and the state GetMembership reports.

These values are shared by the declared side (``properties``) and the actual
side (this module's ``MembershipState``), so the planner compares like with
like. Sensitive fields are kept out of ``repr`` so that a value printed in a
log or a traceback cannot leak a name, email, job title or membership name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["Active", "Cancelled", "Terminated"]


@dataclass(frozen=True)
class Responder:
    """One member of the incident response team.

    ``communication_preferences`` is ``None`` when not declared: the planner
    then ignores the actual preferences of that responder when comparing.
    """

    name: str = field(repr=False)
    job_title: str = field(repr=False)
    email: str = field(repr=False)
    communication_preferences: frozenset[str] | None = None

    @property
    def key(self) -> str:
        """Responders are identified by email, case-insensitively."""
        return self.email.lower()

    def to_api(self) -> dict[str, Any]:
        """The boto3 shape of this responder."""
        out: dict[str, Any] = {"name": self.name, "jobTitle": self.job_title, "email": self.email}
        if self.communication_preferences is not None:
            out["communicationPreferences"] = sorted(self.communication_preferences)
        return out


@dataclass(frozen=True)
class Feature:
    """An opt-in feature and whether it is enabled."""

    name: str
    enabled: bool

    def to_api(self) -> dict[str, Any]:
        """The boto3 shape of this feature."""
        return {"featureName": self.name, "isEnabled": self.enabled}


@dataclass(frozen=True)
class MembershipState:
    """What GetMembership says the membership is now."""

    membership_id: str
    arn: str = ""
    status: str = "Active"
    region: str = ""
    account_id: str = ""
    name: str | None = field(default=None, repr=False)
    team: tuple[Responder, ...] = ()
    features: tuple[Feature, ...] = ()
    cover_entire_organization: bool = False
    organizational_units: frozenset[str] = frozenset()
    #: ``Standalone`` or ``Organization`` (GetMembership's ``customerType``).
    customer_type: str = ""
    #: GetMembership's ``numberOfAccountsCovered``, as read: the service
    #: counts the accounts of the OUs, so this is the count before this
    #: request's own OU changes take effect.
    accounts_covered: int | None = None

    def feature_map(self) -> dict[str, bool]:
        """Features by name, for comparison."""
        return {f.name: f.enabled for f in self.features}

    def attributes(self) -> dict[str, str]:
        """The values returned to CloudFormation for ``Fn::GetAtt`` (none sensitive)."""
        return {
            "MembershipId": self.membership_id,
            "MembershipArn": self.arn,
            "MembershipStatus": self.status,
            "Region": self.region,
            "AccountId": self.account_id,
            "CustomerType": self.customer_type,
            "NumberOfAccountsCovered": (
                "" if self.accounts_covered is None else str(self.accounts_covered)
            ),
        }


def state_from_api(response: Mapping[str, Any]) -> MembershipState:
    """Parse a GetMembership response (boto3 output) into a ``MembershipState``."""
    accounts = response.get("membershipAccountsConfigurations") or {}
    return MembershipState(
        membership_id=str(response["membershipId"]),
        arn=str(response.get("membershipArn", "")),
        status=str(response.get("membershipStatus", "Active")),
        region=str(response.get("region", "")),
        account_id=str(response.get("accountId", "")),
        name=response.get("membershipName"),
        team=tuple(
            Responder(
                name=r["name"],
                job_title=r["jobTitle"],
                email=r["email"],
                communication_preferences=frozenset(r.get("communicationPreferences") or ()),
            )
            for r in response.get("incidentResponseTeam") or ()
        ),
        features=tuple(
            Feature(f["featureName"], bool(f["isEnabled"]))
            for f in response.get("optInFeatures") or ()
        ),
        cover_entire_organization=bool(accounts.get("coverEntireOrganization", False)),
        organizational_units=frozenset(accounts.get("organizationalUnits") or ()),
        customer_type=str(response.get("customerType") or ""),
        accounts_covered=_count(response.get("numberOfAccountsCovered")),
    )


def _count(value: Any) -> int | None:
    """A count GetMembership may leave out (``None``), never a bool."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
