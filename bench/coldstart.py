"""Cold start: process start to a ready handler, ours vs a bare boto3 handler.

Each run starts a fresh interpreter that imports the handler module (module
level setup included) and prints the wall clock once ``handler`` is
reachable; the parent notes the clock just before it spawns the process.
Two handlers, in alternating order: ours (``sir_membership.app``) and the
bare handler (``bare_handler.py``: boto3 and one ``security-ir`` client).
Three settings:

* ``dev``: the development virtualenv (bytecode caches present), the
  ``python -c "import sir_membership.app"`` of a developer's machine;
* ``artifact``: the ``sam build`` output on the bare interpreter in isolated
  mode with ``-B`` and no ``__pycache__``, as on Lambda, where ``/var/task``
  is read-only and every module is compiled from source at each cold start;
* ``artifact_pyc``: a copy of that output with bytecode compiled at build time
  (``compileall``, unchecked-hash), a suggestion for the build: same flags.

``python -X importtime`` and a step-by-step replay of ``app.py``'s module
body say what the time goes to.
"""

from __future__ import annotations

import json
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

# The child's wall clock and its own CPU time (user + system since it started)
# at the moment the handler is ready.
READY = "import time, sys; sys.stdout.write(repr(time.time()) + ' ' + repr(time.process_time()))"
TARGETS = {
    "ours": "sir_membership.app",
    "bare": "bare_handler",
}
BENCH_MODULES = ("bare_handler.py",)  # copied next to the artifact


def _code(module: str, prefix: Sequence[str] = ()) -> str:
    path = f"import sys; sys.path[:0] = {list(prefix)!r}; " if prefix else ""
    return f"{path}import {module} as m; m.handler; {READY}"


def _once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds from spawn to ready, the child's CPU seconds until ready)."""
    started = time.time()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:3]}... failed:\n{done.stderr[-2000:]}")
    ready, cpu = done.stdout.split()
    return float(ready) - started, float(cpu)


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


def _bench_modules_dir(name: str) -> Path:
    """A directory holding only the bench's handler modules (no caches)."""
    directory = WORK_DIR / name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for module in BENCH_MODULES:
        shutil.copy2(BENCH_DIR / module, directory / module)
    return directory


def _isolated(artifact: Path, extra: Path, label: str) -> dict[str, Any]:
    """Handlers from ``artifact`` (+ the bench's modules in ``extra``) on the bare interpreter."""
    python = base_python()
    prefix = {name: [str(artifact), str(extra)] for name in TARGETS}
    prefix["ours"] = [str(artifact)]
    return {
        "label": label,
        "env": dummy_aws_env(),
        "argv": {
            name: [python, "-I", "-B", "-c", _code(module, prefix[name])]
            for name, module in TARGETS.items()
        },
        "empty": [python, "-I", "-B", "-c", READY],
    }


def artifact_setting(artifact: Path) -> dict[str, Any]:
    """The built function on the bare interpreter: ``-I -B``, sources only."""
    caches = list(artifact.rglob("__pycache__"))
    if caches:
        raise RuntimeError(f"{artifact} has __pycache__ directories; use a fresh sam build")
    return _isolated(
        artifact,
        _bench_modules_dir("coldstart-bare"),
        "sam build artifact, -I -B, no __pycache__ (as on Lambda)",
    )


def _tree_bytes(root: Path, caches: bool) -> int:
    return sum(
        p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and ("__pycache__" in p.parts) == caches
    )


