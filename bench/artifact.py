"""Size of the deployable function package: the lean ``sam build`` and the old way.

The function is built with ``sam build`` into ``bench/.work/sam-build`` (a
fresh, cache-free build of the current tree: src/Makefile, i.e.
scripts/lean_package.py). If that fails, a ``.aws-sam/build/MembershipFunction``
newer than every source file is used instead. The old way (what ``sam build``
made before: the requirements and ``src/`` copied, no pruning, no bytecode)
is built in the same run with ``lean_package.py build --plain``, so both
sizes and both cold starts (coldstart.py) come from the same inputs. Zipped
sizes are of ``lean_package.write_zip`` (sorted, deflate level 9): what
Lambda's 50 MB direct-upload limit is about; the unzipped size is what its
250 MB limit is about.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from coldstart import base_python
from common import REPO_ROOT, SRC_DIR, WORK_DIR, log

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import lean_package

#: The issue's goal for the zipped package.
GOAL_ZIPPED_BYTES = 3_000_000
FUNCTION_ID = "MembershipFunction"
TEMPLATE = REPO_ROOT / "template.yaml"


def _files(root: Path, caches: bool = False) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and (caches or "__pycache__" not in p.parts)]


def _newest_source() -> float:
    sources = [*_files(SRC_DIR), TEMPLATE]
    return max(p.stat().st_mtime for p in sources)


def sam_build(sam: str) -> tuple[Path, float]:
    """``sam build`` into the bench's scratch directory; (function dir, seconds)."""
    build_dir = WORK_DIR / "sam-build"
    shutil.rmtree(build_dir, ignore_errors=True)
    env = dict(os.environ)
    env["SAM_CLI_TELEMETRY"] = "0"
    env["PATH"] = f"{Path(base_python()).parent}:{env.get('PATH', '')}"  # sam wants python3.13
    argv = [
        sam,
        "build",
        "--template-file",
        str(TEMPLATE),
        "--build-dir",
        str(build_dir),
        "--cache-dir",
        str(WORK_DIR / "sam-cache"),
    ]
    started = time.perf_counter()
    done = subprocess.run(
        argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    seconds = time.perf_counter() - started
    (WORK_DIR / "sam-build.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    function = build_dir / FUNCTION_ID
    if done.returncode != 0 or not (function / "sir_membership" / "app.py").exists():
        raise RuntimeError(
            f"sam build failed (exit {done.returncode}); see {WORK_DIR / 'sam-build.log'}"
        )
    return function, seconds


def locate(sam: str | None) -> dict[str, Any]:
    """Build (or find a fresh build of) the function; says which and why."""
    WORK_DIR.mkdir(exist_ok=True)
    reason = "no --sam given"
    if sam:
        try:
            function, seconds = sam_build(sam)
            return {"path": function, "source": "sam build (this run)", "build_seconds": seconds}
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as error:
            reason = str(error)
            log(f"artifact: {reason}")
    existing = REPO_ROOT / ".aws-sam" / "build" / FUNCTION_ID
    app = existing / "sir_membership" / "app.py"
    if app.exists() and app.stat().st_mtime >= _newest_source():
        return {
            "path": existing,
            "source": f".aws-sam/build (fresh; {reason})",
            "build_seconds": None,
        }
    return {"path": None, "source": f"not measured: {reason}; .aws-sam/build missing or stale"}


def plain_build() -> tuple[Path, float]:
    """The old way (no pruning, no bytecode) into the bench's scratch directory."""
    out = WORK_DIR / "plain-build"
    started = time.perf_counter()
    done = subprocess.run(
        [base_python(), str(REPO_ROOT / "scripts" / "lean_package.py"), "build", "--plain",
         "--source", str(SRC_DIR), "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"plain build failed: {done.stderr[-1500:]}")
    return out, time.perf_counter() - started


def _top_level_of(root: Path, path: Path) -> str:
    """A file's top-level package (``botocore``), its module, or its dist-info's name."""
    first = path.relative_to(root).parts[0]
    return first.split("-")[0] if first.endswith(".dist-info") else first.removesuffix(".py")


def sizes(root: Path, label: str) -> dict[str, Any]:
    """Files, bytes, zipped bytes, the top packages and botocore's models of one package."""
    files = _files(root, caches=True)
    by_package: dict[str, int] = defaultdict(int)
    for path in files:
        by_package[_top_level_of(root, path)] += path.stat().st_size
    top = sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)
    target = WORK_DIR / f"{label}.zip"
    zipped = lean_package.write_zip(root, target)
    target.unlink()
    data = root / "botocore" / "data"
    services = sorted(p.name for p in data.iterdir() if p.is_dir()) if data.exists() else []
    return {
        "path": str(root),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "pyc_bytes": sum(p.stat().st_size for p in files if p.suffix == ".pyc"),
        "zipped_bytes": zipped,
        "top_packages": [{"package": k, "bytes": v} for k, v in top[:5]],
        "package_bytes": dict(top),
        "botocore_data_bytes": sum(p.stat().st_size for p in _files(data)) if data.exists() else 0,
        "botocore_services": services if len(services) <= 10 else len(services),
    }


def measure(sam: str | None) -> dict[str, Any]:
    """The lean package (sam build) and the old way, from the same inputs; zipped vs the goal."""
    found = locate(sam)
    root = found["path"]
    if root is None:
        return {"source": found["source"], "measured": False}
    old_root, old_seconds = plain_build()
    result = {
        "measured": True,
        "source": found["source"],
        "build_seconds": found.get("build_seconds"),
        **sizes(root, "lean"),
        "services": lean_package.client_services(SRC_DIR),
        "goal_zipped_bytes": GOAL_ZIPPED_BYTES,
        "old": sizes(old_root, "old") | {"build_seconds": old_seconds},
    }
    # The state machine's tasks (WorkFunction; AnswerFunction is the same package).
    tasks_root = Path(root).parent / "WorkFunction"
    if tasks_root.is_dir():
        result["tasks"] = sizes(tasks_root, "tasks") | {
            "services": lean_package.client_services(SRC_DIR, "sir_membership.tasks"),
        }
        result["tasks"]["zipped_over_goal"] = result["tasks"]["zipped_bytes"] / GOAL_ZIPPED_BYTES
    result["zipped_over_goal"] = result["zipped_bytes"] / GOAL_ZIPPED_BYTES
    result["zipped_over_old"] = result["zipped_bytes"] / result["old"]["zipped_bytes"]
    log(
        f"artifact: {result['bytes'] / 1e6:.1f} MB unzipped, {result['zipped_bytes'] / 1e6:.2f} MB "
        f"zipped ({found['source']}); the old way {result['old']['zipped_bytes'] / 1e6:.1f} MB zipped"
    )
    return result
