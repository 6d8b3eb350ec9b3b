"""Start, wire and always stop the local stand-ins for tests and the demo.

Why: an end-to-end test needs the emulator, DynamoDB (moto) with the
idempotency table exactly as ``template.yaml`` declares it, and the response
receiver, plus the environment a handler process needs to reach them. Child
processes run in their own process group and are killed as a group on exit,
on error, and at interpreter exit (``atexit``), so a failing test never
leaves a server behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

from sirlocal.emulator import SecurityIREmulator
from sirlocal.receiver import ResponseReceiver
from sirlocal.states_api import StatesAPI

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_REGION = "us-east-1"
DEFAULT_TABLE_NAME = "sir-membership-idempotency"

_LIVE: set[ServiceProcess] = set()
_LIVE_LOCK = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for servers that cannot bind port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_for_http(url: str, timeout: float = 30.0, process: ServiceProcess | None = None) -> None:
    """Poll ``url`` until it answers any HTTP status; fail early if ``process`` died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered: good enough
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.name} exited early:\n{process.log_tail()}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} did not answer within {timeout} s")
        time.sleep(0.05)


class ServiceProcess:
    """A child process in its own process group that is always reaped.

    With ``ready_line`` the child must print one JSON line on stdout when it
    is ready (as ``python -m sirlocal.emulator`` does); it is parsed into
    :attr:`info`. stderr (and stdout after that line) go to a log file, so
    a chatty child can never block on a full pipe.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        ready_line: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.argv = list(argv)
        self.name = name or Path(self.argv[0]).name
        self.env = dict(env) if env is not None else None
        self.ready_line = ready_line
        self.timeout = timeout
        self.info: dict[str, Any] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The child's pid (= its process group id)."""
        if self._process is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._process.pid

    def poll(self) -> int | None:
        """The exit code, or None while running."""
        return None if self._process is None else self._process.poll()

    def start(self) -> ServiceProcess:
        """Spawn the child; with ``ready_line``, wait for its JSON line (or fail, cleaned up)."""
        self._log = tempfile.NamedTemporaryFile(prefix=f"sirlocal-{self.name}-", suffix=".log")  # noqa: SIM115
        stdout = subprocess.PIPE if self.ready_line else self._log
        self._process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=self._log,
            env=self.env,
            start_new_session=True,  # own process group: killpg reaches its children too
        )
        with _LIVE_LOCK:
            _LIVE.add(self)
        if self.ready_line:
            try:
                self.info = self._read_ready_line()
            except BaseException:
                self.stop()
                raise
        return self

    def _read_ready_line(self) -> dict[str, Any]:
        assert self._process is not None
        stdout = self._process.stdout
        assert stdout is not None
        lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError(
                f"{self.name} printed no ready line within {self.timeout} s"
            ) from None
        if not line:
            self._process.wait(timeout=5)
            raise RuntimeError(f"{self.name} exited before it was ready:\n{self.log_tail()}")
        return dict(json.loads(line))

    def log_tail(self, limit: int = 4000) -> str:
        """The end of the child's stderr log (for failure messages)."""
        if self._log is None:
            return ""
        with open(self._log.name, "rb") as log:
            return log.read()[-limit:].decode("utf-8", "replace")

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds; idempotent."""
        process = self._process
        if process is not None:
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    _signal_group(process.pid, signal.SIGKILL)
                    process.wait(timeout=grace)
            _signal_group(process.pid, signal.SIGKILL)  # stragglers left in the group
            if process.stdout is not None:
                process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


@atexit.register
def stop_all() -> None:
    """Stop every child still running (registered with ``atexit``)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for process in live:
        process.stop(grace=2.0)


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment, with ``local/`` importable, for ``python -m sirlocal.*`` children."""
    env = dict(os.environ)
    local_dir = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (local_dir, env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------- servers


@dataclass
class MotoServer:
    """A running ``moto.server`` (all AWS services moto emulates, on one port)."""

    url: str
    process: ServiceProcess

    def env(self) -> dict[str, str]:
        """Point the SDK's DynamoDB client at moto."""
        return {"AWS_ENDPOINT_URL_DYNAMODB": self.url}

    def reset(self) -> None:
        """Drop every resource moto holds (``/moto-api/reset``)."""
        request = urllib.request.Request(self.url + "/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


@contextlib.contextmanager
def start_moto(port: int | None = None, timeout: float = 30.0) -> Iterator[MotoServer]:
    """Run ``python -m moto.server`` on 127.0.0.1 and yield it once it answers HTTP.

    moto cannot report an ephemeral port, so a free one is picked; on the
    rare bind race the start is retried on another port.
    """
    for attempt in range(3):
        chosen = port or free_port()
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(chosen)]
        process = ServiceProcess(argv, name="moto", env=python_env(), ready_line=False)
        process.start()
        url = f"http://127.0.0.1:{chosen}"
        try:
            wait_for_http(url + "/moto-api/", timeout, process)
        except RuntimeError:
            process.stop()
            if port is not None or attempt == 2:
                raise
            continue
        except BaseException:
            process.stop()
            raise
        try:
            yield MotoServer(url, process)
        finally:
            process.stop()
        return


