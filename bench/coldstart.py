"""Cold start: process start to a ready handler, ours vs a bare boto3 handler.

Each run starts a fresh interpreter that imports the handler module (module
level setup included) and prints the wall clock once ``handler`` is
reachable; the parent notes the clock just before it spawns the process.
Handlers alternate which goes first in each round. Two settings:

* ``dev``: the development virtualenv (bytecode caches present), the
  ``python -c "import sir_membership.app"`` of a developer's machine: ours
  (``sir_membership.app``) and the bare handler (``bare_handler.py``: boto3
  and one ``security-ir`` client);
* ``lambda``: the packages on the bare interpreter in isolated mode with
  ``-B``, as on Lambda (``/var/task`` is read-only: what the package does not
  ship as bytecode is compiled at every cold start). Five handlers in the
  same rounds: ours and the bare handler from the lean ``sam build`` package
  (the bare handler given the same unchecked-hash bytecode), the bare handler
  with app.py's collector pause, and ours and the bare handler from the old
  way's package (artifact.plain_build: no pruning, no bytecode).

``python -X importtime`` on the lean package and a step-by-step replay of
``app.py``'s module load say what the time goes to.
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


#: The state machine's tasks (Work and Answer), from their own lean package.
TASKS = "sir_membership.tasks"


def _code(module: str, prefix: Sequence[str] = ()) -> str:
    path = f"import sys; sys.path[:0] = {list(prefix)!r}; " if prefix else ""
    handler = "work" if module == TASKS else "handler"
    return f"{path}import {module} as m; m.{handler}; {READY}"


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


def _compile(directory: Path) -> None:
    """Bytecode as the lean build makes it (unchecked-hash)."""
    subprocess.run(
        [base_python(), "-I", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
         str(directory)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip


#: The bare handler with the collector paused as app.py pauses it.
_PAUSED = "import gc; gc.disable(); import bare_handler; gc.freeze(); gc.enable(); "


#: The same-run ratios of the ``lambda`` setting besides each handler over ``bare``.
LAMBDA_RATIOS = (
    ("ours", "ours_old"),
    ("ours", "bare_paused"),
    ("ours_old", "bare_old"),
    ("bare", "bare_old"),
)


def lambda_setting(lean: Path, old: Path) -> dict[str, Any]:
    """Ours and the bare handler from the lean package and from the old way's, ``-I -B``."""
    if list(old.rglob("__pycache__")):
        raise RuntimeError(f"{old} has __pycache__ directories; the old way shipped none")
    python = base_python()
    bare_pyc = _bench_modules_dir("coldstart-bare-pyc")
    _compile(bare_pyc)
    bare_src = _bench_modules_dir("coldstart-bare")
    paths = {
        "ours": [str(lean)],
        "bare": [str(lean), str(bare_pyc)],
        "bare_paused": [str(lean), str(bare_pyc)],
        "ours_old": [str(old)],
        "bare_old": [str(old), str(bare_src)],
    }
    modules = {"ours": TARGETS["ours"], "ours_old": TARGETS["ours"]}
    tasks = lean.parent / "WorkFunction"  # sam build's directory of the Work function
    if tasks.is_dir():
        paths["tasks"] = [str(tasks)]
        modules["tasks"] = TASKS

    def code(name: str) -> str:
        if name == "bare_paused":
            return f"import sys; sys.path[:0] = {paths[name]!r}; {_PAUSED}{READY}"
        return _code(modules.get(name, TARGETS["bare"]), paths[name])

    return {
        "label": "packages on the bare interpreter, -I -B (as on Lambda)",
        "env": dummy_aws_env(),
        "argv": {name: [python, "-I", "-B", "-c", code(name)] for name in paths},
        "empty": [python, "-I", "-B", "-c", READY],
        "ratios": LAMBDA_RATIOS,
    }


