"""Values the table's sections share: names, OU sets, declarations, a steps helper.

Why apart: every section of the table (``table_*.py``) and the bad inputs
read them; one definition keeps the expectations of all the sections alike.
"""

from __future__ import annotations

from collections.abc import Iterable

from sirlocal.fixtures import FOREIGN, NAMES, PEOPLE, Expect, declare, ou, ous, team
from sirlocal.scenarios.model import Step

N0, N1 = NAMES[0], NAMES[1]
BASE_OUS = frozenset({ou(1), ou(2), FOREIGN[0]})
TRIAGE_ON = {"Triage": True}
TRIAGE_OFF = {"Triage": False}
SEEDED_EMAILS = frozenset(p[2] for p in PEOPLE[0:2])


def as_seeded_untriaged(ou_ids: Iterable[str]) -> Expect:
    """``seed(triage=False)`` with ``ou_ids``: its name, its team, Triage off."""
    return Expect(ous=frozenset(ou_ids), name=N0, emails=SEEDED_EMAILS, features=TRIAGE_OFF)


#: Only MembershipId and OUs: name, team and features are not managed.
UNDECLARED = declare(
    MembershipName=None, IncidentResponseTeam=None, OptInFeatures=None, OrganizationalUnits=[ou(1)]
)
#: UNDECLARED, now declaring a new name, another team, Triage on and 7 more OUs.
NEWLY_DECLARED = declare(
    MembershipName=N1,
    IncidentResponseTeam=team(1, 3),
    OptInFeatures=[{"FeatureName": "Triage", "IsEnabled": True}],
    OrganizationalUnits=ous(1, 8),
)


def steps(*each: Step) -> tuple[Step, ...]:
    """The steps of a scenario, in order (a tuple, as the model wants)."""
    return each