@contextlib.contextmanager
def start_emulator_process(
    seed: Iterable[Mapping[str, Any]] = (), *, latency: float = 0.0, timeout: float = 30.0
) -> Iterator[ServiceProcess]:
    """``python -m sirlocal.emulator`` as a child; ``info["url"]`` is its endpoint."""
    with tempfile.TemporaryDirectory(prefix="sirlocal-seed-") as directory:
        argv = [sys.executable, "-m", "sirlocal.emulator", "--port", "0", "--latency", str(latency)]
        memberships = [dict(m) for m in seed]
        if memberships:
            seed_path = Path(directory, "seed.json")
            seed_path.write_text(json.dumps(memberships), encoding="utf-8")
            argv += ["--seed", str(seed_path)]
        with ServiceProcess(argv, name="emulator", env=python_env(), timeout=timeout) as process:
            yield process


@contextlib.contextmanager
def start_receiver_process(timeout: float = 30.0) -> Iterator[ServiceProcess]:
    """``python -m sirlocal.receiver`` as a child; ``info`` has ``url`` and ``ca``."""
    argv = [sys.executable, "-m", "sirlocal.receiver", "--port", "0"]
    with ServiceProcess(argv, name="receiver", env=python_env(), timeout=timeout) as process:
        yield process


# --------------------------------------------------------------------------- template -> table


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short-form tags (!Ref, !Sub, !GetAtt, ...)."""


def _construct_intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: str | Path = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """A CloudFormation/SAM YAML (or JSON) template as plain data, short-form tags expanded."""
    loaded = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_CfnLoader)
    if not isinstance(loaded, dict):
        raise TypeError(f"{path} is not a template (a mapping at the top)")
    return loaded


@dataclass(frozen=True)
class TableDefinition:
    """The parts of an ``AWS::DynamoDB::Table`` resource that shape the table's behaviour."""

    logical_id: str
    key_schema: list[dict[str, Any]]
    attribute_definitions: list[dict[str, Any]]
    billing_mode: str = "PROVISIONED"
    provisioned_throughput: dict[str, Any] | None = None
    global_secondary_indexes: list[dict[str, Any]] = field(default_factory=list)
    ttl_attribute: str | None = None
    point_in_time_recovery: bool = False
    table_name: str | None = None  # only when the template names it literally

    def create_table_kwargs(self, table_name: str) -> dict[str, Any]:
        """Arguments for ``dynamodb.create_table``."""
        kwargs: dict[str, Any] = {
            "TableName": table_name,
            "KeySchema": self.key_schema,
            "AttributeDefinitions": self.attribute_definitions,
            "BillingMode": self.billing_mode,
        }
        if self.provisioned_throughput is not None:
            kwargs["ProvisionedThroughput"] = self.provisioned_throughput
        if self.global_secondary_indexes:
            kwargs["GlobalSecondaryIndexes"] = self.global_secondary_indexes
        return kwargs


def table_definition(
    template: Mapping[str, Any] | str | Path = DEFAULT_TEMPLATE, logical_id: str | None = None
) -> TableDefinition:
    """The ``AWS::DynamoDB::Table`` resource of a template (the only one, or ``logical_id``)."""
    data = template if isinstance(template, Mapping) else load_template(template)
    tables = {
        name: resource
        for name, resource in (data.get("Resources") or {}).items()
        if isinstance(resource, Mapping) and resource.get("Type") == "AWS::DynamoDB::Table"
    }
    if logical_id is not None:
        tables = {k: v for k, v in tables.items() if k == logical_id}
    if len(tables) != 1:
        raise ValueError(f"expected one AWS::DynamoDB::Table, found {sorted(tables) or 'none'}")
    ((name, resource),) = tables.items()
    props = resource.get("Properties") or {}
    ttl = props.get("TimeToLiveSpecification") or {}
    pitr = props.get("PointInTimeRecoverySpecification") or {}
    indexes = [
        {k: v for k, v in index.items() if k != "ContributorInsightsSpecification"}
        for index in props.get("GlobalSecondaryIndexes") or []
    ]
    literal_name = props.get("TableName")
    return TableDefinition(
        logical_id=name,
        key_schema=list(props["KeySchema"]),
        attribute_definitions=list(props["AttributeDefinitions"]),
        billing_mode=props.get("BillingMode", "PROVISIONED"),
        provisioned_throughput=props.get("ProvisionedThroughput"),
        global_secondary_indexes=indexes,
        ttl_attribute=ttl.get("AttributeName") if ttl.get("Enabled") in (True, "true") else None,
        point_in_time_recovery=pitr.get("PointInTimeRecoveryEnabled") in (True, "true"),
        table_name=literal_name if isinstance(literal_name, str) else None,
    )