def _ratio(times: dict[str, list[float]], cpu: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    """``a`` over ``b``: of the medians, of each round's pair, of the CPU times."""
    return {
        f"{a}_over_{b}": statistics.median(times[a]) / statistics.median(times[b]),
        f"{a}_over_{b}_paired": summary([x / y for x, y in zip(times[a], times[b], strict=True)]),
        f"{a}_over_{b}_cpu": cpu[a]["median"] / cpu[b]["median"],
    }


def measure(setting: dict[str, Any], runs: int) -> dict[str, Any]:
    """``runs`` cold starts of each handler (rotating order) and of an empty interpreter."""
    times: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    env = setting["env"]
    names = list(setting["argv"])
    for name in names:  # one untimed run each: the OS page cache, not Python, warms up
        _once(setting["argv"][name], env)
    for i in range(runs):
        shift = i % len(names)
        for name in [*names[shift:], *names[:shift], "empty"]:
            argv = setting["empty"] if name == "empty" else setting["argv"][name]
            wall, used = _once(argv, env)
            times[name].append(wall)
            cpu[name].append(used)
    return result_of(setting["label"], names, times, cpu, setting.get("ratios", ()))


def result_of(
    label: str,
    names: Sequence[str],
    times: dict[str, list[float]],
    cpu: dict[str, list[float]],
    ratios: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Summaries and same-run ratios of one setting's samples (``times[name]``, one per round)."""
    stats = {name: summary(times[name]) for name in names}
    result: dict[str, Any] = {
        "label": label,
        "runs": len(times[names[0]]),
        "handlers": names,
        **stats,
        "empty_interpreter": summary(times["empty"]),
        "cpu": {name: summary(cpu[name]) for name in [*names, "empty"]},
        "samples": {k: [round(v, 5) for v in vs] for k, vs in times.items()},
        "cpu_samples": {k: [round(v, 5) for v in vs] for k, vs in cpu.items()},
    }
    pairs = [(name, "bare") for name in names if name != "bare"]
    for a, b in [*pairs, *ratios]:
        result |= _ratio(times, result["cpu"], a, b)
    log(
        f"cold start [{label}]: "
        + ", ".join(f"{name} {stats[name]['median'] * 1000:.0f} ms" for name in names)
        + f"; ours/bare {result['ours_over_bare']:.2f}"
        + (f", ours/ours_old {result['ours_over_ours_old']:.2f}" if "ours_old" in names else "")
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


# A replay of sir_membership/app.py's module body (the dispatcher: the
# ServiceToken's function), one step at a time, in a fresh interpreter, then
# the first invocation's one-off cost of the property rules. It mirrors app.py
# as of this bench, including the garbage collector paused for the whole module
# load and what it made frozen at its end; each step also reports the time spent
# in the collector (gc.callbacks). Steps starting with COMPARE are not in
# app.py: they time what the Work task does instead (a security-ir client whose
# already parsed model it shares for the rules; the dispatcher has no such
# client and parses the model once, on its first invocation). Each run is
# paired with a run of the same script with the collector left on
# (SIR_REPLAY_GC=on).
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
pause = os.environ.get("SIR_REPLAY_GC", "paused") == "paused"
if pause:
    gc.disable()
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
mark("import aws_lambda_powertools (logger)")
from crhelper import CfnResource
mark("import crhelper")
from sir_membership import (
    dispatch, engine, errors, guard, journal_store, request, request_store, resource, response,
    service_model, timing)
mark("import sir_membership modules")
logger = Logger(service="sir-membership")
mark("Logger()")
ddb = boto3.client("dynamodb", config=Config(connect_timeout=2, read_timeout=5,
    retries={"total_max_attempts": 3, "mode": "standard"}))
requests = request_store.RequestStore(ddb, "x")
journal = journal_store.JournalStore(ddb, "x")
mark("boto3.client('dynamodb') (request records and fences, the journal)")
sfn = boto3.client("stepfunctions", config=Config(connect_timeout=3, read_timeout=5,
    retries={"total_max_attempts": 3, "mode": "standard"}))
runs = engine.Engine(sfn, "")
mark("boto3.client('stepfunctions') (the state machine's executions)")
os.environ["AWS_SAM_LOCAL"] = "true"
CfnResource(log_level="INFO", boto_level="WARNING", sleep_on_delete=0)
del os.environ["AWS_SAM_LOCAL"]
copy_config_to_registered_loggers(source_logger=logger, include={"crhelper", "sir_membership"})
if pause:
    gc.freeze()
    gc.enable()
mark("CfnResource(), logging setup")
service_model.rules()
mark("first invocation: service_model.rules() (a botocore loader reads the security-ir model)")
service_model.rules.cache_clear()
client = boto3.client("security-ir", config=Config(connect_timeout=3, read_timeout=10,
    retries={"total_max_attempts": 1, "mode": "standard"}, user_agent_extra="sir-membership"))
mark("COMPARE boto3.client('security-ir') (the Work task's; not made by the dispatcher)")
service_model.share_model(client.meta.service_model)
service_model.rules()
mark("COMPARE service_model.rules() from that client's parsed model (as the Work task does)")
print("MARKS " + json.dumps(marks))
"""


def _is_body(step: str) -> bool:
    """A step of app.py's module load (imports and body; no COMPARE, no invocation)."""
    return not step.startswith((COMPARE, FIRST))


def replay(runs: int = 7, package: Path | None = None) -> dict[str, Any]:
    """Median seconds per step of app.py's module load (fresh interpreter per run).

    On ``package`` (the lean build, ``-I -B`` on the bare interpreter) when
    given, else in the dev venv. Each run is followed by one with the
    collector left on, so the two module loads (``body``: as app.py;
    ``body_collector_on``) are compared in pairs.
    """
    if package is None:
        argv = [sys.executable, "-c", _REPLAY]
    else:
        prefix = f"import sys; sys.path[:0] = [{str(package)!r}]\n"
        argv = [base_python(), "-I", "-B", "-c", prefix + _REPLAY]
    steps: dict[str, list[tuple[float, float]]] = defaultdict(list)
    body: dict[str, list[tuple[float, float]]] = defaultdict(list)
    order: list[str] = []
    for _ in range(runs):
        for mode in ("paused", "on"):
            env = dev_setting()["env"] | {"SIR_REPLAY_GC": mode}
            done = subprocess.run(
                argv,
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
        "setting": "dev venv" if package is None else "lean package, -I -B",
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


def run(
    artifact: Path | None, old: Path | None, runs: int = 15, artifact_runs: int = 9
) -> dict[str, Any]:
    """Everything the report's cold-start section needs (``old``: the old way's package)."""
    out: dict[str, Any] = {"dev": measure(dev_setting(), runs)}
    if artifact is not None and old is not None:
        out["lambda"] = measure(lambda_setting(artifact, old), artifact_runs)
    out["importtime"] = {name: importtime(TARGETS[name]) for name in ("ours", "bare")}
    ours, bare = out["importtime"]["ours"], out["importtime"]["bare"]
    out["only_ours_top_cumulative_ms"] = _only_ours(ours, bare, "cumulative_ms")
    if artifact is not None and old is not None:
        setting = lambda_setting(artifact, old)
        imports = {name: importtime(TARGETS[name], setting=setting) for name in ("ours", "bare")}
        out["importtime_artifact"] = {
            "setting": setting["label"],
            "runs": imports["ours"]["runs"],
            "ours_total_ms": imports["ours"]["total_ms"],
            "bare_total_ms": imports["bare"]["total_ms"],
            "only_ours_top_self_ms": _only_ours(imports["ours"], imports["bare"], "self_ms"),
            "only_ours_top_cumulative_ms": _only_ours(
                imports["ours"], imports["bare"], "cumulative_ms"
            ),
            "only_ours_self_ms_total": sum(
                v
                for k, v in imports["ours"]["self_ms"].items()
                if k not in imports["bare"]["self_ms"] and k != TARGETS["ours"]
            ),
            "ours_body_self_ms": imports["ours"]["module_body_self_ms"],
            "bare_body_self_ms": imports["bare"]["module_body_self_ms"],
        }
    out["replay"] = replay(package=artifact)
    return out
