"""The package's layout: the Lambda handler loads no CLI code, and modules stay small."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "src" / "sir_membership"
#: The CLI's modules: the function never needs them, so a cold start must not pay for them.
CLI_ONLY = (
    "sir_membership.preview",
    "sir_membership.cli",
    "sir_membership.commands",
    "sir_membership.guardrails",
)


def _modules_after_import(module: str) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT / "src"),
        AWS_DEFAULT_REGION="us-east-1",
        IDEMPOTENCY_TABLE_NAME="x",
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_the_lambda_handler_imports_none_of_the_preview() -> None:
    loaded = _modules_after_import("sir_membership.app")
    assert "sir_membership.app" in loaded
    assert "sir_membership.plan" in loaded  # the check sees the package's modules
    leaked = [m for m in loaded if m.startswith(CLI_ONLY)]
    assert leaked == []


def test_the_check_sees_the_preview_when_it_is_imported() -> None:
    """The subprocess check can fail: importing the CLI loads exactly those modules."""
    loaded = _modules_after_import("sir_membership.cli")
    assert {"sir_membership.preview", "sir_membership.cli", "sir_membership.commands"} <= set(
        loaded
    )


def test_no_module_of_the_package_is_over_500_lines() -> None:
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert len(sizes) > 20
    assert {name: n for name, n in sizes.items() if n > 500} == {}