def create_table(client: Any, definition: TableDefinition, table_name: str) -> dict[str, Any]:
    """Create the table (plus TTL and PITR) through ``client``; returns DescribeTable's Table."""
    client.create_table(**definition.create_table_kwargs(table_name))
    client.get_waiter("table_exists").wait(
        TableName=table_name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100}
    )
    if definition.ttl_attribute:
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": definition.ttl_attribute},
        )
    if definition.point_in_time_recovery:
        client.update_continuous_backups(
            TableName=table_name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    return dict(client.describe_table(TableName=table_name)["Table"])


def dynamodb_client(endpoint_url: str, region: str = DEFAULT_REGION) -> Any:
    """A boto3 DynamoDB client for moto with dummy credentials (never a real account)."""
    import boto3  # noqa: PLC0415 - keep ``import sirlocal.services`` light

    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


# --------------------------------------------------------------------------- the bundle


@dataclass
class LocalServices:
    """Everything a handler needs, running: emulator, moto (with the table), receiver,
    and the local Step Functions endpoint the dispatcher starts executions on.

    ``states`` runs its tasks only once configured with their environment:
    ``services.states.configure(env=worker_env(services.child_env()), timeout=...)``.
    """

    emulator: SecurityIREmulator
    receiver: ResponseReceiver
    moto: MotoServer
    table_name: str
    table: dict[str, Any]
    states: StatesAPI
    region: str = DEFAULT_REGION

    @property
    def security_ir_url(self) -> str:
        """Emulator endpoint (``AWS_ENDPOINT_URL_SECURITY_IR``)."""
        return self.emulator.endpoint_url

    @property
    def dynamodb_url(self) -> str:
        """moto endpoint (``AWS_ENDPOINT_URL_DYNAMODB``)."""
        return self.moto.url

    def forget_paces(self) -> None:
        """Drop the memberships' learned paces (``pace#`` items) from the table.

        Each scenario starts from a fresh emulator, so from memberships with no
        history: a pace another scenario's propagation taught would delay its
        first call (a Wait state, then a second read).
        """
        import boto3  # noqa: PLC0415 - only the scenarios need a client here

        client = boto3.client(
            "dynamodb",
            endpoint_url=self.moto.url,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for page in client.get_paginator("scan").paginate(TableName=self.table_name):
            for item in page["Items"]:
                if item["id"]["S"].startswith("pace#"):
                    client.delete_item(TableName=self.table_name, Key={"id": item["id"]})

    def env(self) -> dict[str, str]:
        """Variables a handler process needs (merge over the environment, e.g. monkeypatch)."""
        return {
            "AWS_ENDPOINT_URL_SECURITY_IR": self.emulator.endpoint_url,
            "AWS_ENDPOINT_URL_DYNAMODB": self.moto.url,
            # The receiver also answers DescribeStacks with the driver's stack statuses.
            "AWS_ENDPOINT_URL_CLOUDFORMATION": self.receiver.base_url,
            "AWS_CA_BUNDLE": self.receiver.ca_path,  # botocore's own bundle, else certifi's
            # The dispatcher's state machine and the local Step Functions endpoint.
            **self.states.env(),
            "SSL_CERT_FILE": self.receiver.ca_path,
            "REQUESTS_CA_BUNDLE": self.receiver.ca_path,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "IDEMPOTENCY_TABLE_NAME": self.table_name,
            # The function answers only URLs matching these (its default is
            # CloudFormation's https://*.amazonaws.com): here, the receiver's.
            "RESPONSE_URL_PATTERNS": "https://127.0.0.1:*,https://localhost:*",
        }

    def child_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A complete environment for a child process: ``base`` (default os.environ) without
        any AWS profile/credential settings that could reach a real account, plus :meth:`env`."""
        source = dict(os.environ if base is None else base)
        blocked = (
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
        )
        env = {
            k: v
            for k, v in source.items()
            if k not in blocked and not k.startswith("AWS_ENDPOINT_URL")
        }
        env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        return env | self.env()


@contextlib.contextmanager
def local_services(
    template: str | Path = DEFAULT_TEMPLATE,
    *,
    seed: Iterable[Mapping[str, Any]] = (),
    table_name: str = DEFAULT_TABLE_NAME,
    region: str = DEFAULT_REGION,
) -> Iterator[LocalServices]:
    """Start emulator, receiver and the local Step Functions endpoint (in-process threads) and moto
    (a child) with the table.

    Everything is stopped on exit, also when the body raises.
    """
    definition = table_definition(template)
    with contextlib.ExitStack() as stack:
        emulator = stack.enter_context(SecurityIREmulator())
        emulator.seed_many(seed)
        receiver = stack.enter_context(ResponseReceiver())
        states = stack.enter_context(StatesAPI())
        moto = stack.enter_context(start_moto())
        table = create_table(dynamodb_client(moto.url, region), definition, table_name)
        yield LocalServices(emulator, receiver, moto, table_name, table, states, region)
