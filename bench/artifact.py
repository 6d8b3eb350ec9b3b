"""Size of the deployable function package (``sam build`` output).

The function is built with ``sam build`` into ``bench/.work/sam-build`` (a
fresh, cache-free build of the current tree). If that fails, a
``.aws-sam/build/MembershipFunction`` newer than every source file is used
instead. Sizes exclude ``__pycache__`` (sam build writes none); the zipped
size is what Lambda's 50 MB direct-upload limit is about, the unzipped size
what its 250 MB limit is about.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from coldstart import base_python
from common import REPO_ROOT, SRC_DIR, WORK_DIR, log

FUNCTION_ID = "MembershipFunction"
TEMPLATE = REPO_ROOT / "template.yaml"
SERVICES_USED = ("security-ir", "dynamodb")


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


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


def _distribution_of(root: Path) -> dict[Path, str]:
    """File -> distribution name, from each ``*.dist-info/RECORD``."""
    owner: dict[Path, str] = {}
    for record in root.glob("*.dist-info/RECORD"):
        name = record.parent.name.split("-")[0]
        for line in record.read_text(encoding="utf-8").splitlines():
            relative = line.split(",", 1)[0]
            if relative:
                owner[(root / relative).resolve()] = name
    return owner


def _zipped_size(root: Path, files: list[Path]) -> int:
    target = WORK_DIR / "artifact.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(root))
    size = target.stat().st_size
    target.unlink()
    return size


def measure(sam: str | None) -> dict[str, Any]:
    """Sizes of the built function: total, zipped, top packages, botocore's data."""
    found = locate(sam)
    root = found["path"]
    if root is None:
        return {"source": found["source"], "measured": False}
    files = _files(root)
    sizes = {p.resolve(): p.stat().st_size for p in files}
    owner = _distribution_of(root)
    by_package: dict[str, int] = defaultdict(int)
    for path, size in sizes.items():
        name = owner.get(path) or path.relative_to(root.resolve()).parts[0].removesuffix(".py")
        by_package[name] += size
    top = sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)
    data = root / "botocore" / "data"
    data_total = sum(p.stat().st_size for p in _files(data)) if data.exists() else 0
    needed = [p for p in _files(data) if p.parent == data] if data.exists() else []
    for service in SERVICES_USED:
        needed += _files(data / service) if (data / service).exists() else []
    # The package without the models of services the function never calls.
    unused = {p.resolve() for p in _files(data)} - {p.resolve() for p in needed}
    trimmed = [p for p in files if p.resolve() not in unused]
    result = {
        "measured": True,
        "source": found["source"],
        "path": str(root),
        "build_seconds": found.get("build_seconds"),
        "files": len(files),
        "bytes": sum(sizes.values()),
        "zipped_bytes": _zipped_size(root, files),
        "packages": len(by_package),
        "top_packages": [{"package": k, "bytes": v} for k, v in top[:5]],
        "botocore_data_bytes": data_total,
        "botocore_data_needed_bytes": sum(p.stat().st_size for p in needed),
        "botocore_data_services": len([p for p in data.iterdir() if p.is_dir()])
        if data.exists()
        else 0,
        "trimmed_bytes": sum(sizes[p.resolve()] for p in trimmed),
        "trimmed_zipped_bytes": _zipped_size(root, trimmed),
    }
    log(
        f"artifact: {result['bytes'] / 1e6:.1f} MB unzipped, {result['zipped_bytes'] / 1e6:.1f} MB zipped "
        f"({found['source']})"
    )
    return result
