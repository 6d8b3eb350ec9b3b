"""The installable CLI: build the wheel, install it into a fresh virtualenv, run it.

What a user gets from ``pip install .`` (or ``pipx install``) must behave
exactly as the in-tree CLI. Offline and fast: the wheel is built with the
pinned setuptools of the dev environment (``--no-build-isolation
--no-index``), installed with ``--no-index --no-deps`` into a virtualenv with
no packages, and given exactly its declared runtime requirements (resolved
from the wheel's own metadata, their files linked from the dev
environment's pinned copies), so an undeclared import fails here.
"""

from __future__ import annotations

import email
import importlib.metadata
import io
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from email.message import Message
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import sir_membership
from sir_membership import cli

ROOT = Path(__file__).parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
#: What a source distribution of the package holds: nothing else is needed to build it.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "src/sir_membership")


def _pip(*args: str, cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def _wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


def _closure(requirements: list[str]) -> list[importlib.metadata.Distribution]:
    """The declared requirements (no extras) and theirs, as installed in the dev environment."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = requirement.name.lower().replace("_", "-")
        if key in seen:
            continue
        dist = importlib.metadata.distribution(requirement.name)
        assert requirement.specifier.contains(dist.version, prereleases=True), (
            f"{requirement} is not met by the pinned {dist.version}"
        )
        seen[key] = dist
        pending += [Requirement(r) for r in dist.requires or ()]
    return list(seen.values())


def _link_distribution(dist: importlib.metadata.Distribution, site: Path) -> None:
    """The distribution's top-level files and folders, linked into ``site``."""
    tops = {
        Path(str(f)).parts[0]
        for f in dist.files or ()
        if not str(f).startswith("..") and Path(str(f)).parts[0] != "__pycache__"
    }
    for top in tops:
        source = Path(str(dist.locate_file(top)))
        if source.exists() and not (site / top).exists():
            (site / top).symlink_to(source)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of exactly the package's sources."""
    work = tmp_path_factory.mktemp("build")
    tree = work / "tree"
    for name in SOURCES:
        source, target = ROOT / name, tree / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    dist = work / "dist"
    _pip("wheel", "--no-build-isolation", "--no-index", "--no-deps", "-w", str(dist), ".", cwd=tree)
    (wheel,) = dist.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and its declared runtime requirements only."""
    env = tmp_path_factory.mktemp("venv") / "fresh"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    _pip("--python", str(python), "install", "--no-index", "--no-deps", str(built), cwd=env)
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for dist in _closure(_wheel_metadata(built).get_all("Requires-Dist") or []):
        _link_distribution(dist, site)
    _pip("--python", str(python), "check", cwd=env)
    return env


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH: only what the virtualenv holds can be imported."""
    return {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=_clean_env(), capture_output=True, text=True, check=False
    )


def _in_tree(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_the_wheel_declares_the_cli_and_its_requirements(built: Path) -> None:
    metadata = _wheel_metadata(built)
    assert metadata["Name"] == "sir-membership"
    assert metadata["Version"] == sir_membership.__version__
    assert metadata["License-Expression"] == "Apache-2.0"
    requires = metadata.get_all("Requires-Dist") or []
    assert [Requirement(r).name for r in requires if "extra" not in r] == ["boto3"]
    assert metadata.get_all("Provides-Extra") == ["yaml"]
    assert [Requirement(r).name for r in requires if 'extra == "yaml"' in r] == ["PyYAML"]
    with zipfile.ZipFile(built) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "sir-membership = sir_membership.cli:main" in archive.read(entry_points).decode()
    assert {n.split("/")[0] for n in names} == {
        "sir_membership",
        f"sir_membership-{sir_membership.__version__}.dist-info",
    }
    assert "sir_membership/preview/render_text.py" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)


def test_the_installed_package_is_the_wheels_not_the_checkout(installed: Path) -> None:
    done = _run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import sir_membership; print(sir_membership.__file__)",
        ],
        installed,
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed)


@pytest.mark.parametrize("output", [[], ["--json"]])
@pytest.mark.parametrize("name", ["modify", "replacement"])
def test_the_installed_command_plans_as_the_checkout_does(
    installed: Path, name: str, output: list[str]
) -> None:
    argv = [
        "plan",
        "--change-set-file",
        str(FIXTURES / "changesets" / f"{name}.json"),
        "--state-file",
        str(FIXTURES / "states" / f"{name}.json"),
        *output,
    ]
    expected = _in_tree(argv)
    assert expected[0] == cli.EXIT_CHANGES  # the fixtures plan calls: a real comparison
    done = _run([str(installed / "bin" / "sir-membership"), *argv], installed)
    assert (done.returncode, done.stdout, done.stderr) == expected


def test_the_installed_command_reports_its_version(installed: Path) -> None:
    done = _run([str(installed / "bin" / "sir-membership"), "--version"], installed)
    assert (done.returncode, done.stdout) == (0, f"sir-membership {sir_membership.__version__}\n")


def test_python_dash_m_works_from_the_installed_package(installed: Path) -> None:
    argv = ["plan", "--change-set-file", str(FIXTURES / "changesets" / "no-change.json")]
    argv += ["--state-file", str(FIXTURES / "states" / "no-change.json")]
    done = _run([str(installed / "bin" / "python"), "-m", "sir_membership", *argv], installed)
    assert (done.returncode, done.stdout, done.stderr) == _in_tree(argv)


def test_the_function_only_dependencies_are_not_installed(installed: Path) -> None:
    """The CLI runs without crhelper or Powertools: the check above is not vacuous."""
    code = (
        "import importlib.util as u; print(u.find_spec('crhelper'), u.find_spec('boto3') is None)"
    )
    done = _run([str(installed / "bin" / "python"), "-c", code], installed)
    assert done.stdout.split() == ["None", "False"]
