"""CloudFormation custom resource for AWS Security Incident Response memberships.

The package is split into a functional core and an imperative shell:

* core (pure, no I/O): ``properties`` (declared properties -> typed value),
  ``membership`` (GetMembership output -> typed value), ``plan`` (both -> the
  fewest UpdateMembership requests), ``tags`` (declared + actual tags -> the
  TagResource/UntagResource calls, with before-values), ``request`` (a CloudFormation request ->
  which membership to read and how to plan), ``service_model`` (rules read
  from botocore's model), ``errors`` (failures as values).
* shell: ``service`` (security-ir calls with retries inside the deadline),
  ``response`` (the one answer to CloudFormation), ``resource`` (one event ->
  one outcome), ``app`` (Lambda handler: crhelper, Powertools).
* the CLI (``sir-membership``; never imported by the handler): ``preview``
  (pure: change sets and drift -> what the function will do, rendered as
  text, JSON or markdown), ``commands`` (its reads), ``cli`` (arguments).
"""

#: The package's one version: the wheel's, ``sir-membership --version``'s and
#: the Serverless Application Repository's (template.yaml SemanticVersion).
__version__ = "0.2.0"
