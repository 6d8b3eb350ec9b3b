"""ministack (a third-party local AWS) and the Security IR emulator, started and always stopped.

Why: the demo and the end-to-end tests should play the provider on a real
CloudFormation engine, not on a driver this project wrote. ministack (MIT,
pinned in ``requirements-ministack.txt``, in a virtualenv of its own because
it pins a botocore older than the function's) runs CloudFormation with the
SAM transform, Lambda (Python handlers as local processes, no Docker),
DynamoDB, S3 and IAM, enforced with ``AUTH=true``. It has no security-ir, so
the project's emulator serves it.

Local-only settings reach the function through ministack's process
environment, which ministack hands to every Lambda process
(``{**os.environ, **function variables}``), never through the template users
deploy: the emulator's endpoint (``AWS_ENDPOINT_URL_SECURITY_IR``) and
``RESPONSE_URL_PATTERNS`` for ministack's ResponseURL,
``http://localhost:<port>/_ministack/cfn-response/<token>``.

ministack runs in its own process group (its Lambda processes are its
children) and is killed as a group on exit, on an error, on Ctrl-C and at
interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sirlocal.emulator import SecurityIREmulator

REPO_ROOT = Path(__file__).resolve().parents[2]
#: ministack's own virtualenv (``make .venv-ministack/.installed``); override with the variable.
PYTHON_VARIABLE = "SIR_MINISTACK_PYTHON"
DEFAULT_PYTHON = REPO_ROOT / ".venv-ministack" / "bin" / "python"
#: Runs ministack with property values in DescribeChangeSet (see the module).
LAUNCHER = Path(__file__).with_name("ministack_contexts.py")
REGION = "us-east-1"
#: ministack's default account; every ARN it makes is in it.
ACCOUNT_ID = "000000000000"
#: ministack's root caller: allowed everything, also under AUTH=true.
ROOT_KEY, ROOT_SECRET = "test", "test"
HEALTH_PATH = "/_ministack/health"
CONFIG_PATH = "/_ministack/config"
#: The launcher's variable naming the request and answer log (``ministack_contexts``).
CFN_LOG_VARIABLE = "SIRLOCAL_CFN_LOG"
#: Settings of the caller's environment that could reach a real account or another endpoint.
_BLOCKED_PREFIXES = ("AWS_",)

_LIVE: set[Child] = set()
_LIVE_LOCK = threading.Lock()


class MinistackUnavailable(RuntimeError):
    """ministack's virtualenv is missing or ministack did not start."""