def artifact_pyc_setting(artifact: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A copy of the artifact with bytecode compiled at build time; (setting, its cost)."""
    copy = WORK_DIR / "artifact-pyc"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(artifact, copy)
    extra = _bench_modules_dir("coldstart-bare-pyc")
    started = time.perf_counter()
    for directory in (copy, extra):
        subprocess.run(
            [base_python(), "-I", "-m", "compileall", "-q", "-j", "0",
             "--invalidation-mode", "unchecked-hash", str(directory)],
            capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
    cost = {
        "compile_seconds": time.perf_counter() - started,
        "pyc_bytes": _tree_bytes(copy, caches=True),
        "source_bytes": _tree_bytes(copy, caches=False),
    }
    setting = _isolated(
        copy, extra, "same artifact + build-time bytecode (compileall, unchecked-hash), -I -B"
    )
    return setting, cost


def measure(setting: dict[str, Any], runs: int) -> dict[str, Any]:
    """``runs`` cold starts of each handler (alternating order) and of an empty interpreter."""
    times: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    env = setting["env"]
    names = list(TARGETS)
    for name in names:  # one untimed run each: the OS page cache, not Python, warms up
        _once(setting["argv"][name], env)
    for i in range(runs):
        shift = i % len(names)
        for name in [*names[shift:], *names[:shift], "empty"]:
            argv = setting["empty"] if name == "empty" else setting["argv"][name]
            wall, used = _once(argv, env)
            times[name].append(wall)
            cpu[name].append(used)
    stats = {name: summary(times[name]) for name in names}
    bare = stats["bare"]["median"]
    result: dict[str, Any] = {
        "label": setting["label"],
        "runs": runs,
        **stats,
        "empty_interpreter": summary(times["empty"]),
        "cpu": {name: summary(cpu[name]) for name in [*names, "empty"]},
        "samples": {k: [round(v, 5) for v in vs] for k, vs in times.items()},
        "cpu_samples": {k: [round(v, 5) for v in vs] for k, vs in cpu.items()},
    }
    for name in names:
        if name == "bare":
            continue
        result[f"{name}_over_bare"] = stats[name]["median"] / bare
        result[f"{name}_over_bare_paired"] = summary(
            [o / b for o, b in zip(times[name], times["bare"], strict=True)]
        )
        result[f"{name}_over_bare_cpu"] = (
            result["cpu"][name]["median"] / result["cpu"]["bare"]["median"]
        )
    log(
        f"cold start [{setting['label']}]: ours {stats['ours']['median'] * 1000:.0f} ms, "
        f"bare {bare * 1000:.0f} ms, ratio {result['ours_over_bare']:.2f} "
        f"(CPU time ratio {result['ours_over_bare_cpu']:.2f})"
    )
    return result


# --------------------------------------------------------------------------- what dominates

_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def importtime(module: str, runs: int = 3, setting: dict[str, Any] | None = None) -> dict[str, Any]:
    """``-X importtime`` of ``module`` (dev setting unless ``setting``): medians over ``runs``."""
    setting = setting or dev_setting()
    env = setting["env"]
    # The setting's interpreter and flags, with -X importtime before its -c.
    argv = setting["argv"][next(k for k, v in TARGETS.items() if v == module)]
    python, flags, code = argv[0], argv[1:-2], argv[-1]
    self_us: dict[str, list[int]] = defaultdict(list)
    cumulative_us: dict[str, list[int]] = defaultdict(list)
    depth: dict[str, int] = {}
    for _ in range(runs):
        done = subprocess.run(
            [python, *flags, "-X", "importtime", "-c", code],
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
        "setting": setting["label"],
        "runs": runs,
        "total_ms": total / 1000,
        "self_ms": {k: v / 1000 for k, v in med_self.items()},
        "module_body_self_ms": med_self.get(module, 0.0) / 1000,
        "top_cumulative_ms": [
            {"module": k, "ms": v / 1000, "depth": depth.get(k, 0)} for k, v in top_cumulative
        ],
        "top_packages_self_ms": [{"package": k, "ms": v / 1000} for k, v in top_packages],
        "cumulative_ms": {k: v / 1000 for k, v in med_cum.items()},
        "depth": depth,
    }


# A replay of sir_membership/app.py's module body, one step at a time, in a
# fresh interpreter, then the first invocation's one-off cost of the property
# rules. It mirrors app.py as of this bench, including the garbage collector
# paused while the clients are made; each step also reports the time spent in
# the collector (gc.callbacks). Steps starting with COMPARE are not in app.py:
# they time what app.py avoids (Powertools building its own boto3 Session for
# the idempotency table; a fresh botocore loader listing botocore's data and
# parsing the security-ir model again for the rules). Each run is paired with
# a run of the same script with the collector left on (SIR_REPLAY_GC=on).
COMPARE = "COMPARE"
FIRST = "first invocation"
_REPLAY = r"""
import gc, json, os, time
collector = [0.0, 0.0]
def on_gc(phase, info):
    if phase == "start":
        collector[1] = time.perf_counter()
    else:
        collector[0] += time.perf_counter() - collector[1]
gc.callbacks.append(on_gc)
marks = []
last = [time.perf_counter(), 0.0]
def mark(step):
    now = time.perf_counter()
    marks.append([step, now - last[0], collector[0] - last[1]])
    last[:] = [time.perf_counter(), collector[0]]
import boto3
from botocore.config import Config
mark("import boto3")
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function)
from aws_lambda_powertools.utilities.idempotency.serialization.dataclass import DataclassSerializer
mark("import aws_lambda_powertools (logger, idempotency)")
from crhelper import CfnResource
mark("import crhelper")
from sir_membership import (
    adoption, errors, guard, request, resource, response, service, service_model)
mark("import sir_membership modules")
logger = Logger(service="sir-membership")
mark("Logger()")
pause = os.environ.get("SIR_REPLAY_GC", "paused") == "paused"
if pause:
    gc.disable()
client = boto3.client("security-ir", config=Config(connect_timeout=3, read_timeout=10,
    retries={"total_max_attempts": 1, "mode": "standard"}, user_agent_extra="sir-membership"))
mark("boto3.client('security-ir')")
service_model.share_model(client.meta.service_model)
ddb_config = Config(connect_timeout=2, read_timeout=5,
    retries={"total_max_attempts": 3, "mode": "standard"})
ddb = boto3.client("dynamodb", config=ddb_config)
mark("boto3.client('dynamodb') (default session, for the idempotency table)")
layer = DynamoDBPersistenceLayer(table_name="x", boto3_client=ddb)
notes = adoption.AdoptionNotes(layer.client, "x")
if pause:
    gc.enable()
