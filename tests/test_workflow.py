"""examples/ci/github-actions.yml: its shell steps do what its comments say.

The schema check (``make workflow-lint``, check-jsonschema's
vendor.github-workflows) proves the file is a valid workflow; these run the
steps' scripts with stand-ins for ``sam`` and ``sir-membership``, so a
changed exit code or a missed change-set ARN fails here, not in a user's CI.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOW = Path(__file__).parent.parent / "examples" / "ci" / "github-actions.yml"
ARN = (
    "arn:aws:cloudformation:us-east-1:123456789012:changeSet/samcli-deploy1764650000/"
    "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
)


def workflow() -> Any:
    return yaml.safe_load(WORKFLOW.read_text())


def step(step_id: str) -> dict[str, Any]:
    (found,) = [s for s in workflow()["jobs"]["plan"]["steps"] if s.get("id") == step_id]
    return dict(found)


def stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def run_step(
    script: str, tmp_path: Path, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """As GitHub runs it: bash -eo pipefail, outputs appended to $GITHUB_OUTPUT."""
    assert "${{" not in script, "values reach scripts through env:, never inline"
    outputs = tmp_path / "github_output"
    outputs.touch()
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=tmp_path,
        env={
            **os.environ,
            "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
            "GITHUB_OUTPUT": str(outputs),
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    values = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    return done, values


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    (tmp_path / "bin").mkdir()
    return tmp_path / "bin"


def test_the_workflow_runs_on_pull_requests_with_bash_and_pipefail() -> None:
    document = workflow()
    assert "pull_request" in document[True]  # YAML 1.1 reads the key `on` as True
    assert document["defaults"]["run"]["shell"] == "bash"
    assert document["permissions"]["pull-requests"] == "write"


@pytest.mark.parametrize(
    ("printed", "expected"),
    [
        (f"Waiting for changeset to be created..\nChangeset created successfully. {ARN}\n", ARN),
        ("No changes to deploy. Stack sir-membership is up to date\n", ""),
    ],
)
def test_the_change_set_step_finds_the_arn_and_never_executes(
    tmp_path: Path, bin_dir: Path, printed: str, expected: str
) -> None:
    stub(bin_dir, "sam", f'echo "$@" > sam.args\nprintf %s "{printed}"\n')
    done, outputs = run_step(
        step("changeset")["run"], tmp_path, {"STACK_NAME": "s", "TEMPLATE": "t.yaml"}
    )
    assert done.returncode == 0, done.stderr
    assert outputs == {"arn": expected}
    args = (tmp_path / "sam.args").read_text().split()
    assert "--no-execute-changeset" in args
    assert "--no-fail-on-empty-changeset" in args


@pytest.mark.parametrize("code", [0, 1, 2])
def test_the_plan_step_reads_exit_2_as_changes_not_a_failure(
    tmp_path: Path, bin_dir: Path, code: int
) -> None:
    stub(
        bin_dir,
        "sir-membership",
        f'echo "$@" > cli.args\necho "### preview"\n'
        f'[ {code} -eq 1 ] && echo "sir-membership: error: it broke" >&2\nexit {code}\n',
    )
    done, outputs = run_step(step("plan")["run"], tmp_path, {"CHANGE_SET": ARN})
    assert done.returncode == 0, done.stderr  # the step itself never fails the job
    assert outputs == {"status": str(code)}
    assert (tmp_path / "cli.args").read_text().split() == [
        "plan",
        "--change-set-name",
        ARN,
        "--format",
        "markdown",
    ]
    comment = (tmp_path / "plan.md").read_text()
    assert comment.startswith("### preview\n")
    assert ("it broke" in comment) == (code == 1)
    # Only a status other than 0 and 2 fails the job, in the last step.
    (last,) = [s for s in workflow()["jobs"]["plan"]["steps"] if "exit 1" in s.get("run", "")]
    assert last["if"] == (
        "steps.plan.outputs.status != '' && steps.plan.outputs.status != '0' && "
        "steps.plan.outputs.status != '2'"
    )


@pytest.mark.parametrize("verdict", [0, 1])
def test_the_guardrails_step_passes_the_stacks_parameters_and_fails_on_a_violation(
    verdict: int, tmp_path: Path, bin_dir: Path
) -> None:
    stub(
        bin_dir,
        "sir-membership",
        'printf "%s\\n" "$@" > args.txt\ncat "${7#file://}" > seen-parameters.json\n'
        f'echo "### sir-membership guardrails"\nexit {verdict}\n',
    )
    stub(bin_dir, "git", "exit 128\n")  # no base branch to compare with
    (tmp_path / "samconfig.toml").write_text(
        'version = 0.1\n[default.deploy.parameters]\nparameter_overrides = "Id=m-abcdef0123 '
        'Name=\\"two words\\""\n'
    )
    summary = tmp_path / "summary.md"
    done, _ = run_step(
        step("guardrails")["run"],
        tmp_path,
        {
            "TEMPLATE": "membership.yaml",
            "STACK_NAME": "sir-membership",
            "BASE_REF": "main",
            "MEMBERSHIP_ID": "m-abcdef0123",
            "GITHUB_STEP_SUMMARY": str(summary),
        },
    )
    assert done.returncode == verdict, done.stderr
    args = (tmp_path / "args.txt").read_text().split("\n")
    assert args[:8] == [
        "check",
        "--template-file",
        "membership.yaml",
        "--stack-name",
        "sir-membership",
        "--parameters",
        "file://parameters.json",
        "--membership-id",
    ]
    assert json.loads((tmp_path / "seen-parameters.json").read_text()) == {
        "Id": "m-abcdef0123",
        "Name": "two words",
    }
    assert summary.read_text() == "### sir-membership guardrails\n"
