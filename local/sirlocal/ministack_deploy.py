"""Build and deploy the provider (template.yaml) on ministack as a user's ``sam deploy`` does.

Why: the demo and the end-to-end tests must run the package users get and
the template users deploy. So this runs ``sam build`` (the lean package:
src/Makefile, scripts/lean_package.py) and then ``sam deploy`` itself, with
its endpoint pointed at ministack: SAM packages the code to ministack's S3,
creates a change set with the SAM transform, the parameters and
``CAPABILITY_IAM``, and executes it.

One substitution, made on the built template and never in template.yaml:
ministack 1.5.33 has no ``AWS::IAM::RolePolicy``. Each such resource is
deployed as the older ``AWS::IAM::Policy`` naming the same role, policy name
and document: the same inline policy on the same role. (Changing
template.yaml instead would be wrong for users: ``AWS::IAM::Policy`` has no
drift detection, and AWS recommends ``AWS::IAM::RolePolicy``.) The resources
are the table key's policies, one per role that reads or writes the table;
they exist only with ``KmsKeyArn``, so a deploy without a key creates none.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sirlocal.ministack import REPO_ROOT, LocalAWS

TEMPLATE = REPO_ROOT / "template.yaml"
FUNCTION_ID = "MembershipFunction"
#: The engine's state machine (issue 18); its Work and Answer functions.
STATE_MACHINE_ID = "MembershipStateMachine"
PROVIDER_STACK = "sir-membership-provider"
ARTIFACT_BUCKET = "sir-membership-artifacts"
#: Seconds between sam's stack checks (its default, 5, would dominate a local deploy).
SAM_POLL_DELAY = "0.2"


class DeployError(RuntimeError):
    """A build or deploy step failed; the message ends with the tool's output."""


@dataclass(frozen=True)
class Substitution:
    """One resource deployed as another type, and why (for docs/local.md and the demo)."""

    logical_id: str
    declared: str
    deployed: str
    why: str


def substitute_unsupported(
    template: Mapping[str, Any],
) -> tuple[dict[str, Any], tuple[Substitution, ...]]:
    """The template with every ``AWS::IAM::RolePolicy`` as ``AWS::IAM::Policy`` (pure)."""
    resources = dict(template.get("Resources") or {})
    done = []
    for logical_id, resource in sorted(resources.items()):
        if not isinstance(resource, Mapping) or resource.get("Type") != "AWS::IAM::RolePolicy":
            continue
        properties = dict(resource.get("Properties") or {})
        role = properties.pop("RoleName")
        resources[logical_id] = {
            **resource,
            "Type": "AWS::IAM::Policy",
            "Properties": {**properties, "Roles": [role]},
        }
        done.append(
            Substitution(
                logical_id,
                "AWS::IAM::RolePolicy",
                "AWS::IAM::Policy",
                "ministack 1.5.33 has no AWS::IAM::RolePolicy; the same inline policy on the "
                "same role",
            )
        )
    return {**template, "Resources": resources}, tuple(done)


def python313() -> str:
    """A Python 3.13 (sam build needs ``python3.13`` for Runtime python3.13)."""
    if sys.version_info[:2] == (3, 13):
        candidate = Path(sys.base_prefix, "bin", "python3.13")
        if candidate.exists():
            return str(candidate)
    found = shutil.which("python3.13")
    if found is None:
        raise DeployError("no python3.13 found: sam build needs it for Runtime python3.13")
    return found