def ministack_python(environ: Mapping[str, str] = os.environ) -> Path:
    """The interpreter of ministack's virtualenv (``SIR_MINISTACK_PYTHON`` or the default)."""
    # absolute(), not resolve(): the venv's python is a symlink to the base interpreter.
    path = Path(environ.get(PYTHON_VARIABLE) or DEFAULT_PYTHON).absolute()
    if not path.exists():
        raise MinistackUnavailable(
            f"{path} not found: run `make .venv-ministack/bin/.installed` (ministack pinned in "
            f"requirements-ministack.txt) or set {PYTHON_VARIABLE}"
        )
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (ministack cannot bind port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class LocalSettings:
    """What the function needs locally and users never deploy: where security-ir is,
    and which ResponseURL it may answer (ministack's, plain HTTP on localhost)."""

    security_ir_url: str
    port: int

    @property
    def response_url_patterns(self) -> str:
        """ministack's ResponseURL is ``http://localhost:<port>/...`` (``MINISTACK_HOST``)."""
        return f"http://localhost:{self.port}"

    def function_env(self) -> dict[str, str]:
        """The variables the Lambda processes inherit from ministack's environment."""
        return {
            "AWS_ENDPOINT_URL_SECURITY_IR": self.security_ir_url,
            "RESPONSE_URL_PATTERNS": self.response_url_patterns,
        }


def clean_env(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without any AWS setting (profile, credentials, endpoints, region)."""
    return {k: v for k, v in base.items() if not k.startswith(_BLOCKED_PREFIXES)}


def root_env(endpoint_url: str | None = None) -> dict[str, str]:
    """ministack's root credentials and region, no shared config (never a real account)."""
    env = {
        "AWS_ACCESS_KEY_ID": ROOT_KEY,
        "AWS_SECRET_ACCESS_KEY": ROOT_SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    return env


def ministack_env(
    base: Mapping[str, str],
    settings: LocalSettings,
    *,
    auth: bool = True,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """ministack's process environment (pure): its own settings, root credentials, and
    the function's local settings, which its Lambda processes inherit.

    ``extra`` adds local-only settings (ministack's own, such as
    ``SFN_WAIT_SCALE``, or the function's test-only ``SIR_TIMING_*``); it
    cannot reach outside AWS settings back in.
    """
    added = clean_env(extra or {})
    return {
        **clean_env(base),
        **root_env(),
        "GATEWAY_PORT": str(settings.port),
        "BIND_HOST": "127.0.0.1",
        "AUTH": "true" if auth else "false",
        "LOG_LEVEL": "WARNING",
        **added,
        **settings.function_env(),
    }


class Child:
    """A child process in its own process group, logged to a file, always reaped."""

    def __init__(self, argv: list[str], env: Mapping[str, str], name: str) -> None:
        self.argv, self.env, self.name = argv, dict(env), name
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The child's pid (= its process group id)."""
        assert self._process is not None
        return self._process.pid

    def start(self, cwd: str) -> Child:
        """Spawn it (its own session, so Ctrl-C in a terminal reaches only us)."""
        self._log = tempfile.NamedTemporaryFile(prefix=f"sirlocal-{self.name}-", suffix=".log")  # noqa: SIM115
        self._process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=cwd,
            start_new_session=True,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)
        return self

    def poll(self) -> int | None:
        """The exit code, or None while running."""
        return None if self._process is None else self._process.poll()

    def log_tail(self, limit: int = 4000) -> str:
        """The end of its output (for failure messages)."""
        if self._log is None:
            return ""
        return Path(self._log.name).read_bytes()[-limit:].decode("utf-8", "replace")

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds, then any straggler; idempotent."""
        process = self._process
        if process is not None:
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    _signal_group(process.pid, signal.SIGKILL)
                    process.wait(timeout=grace)
            _signal_group(process.pid, signal.SIGKILL)  # Lambda processes left in the group
        if self._log is not None:
            self._log.close()
            self._log = None
        with _LIVE_LOCK:
            _LIVE.discard(self)


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


@atexit.register
def stop_all() -> None:
    """Stop every child still running (also registered with ``atexit``)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for child in live:
        child.stop(grace=2.0)


def wait_ready(url: str, child: Child, timeout: float) -> None:
    """Poll ministack's health route until it answers 200; fail early if it exited."""
    deadline = time.monotonic() + timeout
    while True:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url + HEALTH_PATH, timeout=1) as answer,
        ):
            if answer.status == 200:
                return
        if child.poll() is not None:
            raise MinistackUnavailable(f"ministack exited early:\n{child.log_tail()}")
        if time.monotonic() >= deadline:
            raise MinistackUnavailable(f"ministack did not answer within {timeout} s")
        time.sleep(0.05)


@dataclass
class LocalAWS:
    """ministack and the emulator, running; clients and environments that reach them."""

    url: str
    settings: LocalSettings
    emulator: SecurityIREmulator
    process: Child
    auth: bool = True
    seconds_to_start: float = 0.0
    #: Where the launcher logs custom resource requests and answers (``ministack_contexts``).
    cfn_log: Path | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def cfn_records(self) -> list[dict[str, Any]]:
        """Every custom resource request, answer PUT and settlement logged so far, in order."""
        if self.cfn_log is None or not self.cfn_log.exists():
            return []
        lines = self.cfn_log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def configure(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Change one of ministack's whitelisted runtime settings (``/_ministack/config``),
        e.g. ``{"stepfunctions._SFN_WAIT_SCALE": 0.1}``; returns what it applied."""
        request = urllib.request.Request(
            self.url + CONFIG_PATH,
            data=json.dumps(dict(settings)).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            applied: dict[str, Any] = json.loads(answer.read() or b"{}").get("applied", {})
        return applied

    @property
    def port(self) -> int:
        """ministack's port on 127.0.0.1."""
        return self.settings.port

    def client(self, service: str) -> Any:
        """A boto3 client (ministack's root caller); ``security-ir`` reaches the emulator."""
        if service not in self._clients:
            import boto3  # noqa: PLC0415 - keep the import light for the launcher's tests

            endpoint = self.emulator.endpoint_url if service == "security-ir" else self.url
            self._clients[service] = boto3.client(  # type: ignore[call-overload]
                service,
                endpoint_url=endpoint,
                region_name=REGION,
                aws_access_key_id=ROOT_KEY,
                aws_secret_access_key=ROOT_SECRET,
            )
        return self._clients[service]

    def tool_env(self, base: Mapping[str, str] = os.environ) -> dict[str, str]:
        """An environment for AWS tools (sam, the plan CLI) that reaches only these two."""
        return {
            **clean_env(base),
            **root_env(self.url),
            "AWS_ENDPOINT_URL_SECURITY_IR": self.emulator.endpoint_url,
            "SAM_CLI_TELEMETRY": "0",
        }

    def plan_clients(self) -> Any:
        """``sir_membership``'s CLI clients, configured as the CLI's, against these two."""
        import boto3  # noqa: PLC0415

        from sir_membership.commands.aws import (  # noqa: PLC0415
            CLOUDFORMATION_CONFIG,
            FUNCTION_CONFIG,
            Clients,
        )

        def make(service: str, endpoint: str, config: Any) -> Any:
            return lambda region: boto3.client(  # type: ignore[call-overload]
                service,
                endpoint_url=endpoint,
                region_name=region or REGION,
                aws_access_key_id=ROOT_KEY,
                aws_secret_access_key=ROOT_SECRET,
                config=config,
            )

        return Clients(
            make("cloudformation", self.url, CLOUDFORMATION_CONFIG),
            make("security-ir", self.emulator.endpoint_url, FUNCTION_CONFIG),
        )


def _start(
    python: Path,
    settings: LocalSettings,
    auth: bool,
    workdir: str,
    extra: Mapping[str, str] | None = None,
) -> Child:
    env = ministack_env(os.environ, settings, auth=auth, extra=extra)
    env[CFN_LOG_VARIABLE] = str(Path(workdir) / "cfn-requests.jsonl")
    # -I: neither PYTHONPATH nor the launcher's directory on ministack's path.
    return Child([str(python), "-I", str(LAUNCHER)], env, "ministack").start(workdir)


@contextlib.contextmanager
def local_aws(
    *,
    python: Path | None = None,
    auth: bool = True,
    seed: Iterable[Mapping[str, Any]] = (),
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> Iterator[LocalAWS]:
    """Start the emulator (in this process) and ministack (a child, on a free port).

    ``env``: local-only settings added to ministack's environment (see
    :func:`ministack_env`). Everything is stopped on exit, also when the
    body raises or Ctrl-C is pressed. A port taken between choosing and
    binding it is retried.
    """
    interpreter = python or ministack_python()
    began = time.monotonic()
    with (
        SecurityIREmulator() as emulator,
        tempfile.TemporaryDirectory(prefix="sirlocal-ministack-") as workdir,
    ):
        emulator.seed_many(seed)
        for attempt in range(3):
            settings = LocalSettings(emulator.endpoint_url, free_port())
            child = _start(interpreter, settings, auth, workdir, env)
            url = f"http://127.0.0.1:{settings.port}"
            try:
                wait_ready(url, child, timeout)
            except MinistackUnavailable:
                taken = "already in use" in child.log_tail()
                child.stop()
                if not taken or attempt == 2:
                    raise
                continue
            except BaseException:
                child.stop()
                raise
            try:
                yield LocalAWS(
                    url,
                    settings,
                    emulator,
                    child,
                    auth,
                    time.monotonic() - began,
                    Path(workdir) / "cfn-requests.jsonl",
                )
            finally:
                child.stop()
            return
