"""What an AccessDenied says about who denied the call, and what to check for it (pure).

AWS's AccessDenied message names the kind of policy that decided, in a
standard wording (IAM User Guide, "Troubleshoot access denied error
messages"): ``... with an explicit deny in a service control policy`` (an
explicit deny), or ``... because no permissions boundary allows the
security-ir:X action`` (an implicit one). The kinds are identity-based
policies, service control and resource control policies, permissions
boundaries, session policies, resource-based policies and VPC endpoint
policies.

Telling "allow security-ir:X in the function's role" to someone whose call
an SCP denied sends them to a role that already allows it. So the reason
keeps AWS's words for the kind and says what to check for that kind; only
an identity-based policy's implicit deny (or a message that names no kind,
which is the usual missing permission) prescribes adding the allow to the
role. Nothing else of the message is repeated: it also holds the role
session's ARN; an SCP or RCP's ARN is kept when AWS gives it, as it names
the policy to look at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The kinds AWS names, in its own words.
KINDS = (
    "service control policy",
    "resource control policy",
    "permissions boundary",
    "session policy",
    "resource-based policy",
    "identity-based policy",
    "VPC endpoint policy",
)
_KIND = "|".join(re.escape(k) for k in KINDS)
_ORG_POLICY = (
    r"arn:aws[a-z-]*:organizations::\d{12}:policy/o-[a-z0-9]{10,32}/"
    r"(?:service|resource)_control_policy/p-[0-9A-Za-z_]{8,128}"
)
_EXPLICIT = re.compile(
    rf"with an explicit deny in an? (?P<kind>{_KIND})(?::? (?P<arn>{_ORG_POLICY}))?"
)
_IMPLICIT = re.compile(rf"because no (?P<kind>{_KIND}) allows")
_EXPLICIT_ANY = re.compile(r"\bexplicit deny\b")


@dataclass(frozen=True)
class Denial:
    """Who denied the call, as far as AWS's message says."""

    #: One of ``KINDS``; "" when the message names none.
    kind: str = ""
    #: An explicit Deny (else no policy of ``kind`` allowed the call).
    explicit: bool = False
    #: The SCP or RCP that denied it, when AWS named it.
    policy_arn: str = ""

    def said(self, action: str) -> str:
        """AWS's wording of the deny, to follow the action in the reason ("" if none)."""
        if self.explicit and self.kind:
            article = "an" if self.kind[0] in "aeiou" else "a"
            named = f" ({self.policy_arn})" if self.policy_arn else ""
            return f" with an explicit deny in {article} {self.kind}{named}"
        if self.explicit:
            return " with an explicit deny"
        if self.kind:
            return f" because no {self.kind} allows the {action} action"
        return ""

    def check(self, action: str, account: str, resource: str, allow: str) -> str:
        """What to check for this kind of deny; ``allow`` is the fix for a missing allow.

        ``resource`` names what was called (``membership m-…``), for a
        resource-based policy.
        """
        if not self.explicit and self.kind in ("", "identity-based policy"):
            return allow
        organizations = (
            f"of AWS Organizations that apply to account {account} "
            "(on the account, its OUs and the root)"
        )
        where = {
            "service control policy": f"the service control policies {organizations}",
            "resource control policy": f"the resource control policies {organizations}",
            "permissions boundary": "the permissions boundary of the function's role",
            "session policy": "the session policy of the function's role session",
            "resource-based policy": f"the resource-based policy of {resource}",
            "VPC endpoint policy": (
                "the policy of the VPC endpoint the function reaches security-ir through"
            ),
            "identity-based policy": "the function's role",
            "": (
                "the function's role, its permissions boundary and the service control policies "
                f"that apply to account {account}"
            ),
        }[self.kind]
        wanted = f"a Deny of {action}" if self.explicit else f"one that allows {action}"
        return f"check {where} for {wanted}"


def read(message: str) -> Denial:
    """The kind of deny ``message`` (AccessDenied's) reports."""
    explicit = _EXPLICIT.search(message)
    if explicit is not None:
        return Denial(explicit["kind"], explicit=True, policy_arn=explicit["arn"] or "")
    implicit = _IMPLICIT.search(message)
    if implicit is not None:
        return Denial(implicit["kind"])
    return Denial(explicit=_EXPLICIT_ANY.search(message) is not None)
