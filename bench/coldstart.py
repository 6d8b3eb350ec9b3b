"""Cold start: process start to a ready handler, ours vs a bare boto3 handler.

Each run starts a fresh interpreter that imports the handler module (module
level setup included) and prints the wall clock once ``handler`` is
reachable; the parent notes the clock just before it spawns the process.
Runs of ours and the bare handler alternate. Two settings:

* ``dev``: the development virtualenv (bytecode caches present), the
  ``python -c "import sir_membership.app"`` of a developer's machine;
* ``artifact``: the ``sam build`` output on the bare interpreter in isolated
  mode with ``-B`` and no ``__pycache__``, as on Lambda, where ``/var/task``
  is read-only and every module is compiled from source at each cold start.

``python -X importtime`` and a step-by-step replay of ``app.py``'s module
body say what the time goes to.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import BENCH_DIR, SRC_DIR, WORK_DIR, dummy_aws_env, log, summary

READY = "import time, sys; sys.stdout.write(repr(time.time()))"
TARGETS = {"ours": "sir_membership.app", "bare": "bare_handler"}


def _code(module: str, prefix: Sequence[str] = ()) -> str:
    path = f"import sys; sys.path[:0] = {list(prefix)!r}; " if prefix else ""
    return f"{path}import {module} as m; m.handler; {READY}"


def _once(argv: list[str], env: dict[str, str]) -> float:
    started = time.time()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:3]}... failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip()) - started


def base_python() -> str:
    """The interpreter the dev virtualenv was made from (Lambda's runtime has no venv)."""
    candidate = getattr(sys, "_base_executable", "") or sys.executable
    return str(Path(candidate).resolve())


def dev_setting() -> dict[str, Any]:
    env = dummy_aws_env()
    env["PYTHONPATH"] = f"{SRC_DIR}:{BENCH_DIR}"
    return {
        "label": "dev venv (bytecode cached)",
        "env": env,
        "argv": {name: [sys.executable, "-c", _code(module)] for name, module in TARGETS.items()},
        "empty": [sys.executable, "-c", READY],
    }


def artifact_setting(artifact: Path) -> dict[str, Any]:
    """The built function on the bare interpreter: ``-I -B``, sources only."""
    bare_dir = WORK_DIR / "coldstart-bare"
    shutil.rmtree(bare_dir, ignore_errors=True)
    bare_dir.mkdir(parents=True)
    shutil.copy2(BENCH_DIR / "bare_handler.py", bare_dir / "bare_handler.py")
    caches = list(artifact.rglob("__pycache__"))
    if caches:
        raise RuntimeError(f"{artifact} has __pycache__ directories; use a fresh sam build")
    env = dummy_aws_env()
    python = base_python()
    prefix = {"ours": [str(artifact)], "bare": [str(artifact), str(bare_dir)]}
    return {
        "label": "sam build artifact, -I -B, no __pycache__ (as on Lambda)",
        "env": env,
        "argv": {
            name: [python, "-I", "-B", "-c", _code(module, prefix[name])]
            for name, module in TARGETS.items()
        },
        "empty": [python, "-I", "-B", "-c", READY],
    }


def measure(setting: dict[str, Any], runs: int) -> dict[str, Any]:
    """``runs`` interleaved cold starts of each handler (and of an empty interpreter)."""
    times: dict[str, list[float]] = defaultdict(list)
    env = setting["env"]
    for name in TARGETS:  # one untimed run each: the OS page cache, not Python, warms up
        _once(setting["argv"][name], env)
    for i in range(runs):
        order = list(TARGETS) if i % 2 == 0 else list(reversed(TARGETS))
        for name in order:
            times[name].append(_once(setting["argv"][name], env))
        times["empty"].append(_once(setting["empty"], env))
    ours, bare = summary(times["ours"]), summary(times["bare"])
    paired = [o / b for o, b in zip(times["ours"], times["bare"], strict=True)]
    result = {
        "label": setting["label"],
        "runs": runs,
        "ours": ours,
        "bare": bare,
        "empty_interpreter": summary(times["empty"]),
        "ratio_of_medians": ours["median"] / bare["median"],
        "paired_ratio": summary(paired),
        "samples": {k: [round(v, 5) for v in vs] for k, vs in times.items()},
    }
    log(
        f"cold start [{setting['label']}]: ours {ours['median'] * 1000:.0f} ms, "
        f"bare {bare['median'] * 1000:.0f} ms, ratio {result['ratio_of_medians']:.2f}"
    )
    return result


# --------------------------------------------------------------------------- what dominates

_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def importtime(module: str, runs: int = 3) -> dict[str, Any]:
    """``-X importtime`` of ``module`` in the dev setting: per-module medians over ``runs``."""
    env = dev_setting()["env"]
    self_us: dict[str, list[int]] = defaultdict(list)
    cumulative_us: dict[str, list[int]] = defaultdict(list)
    depth: dict[str, int] = {}
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        for line in done.stderr.splitlines():
            found = _LINE.match(line)
            if found:
                name = found.group(4)
                self_us[name].append(int(found.group(1)))
                cumulative_us[name].append(int(found.group(2)))
                depth[name] = len(found.group(3)) // 2
    med_self = {k: statistics.median(v) for k, v in self_us.items()}
    med_cum = {k: statistics.median(v) for k, v in cumulative_us.items()}
    package_self: dict[str, float] = defaultdict(float)
    for name, value in med_self.items():
        package_self[name.split(".")[0]] += value
    total = med_cum.get(module, 0.0)
    top_cumulative = sorted(
        ((k, v) for k, v in med_cum.items() if k != module and not module.startswith(k + ".")),
        key=lambda kv: kv[1],
        reverse=True,
    )[:10]
    top_packages = sorted(package_self.items(), key=lambda kv: kv[1], reverse=True)[:10]
    return {
        "module": module,
        "runs": runs,
        "total_ms": total / 1000,
        "module_body_self_ms": med_self.get(module, 0.0) / 1000,
        "top_cumulative_ms": [
            {"module": k, "ms": v / 1000, "depth": depth.get(k, 0)} for k, v in top_cumulative
        ],
        "top_packages_self_ms": [{"package": k, "ms": v / 1000} for k, v in top_packages],
        "cumulative_ms": {k: v / 1000 for k, v in med_cum.items()},
        "depth": depth,
    }


# A replay of sir_membership/app.py's module body, one step at a time, in a
# fresh interpreter. The last step is not in app.py: it is the suggested
# alternative (the DynamoDB client made from boto3's default session).
_REPLAY = r"""
import json, os, time
marks = []
last = time.perf_counter()
def mark(step):
    global last
    now = time.perf_counter()
    marks.append([step, now - last])
    last = time.perf_counter()
import boto3
from botocore.config import Config
mark("import boto3")
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function)
from aws_lambda_powertools.utilities.idempotency.serialization.dataclass import DataclassSerializer
from aws_lambda_powertools.utilities.typing import LambdaContext
mark("import aws_lambda_powertools (logger, idempotency)")
from crhelper import CfnResource
mark("import crhelper")
from sir_membership import resource, errors, response, service
mark("import sir_membership modules")
logger = Logger(service="sir-membership")
mark("Logger()")
client = boto3.client("security-ir", config=Config(connect_timeout=3, read_timeout=10,
    retries={"total_max_attempts": 1, "mode": "standard"}, user_agent_extra="sir-membership"))
mark("boto3.client('security-ir')")
ddb_config = Config(connect_timeout=2, read_timeout=5,
    retries={"total_max_attempts": 3, "mode": "standard"})
layer = DynamoDBPersistenceLayer(table_name="x", boto_config=ddb_config)
mark("DynamoDBPersistenceLayer() (own boto3 Session + dynamodb client)")
IdempotencyConfig(event_key_jmespath="[StackId, RequestId]", raise_on_no_idempotency_key=True)
mark("IdempotencyConfig()")
os.environ["AWS_SAM_LOCAL"] = "true"
CfnResource(log_level="INFO", boto_level="WARNING", sleep_on_delete=0)
del os.environ["AWS_SAM_LOCAL"]
mark("CfnResource()")
boto3.client("dynamodb", config=ddb_config)
mark("ALT dynamodb client from the default session")
print("MARKS " + json.dumps(marks))
"""


def replay(runs: int = 7) -> dict[str, Any]:
    """Median seconds per step of app.py's module body (fresh interpreter per run)."""
    env = dev_setting()["env"]
    steps: dict[str, list[float]] = defaultdict(list)
    order: list[str] = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", _REPLAY],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        line = [x for x in done.stdout.splitlines() if x.startswith("MARKS ")][-1]
        for step, seconds in json.loads(line[len("MARKS ") :]):
            if step not in order:
                order.append(step)
            steps[step].append(seconds)
    return {
        "runs": runs,
        "steps": [{"step": s, "median": statistics.median(steps[s])} for s in order],
    }


def run(artifact: Path | None, runs: int = 15, artifact_runs: int = 9) -> dict[str, Any]:
    """Everything the report's cold-start section needs."""
    out: dict[str, Any] = {"dev": measure(dev_setting(), runs)}
    if artifact is not None:
        out["artifact"] = measure(artifact_setting(artifact), artifact_runs)
    out["importtime"] = {name: importtime(module) for name, module in TARGETS.items()}
    ours, bare = out["importtime"]["ours"], out["importtime"]["bare"]
    only_ours = sorted(
        (
            (k, v)
            for k, v in ours["cumulative_ms"].items()
            if k not in bare["cumulative_ms"]
            and k != ours["module"]
            and not ours["module"].startswith(k + ".")
        ),
        key=lambda kv: kv[1],
        reverse=True,
    )[:10]
    out["only_ours_top_cumulative_ms"] = [
        {"module": k, "ms": v, "depth": ours["depth"].get(k, 0)} for k, v in only_ours
    ]
    out["replay"] = replay()
    os.environ.pop("AWS_SAM_LOCAL", None)
    return out