def _run(argv: Sequence[str], env: Mapping[str, str], what: str, cwd: Path = REPO_ROOT) -> str:
    done = subprocess.run(
        list(argv), env=dict(env), cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise DeployError(
            f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return done.stdout


def build_inputs(root: Path = REPO_ROOT) -> list[Path]:
    """What ``sam build`` reads: the template, src/, the packager and the state machine's
    definition (``DefinitionUri``, which ``sam deploy`` uploads from the built template)."""
    sources = [
        p
        for folder in ("src", "statemachine")
        if (root / folder).is_dir()
        for p in (root / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    return sorted([root / "template.yaml", root / "scripts" / "lean_package.py", *sources])


def inputs_digest(paths: Sequence[Path], root: Path = REPO_ROOT, extra: str = "") -> str:
    """One hash of the paths and contents (the build is reproducible: same inputs, same zip)."""
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def sam_build(sam: str, build_dir: Path, template: Path = TEMPLATE) -> Path:
    """``sam build``, skipped when its inputs are those of the last build in ``build_dir``.

    SAM's own ``--cached`` always rebuilds a makefile-built function (it looks
    for a dependency folder such builds never have); the lean package is
    reproducible (scripts/check-artifact.sh), so the same inputs give the same
    package and the previous build can be reused.
    """
    interpreter = python313()
    stamp = build_dir / ".sirlocal-inputs"
    digest = inputs_digest(build_inputs(), extra=f"{sam} {interpreter}")
    built = build_dir / "template.yaml"
    app = build_dir / FUNCTION_ID / "sir_membership" / "app.py"
    if built.is_file() and app.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return built
    env = dict(os.environ, SAM_CLI_TELEMETRY="0")
    env["PATH"] = f"{Path(interpreter).parent}{os.pathsep}{env.get('PATH', '')}"
    _run(
        [
            sam, "build", "--template-file", str(template), "--build-dir", str(build_dir),
        ],
        env,
        "sam build",
    )  # fmt: skip
    if not app.is_file():
        raise DeployError(f"sam build left no {FUNCTION_ID}/sir_membership/app.py in {build_dir}")
    stamp.write_text(digest)
    return built


def deploy_template(built: Path) -> tuple[Path, tuple[Substitution, ...]]:
    """The built template with the substitutions, beside it (its CodeUri is relative)."""
    document = yaml.safe_load(built.read_text(encoding="utf-8"))
    substituted, done = substitute_unsupported(document)
    target = built.with_name("ministack-template.yaml")
    target.write_text(yaml.safe_dump(substituted, sort_keys=False), encoding="utf-8")
    return target, done


def parameter_overrides(parameters: Mapping[str, str]) -> list[str]:
    """``Key=Value`` pairs for ``--parameter-overrides``, in a stable order."""
    return [f"{key}={value}" for key, value in sorted(parameters.items())]


@dataclass(frozen=True)
class Provider:
    """The deployed provider stack."""

    stack_name: str
    outputs: Mapping[str, str]
    substitutions: tuple[Substitution, ...]
    build_seconds: float
    deploy_seconds: float
    #: Each resource's physical id by logical id (the state machine's ARN, the functions' names).
    resources: Mapping[str, str] = field(default_factory=dict)

    @property
    def state_machine_arn(self) -> str:
        """The engine's state machine (``MembershipStateMachine``), or "" without one."""
        return self.resources.get(STATE_MACHINE_ID, "")

    @property
    def service_token(self) -> str:
        """The function's ARN (the stack's ServiceToken output)."""
        return self.outputs["ServiceToken"]

    @property
    def function_name(self) -> str:
        """The provider function's name."""
        return self.outputs["FunctionName"]


def deploy_provider(
    aws: LocalAWS,
    *,
    sam: str,
    parameters: Mapping[str, str],
    build_dir: Path,
    stack_name: str = PROVIDER_STACK,
) -> Provider:
    """``sam build`` then ``sam deploy`` of template.yaml on ``aws``; returns the outputs."""
    began = time.monotonic()
    sam = str(Path(sam).absolute()) if os.sep in sam else sam
    built = sam_build(sam, build_dir.absolute())
    template, done = deploy_template(built)
    built_at = time.monotonic()
    s3 = aws.client("s3")
    if ARTIFACT_BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    env = {**aws.tool_env(), "SAM_CLI_POLL_DELAY": SAM_POLL_DELAY}
    _run(
        [
            sam, "deploy", "--template-file", str(template), "--stack-name", stack_name,
            "--s3-bucket", ARTIFACT_BUCKET, "--capabilities", "CAPABILITY_IAM",
            "--no-confirm-changeset", "--no-fail-on-empty-changeset", "--region", aws_region(aws),
            "--parameter-overrides", *parameter_overrides(parameters),
        ],
        env,
        "sam deploy",
        # Not the repository: its samconfig.toml asks for --resolve-s3 (a managed bucket stack).
        cwd=template.parent,
    )  # fmt: skip
    cfn = aws.client("cloudformation")
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    resources = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name)
        for r in page["StackResourceSummaries"]
    }
    return Provider(
        stack_name, outputs, done, built_at - began, time.monotonic() - built_at, resources
    )


def aws_region(aws: LocalAWS) -> str:
    """The region every client of ``aws`` uses."""
    return str(aws.client("cloudformation").meta.region_name)