config = IdempotencyConfig(event_key_jmespath="[StackId, RequestId]",
    raise_on_no_idempotency_key=True, expires_after_seconds=7200)
idempotent_function(data_keyword_argument="event", config=config, persistence_store=layer,
    output_serializer=DataclassSerializer(response.Answer))(lambda event: None)
mark("DynamoDBPersistenceLayer(), AdoptionNotes, IdempotencyConfig, idempotent_function")
os.environ["AWS_SAM_LOCAL"] = "true"
CfnResource(log_level="INFO", boto_level="WARNING", sleep_on_delete=0)
del os.environ["AWS_SAM_LOCAL"]
copy_config_to_registered_loggers(source_logger=logger, include={"crhelper", "sir_membership"})
mark("CfnResource(), logging setup")
DynamoDBPersistenceLayer(table_name="x", boto_config=ddb_config)
mark("COMPARE DynamoDBPersistenceLayer() left to build its own boto3 Session + dynamodb client")
service_model.rules()
mark("first invocation: service_model.rules() from the client's model (shared)")
from botocore.loaders import create_loader
from botocore.model import ServiceModel
model = ServiceModel(create_loader().load_service_model("security-ir", "service-2"), "security-ir")
model.operation_model("UpdateMembership").input_shape
mark("COMPARE a fresh botocore loader listing botocore's data and parsing the model again")
print("MARKS " + json.dumps(marks))
"""


def _is_body(step: str) -> bool:
    """A step of app.py's module body proper (after its imports; no COMPARE, no invocation)."""
    return not step.startswith(("import ", COMPARE, FIRST))


def replay(runs: int = 7) -> dict[str, Any]:
    """Median seconds per step of app.py's module body (fresh interpreter per run).

    Each run is followed by one with the collector left on, so the two module
    bodies (``body``: as app.py; ``body_collector_on``) are compared in pairs.
    """
    steps: dict[str, list[tuple[float, float]]] = defaultdict(list)
    body: dict[str, list[tuple[float, float]]] = defaultdict(list)
    order: list[str] = []
    for _ in range(runs):
        for mode in ("paused", "on"):
            env = dev_setting()["env"] | {"SIR_REPLAY_GC": mode}
            done = subprocess.run(
                [sys.executable, "-c", _REPLAY],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            line = [x for x in done.stdout.splitlines() if x.startswith("MARKS ")][-1]
            marks = json.loads(line[len("MARKS ") :])
            body[mode].append(
                (
                    sum(seconds for step, seconds, _ in marks if _is_body(step)),
                    sum(gc for step, _, gc in marks if _is_body(step)),
                )
            )
            if mode != "paused":
                continue
            for step, seconds, gc in marks:
                if step not in order:
                    order.append(step)
                steps[step].append((seconds, gc))

    def medians(pairs: list[tuple[float, float]]) -> dict[str, float]:
        return {
            "median": statistics.median(p[0] for p in pairs),
            "collector_median": statistics.median(p[1] for p in pairs),
        }

    paired = [on[0] - paused[0] for paused, on in zip(body["paused"], body["on"], strict=True)]
    return {
        "runs": runs,
        "steps": [{"step": s} | medians(steps[s]) for s in order],
        "body": medians(body["paused"]),
        "body_collector_on": medians(body["on"]),
        "collector_pause_saves": summary(paired),
    }


def _only_ours(ours: dict[str, Any], bare: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The 10 modules only ours imports (not the bare handler), by ``key`` (self/cumulative)."""
    only = sorted(
        (
            (k, v)
            for k, v in ours[key].items()
            if k not in bare["cumulative_ms"]
            and k != ours["module"]
            and not ours["module"].startswith(k + ".")
        ),
        key=lambda kv: kv[1],
        reverse=True,
    )[:10]
    return [{"module": k, "ms": v, "depth": ours["depth"].get(k, 0)} for k, v in only]


def run(artifact: Path | None, runs: int = 15, artifact_runs: int = 9) -> dict[str, Any]:
    """Everything the report's cold-start section needs."""
    out: dict[str, Any] = {"dev": measure(dev_setting(), runs)}
    if artifact is not None:
        out["artifact"] = measure(artifact_setting(artifact), artifact_runs)
        setting, cost = artifact_pyc_setting(artifact)
        out["artifact_pyc"] = measure(setting, artifact_runs) | {"cost": cost}
    out["importtime"] = {name: importtime(TARGETS[name]) for name in ("ours", "bare")}
    ours, bare = out["importtime"]["ours"], out["importtime"]["bare"]
    out["only_ours_top_cumulative_ms"] = _only_ours(ours, bare, "cumulative_ms")
    if artifact is not None:
        setting = artifact_setting(artifact)
        imports = {name: importtime(TARGETS[name], setting=setting) for name in ("ours", "bare")}
        out["importtime_artifact"] = {
            "setting": setting["label"],
            "runs": imports["ours"]["runs"],
            "only_ours_top_self_ms": _only_ours(imports["ours"], imports["bare"], "self_ms"),
        }
    out["replay"] = replay()
    return out
