"""Change-set preview and drift, as pure functions of documents.

A reviewer approving a change set needs to know which UpdateMembership calls
the function will make. The only way to be exact is not to plan here: each
resource change becomes the CloudFormation request the function will
receive, and goes through ``request.decide`` and ``Decision.plan``, the code
the function itself runs. What is left in this package is translation and
presentation, with no I/O, so it is tested with plain documents. Reading is
the shell's (``sir_membership.commands``); arguments are ``cli``'s.

One job per module:

* ``changeset``: DescribeChangeSet output as a value, and whether it is ready;
* ``selection``: which resource changes the function will be sent;
* ``delivery``: the requests CloudFormation sends for each change;
* ``declared``: the declaration's own before/after, masked;
* ``steps``: each request through the function's decision and planner;
* ``drift``: the deployed declaration against the live membership;
* ``template``: declared properties from a template and parameters;
* ``render_text`` / ``render_json`` / ``render_markdown``: output.

Nothing here puts a name, email, job title or membership name into a
message: values are masked unless a caller asks for them explicitly. The
Lambda handler imports none of it.
"""

from .base import (
    EXIT_CHANGES,
    EXIT_CODES,
    EXIT_ERROR,
    EXIT_OK,
    KNOWN_KEYS,
    PLACEHOLDER,
    PUBLIC_RESPONDER_KEYS,
    RESOURCE_TYPE,
    SENSITIVE_PROPERTIES,
    SEVERITY,
    PreviewError,
    Status,
    worst,
)
from .changeset import NOT_READY, ChangeSet, change_set_notes, check_ready, load_change_set
from .declared import DeclaredChange, declared_changes, mask_property
from .delivery import Delivery, deliveries, unresolved_paths
from .drift import Drift, assess_drift, never_a_membership
from .selection import Ignored, Selection, Target, select
from .steps import (
    OFFLINE_ASSUMED,
    OFFLINE_EMPTY,
    Lookup,
    Observed,
    Preview,
    ResourcePreview,
    Step,
    offline_lookup,
    preview,
    state_from_declaration,
)
from .template import Resolved, StackContext, parse_template, resolve_properties

__all__ = [
    "EXIT_CHANGES",
    "EXIT_CODES",
    "EXIT_ERROR",
    "EXIT_OK",
    "KNOWN_KEYS",
    "NOT_READY",
    "OFFLINE_ASSUMED",
    "OFFLINE_EMPTY",
    "PLACEHOLDER",
    "PUBLIC_RESPONDER_KEYS",
    "RESOURCE_TYPE",
    "SENSITIVE_PROPERTIES",
    "SEVERITY",
    "ChangeSet",
    "DeclaredChange",
    "Delivery",
    "Drift",
    "Ignored",
    "Lookup",
    "Observed",
    "Preview",
    "PreviewError",
    "Resolved",
    "ResourcePreview",
    "Selection",
    "StackContext",
    "Status",
    "Step",
    "Target",
    "assess_drift",
    "change_set_notes",
    "check_ready",
    "declared_changes",
    "deliveries",
    "load_change_set",
    "mask_property",
    "never_a_membership",
    "offline_lookup",
    "parse_template",
    "preview",
    "resolve_properties",
    "select",
    "state_from_declaration",
    "unresolved_paths",
    "worst",
]
