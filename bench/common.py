"""Shared pieces of the benchmarks: paths, the Lambda context, statistics, tables.

Everything here is stdlib only, so the cold-start children and the worker
can import it without changing what they measure.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SRC_DIR = REPO_ROOT / "src"
LOCAL_DIR = REPO_ROOT / "local"
WORK_DIR = BENCH_DIR / ".work"  # git-ignored scratch space

REGION = "us-east-1"
ACCOUNT = "123456789012"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sir-membership-bench"


@dataclass
class Context:
    """A Lambda context with a real deadline (what Powertools and crhelper read)."""

    deadline: float
    aws_request_id: str = "bench-request"
    function_name: str = "sir-membership-bench"
    function_version: str = "$LATEST"
    invoked_function_arn: str = FUNCTION_ARN
    memory_limit_in_mb: int = 256
    log_group_name: str = "/aws/lambda/sir-membership-bench"
    log_stream_name: str = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def context(seconds: float = 300.0, request_id: str = "bench-request") -> Context:
    """A context whose deadline is ``seconds`` from now (the template's Timeout is 300 s)."""
    return Context(deadline=time.monotonic() + seconds, aws_request_id=request_id)


def dummy_aws_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` without anything that could reach a real account, plus dummy credentials."""
    source = dict(os.environ if base is None else base)
    env = {
        k: v
        for k, v in source.items()
        if not k.startswith("AWS_") and k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
    }
    env.update(
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        IDEMPOTENCY_TABLE_NAME="sir-membership-idempotency",
    )
    return env


# --------------------------------------------------------------------------- statistics


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (the same rule as numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, min and max of ``values``."""
    return {
        "n": len(values),
        "median": statistics.median(values),
        "q1": quantile(values, 0.25),
        "q3": quantile(values, 0.75),
        "min": min(values),
        "max": max(values),
    }


def ratio(a: float, b: float) -> float | None:
    """``a / b``, or None when ``b`` is zero."""
    return None if not b else a / b


# --------------------------------------------------------------------------- formatting


def ms(seconds: float | None, digits: int = 1) -> str:
    """Seconds as milliseconds text."""
    return "-" if seconds is None else f"{seconds * 1000:.{digits}f}"


def fmt_ratio(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (right-aligned after the first column)."""
    align = ["---"] + ["---:"] * (len(headers) - 1)
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Date, machine and interpreter facts for the results' header."""
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def log(message: str) -> None:
    """Progress on stderr (the results themselves are printed on stdout)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
