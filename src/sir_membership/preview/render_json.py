"""The preview and drift as JSON documents (``--format json``), for scripts.

The document's ``status`` decides the exit code; values are masked unless
``show`` (``--show-sensitive``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .drift import Drift, drift_status
from .labels import api
from .steps import Preview, Step
from .template import StackContext


def step_json(step: Step, show: bool) -> dict[str, Any]:
    """One request, its outcome and its calls."""
    plan = step.plan
    return {
        "requestType": step.request.request_type,
        "physicalResourceId": step.request.physical_id,
        "membershipId": step.membership_id,
        "cleanup": step.cleanup,
        "replacement": step.replacement,
        "status": step.status,
        "reason": step.reason,
        "stateSource": step.source,
        "changes": [{"property": c.property, "detail": c.detail} for c in plan.changes]
        if plan
        else [],
        "organizationalUnitsToAdd": list(plan.ous_to_add) if plan else [],
        "organizationalUnitsToRemove": list(plan.ous_to_remove) if plan else [],
        "requests": [api(r, show) for r in step.requests],
        "tagSource": step.tag_source,
        "tagChanges": [
            {"key": c.key, "before": c.before, "after": c.after}
            for c in (step.tag_plan.changes if step.tag_plan else ())
        ],
        "tagRequests": [{"operation": c.operation, **c.to_api()} for c in step.tag_calls],
        **(
            {"pace": {"seconds": step.pace.window, "source": step.pace_source}}
            if step.pace is not None and step.pace.window is not None
            else {}
        ),
    }


def plan_json(result: Preview, source: str, show: bool) -> dict[str, Any]:
    """The whole preview: change set, resources, every call in order, what was ignored."""
    cs = result.change_set
    return {
        "command": "plan",
        "status": result.status,
        "changeSet": {
            "name": cs.name,
            "stackName": cs.stack_name,
            "stackId": cs.stack_id,
            "status": cs.status,
            "executionStatus": cs.execution_status,
        },
        "stateSource": source,
        "notes": list(result.notes),
        "resources": [
            {
                "logicalId": r.target.logical_id,
                "resourceType": r.target.resource_type,
                "action": r.target.action,
                "physicalResourceId": r.target.physical_id,
                "replacement": any(s.replacement for s in r.steps),
                "cloudFormationReplacement": r.target.replacement,
                "policyAction": r.target.policy_action,
                "status": r.status,
                "notes": list(r.notes),
                "declaredChanges": [c.to_json(show) for c in r.declared],
                "steps": [step_json(s, show) for s in r.steps],
            }
            for r in result.resources
        ],
        "updateMembershipRequests": [api(r, show) for r in result.requests],
        "tagRequests": [{"operation": c.operation, **c.to_api()} for c in result.tag_calls],
        "ignored": [
            {
                "logicalId": i.logical_id,
                "resourceType": i.resource_type,
                "action": i.action,
                "customResource": i.custom,
            }
            for i in result.ignored
        ],
    }


def drift_resource_json(drift: Drift, show: bool) -> dict[str, Any]:
    """One resource's drift and the calls that would restore its declaration."""
    return {
        "logicalId": drift.logical_id,
        "physicalResourceId": drift.physical_id,
        "status": drift.status,
        "reason": drift.reason,
        "differences": [{"property": c.property, "detail": c.detail} for c in drift.differences],
        "organizationalUnitsNotAssociated": list(drift.ous_missing),
        "organizationalUnitsOutsideStack": list(drift.ous_outside),
        "notes": list(drift.notes),
        "requests": [api(r, show) for r in drift.requests],
        "tagRequests": [{"operation": c.operation, **c.to_api()} for c in drift.tag_calls],
    }


def drift_json(context: StackContext, reports: Sequence[Drift], show: bool) -> dict[str, Any]:
    """Every selected resource's drift."""
    return {
        "command": "drift",
        "status": drift_status(reports),
        "stackName": context.stack_name,
        "stackId": context.stack_id,
        "resources": [drift_resource_json(d, show) for d in reports],
    }
