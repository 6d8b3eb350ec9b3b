"""The CLI's imperative shell: the reads behind ``plan`` and ``drift``.

Only reads (DescribeChangeSet, GetTemplate, DescribeStacks,
DescribeStackResources, GetMembership), never a write. Each command returns
values for ``sir_membership.preview``'s renderers; argument handling is
``cli``'s. The Lambda handler imports none of this.
"""

from .aws import (
    CLOUDFORMATION_CONFIG,
    FUNCTION_CONFIG,
    READ_BUDGET_SECONDS,
    Clients,
    CliError,
    default_clients,
    one_line,
)
from .drift import DriftReport, run_drift, run_drift_offline
from .plan import PlanReport, run_plan

__all__ = [
    "CLOUDFORMATION_CONFIG",
    "FUNCTION_CONFIG",
    "READ_BUDGET_SECONDS",
    "CliError",
    "Clients",
    "DriftReport",
    "PlanReport",
    "default_clients",
    "one_line",
    "run_drift",
    "run_drift_offline",
    "run_plan",
]
