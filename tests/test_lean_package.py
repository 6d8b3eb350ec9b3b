"""The lean package build (scripts/lean_package.py): what it keeps, and that it is reproducible.

The whole build runs in ``make artifact`` (scripts/check-artifact.sh: a stack
lifecycle through the built handler, two builds compared); these tests pin
the rules it builds by, on small trees, and check the services it derives
from the code against the clients the handler really makes.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import lean_package  # noqa: E402

# Records the service of every botocore client made while importing the handler.
_RECORD_CLIENTS = """
import json, sys
import botocore.session
made = []
original = botocore.session.Session.create_client
def create_client(self, service_name, *args, **kwargs):
    made.append(service_name)
    return original(self, service_name, *args, **kwargs)
botocore.session.Session.create_client = create_client
if sys.argv[1] == "sir_membership.app":
    import sir_membership.app
else:
    import sir_membership.stack_status
    import sir_membership.tasks
    sir_membership.tasks.security_ir()  # made by the first step, not at import
    sir_membership.stack_status.cloudformation_client()  # made on a Delete that needs it
print(json.dumps(sorted(set(made))))
"""


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("entry", ["sir_membership.app", "sir_membership.tasks"])
def test_derived_services_are_the_clients_the_handler_makes(entry: str) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT / "src"),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "IDEMPOTENCY_TABLE_NAME": "table",
        "POWERTOOLS_SERVICE_NAME": "sir-membership",
    }
    done = subprocess.run(
        [sys.executable, "-c", _RECORD_CLIENTS, entry],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    made = json.loads(done.stdout.strip().splitlines()[-1])
    derived = lean_package.client_services(ROOT / "src", entry)
    assert derived == made
    expected = {
        "sir_membership.app": ["dynamodb", "stepfunctions"],
        "sir_membership.tasks": ["cloudformation", "dynamodb", "security-ir"],
    }
    assert derived == expected[entry]


def test_the_dispatcher_keeps_the_model_it_validates_with_but_makes_no_client_of_it() -> None:
    """Its package must carry security-ir's model (properties are checked before a start)."""
    assert lean_package.model_services(ROOT / "src") == ["dynamodb", "security-ir", "stepfunctions"]


#: botocore's service name -> IAM's action prefix, where the two differ.
IAM_PREFIX = {"stepfunctions": "states"}
#: Granted for what Lambda and DynamoDB do on the function's behalf, not for a client.
NOT_CLIENTS = {"logs", "kms"}


def _tasks_module_landed() -> bool:
    tasks = ROOT / "src" / "sir_membership" / "tasks"
    return tasks.with_suffix(".py").is_file() or (tasks / "__init__.py").is_file()


@pytest.mark.skipif(
    not _tasks_module_landed(), reason="sir_membership.tasks (Work and Answer) has not landed"
)
def test_each_function_makes_clients_for_the_services_its_role_grants() -> None:
    """A grant no code of the function's package reaches is not least privilege; a client
    no grant allows fails at run time (the dispatcher, for one, must not reach security-ir).
    Work and Answer share one entry module (``sir_membership.tasks``), so one package: its
    clients are checked against what the two roles grant together."""
    import iam_tables  # noqa: PLC0415

    template = iam_tables.load_template()
    grants = iam_tables.grants(template)
    functions = {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert set(functions) == {"MembershipFunction", "WorkFunction", "AnswerFunction"}
    made: dict[str, set[str]] = {}
    granted: dict[str, set[str]] = {}
    for name, function in functions.items():
        entry = function["Handler"].rsplit(".", 1)[0]
        role = function["Role"]["Fn::GetAtt"][0]
        services = lean_package.client_services(ROOT / "src", entry)
        made[entry] = {IAM_PREFIX.get(s, s) for s in services}
        mine = {g.action.split(":", 1)[0] for g in grants if g.role == role} - NOT_CLIENTS
        assert mine <= made[entry], (name, mine - made[entry])
        granted[entry] = granted.get(entry, set()) | mine
    assert made == granted
    assert set(made) == {"sir_membership.app", "sir_membership.tasks"}


def test_a_client_in_any_module_the_handler_reaches_is_picked_up(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "sir_membership/__init__.py": "",
            "sir_membership/app.py": (
                "import boto3\nfrom . import later\nCLIENT = boto3.client('security-ir')\n"
            ),
            "sir_membership/later.py": (
                "def invoke_self():\n    from .selfcall import client\n    return client()\n"
            ),
            "sir_membership/selfcall.py": (
                "import boto3\n"
                "def client():\n"
                "    return boto3.session.Session().client(service_name='lambda')\n"
            ),
            "sir_membership/cli.py": "import boto3\nboto3.client('cloudformation')\n",
        },
    )
    assert lean_package.client_services(tmp_path) == ["lambda", "security-ir"]
    kept = lean_package.reachable_modules(
        tmp_path, "sir_membership.app", ("sir_membership",), installed=False
    )
    assert "sir_membership.cli" not in kept
    assert {"sir_membership", "sir_membership.later", "sir_membership.selfcall"} <= kept


def test_a_client_whose_service_is_not_a_literal_is_a_build_error(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "sir_membership/__init__.py": "",
            "sir_membership/app.py": (
                "import boto3, os\nNAME = os.environ['S']\nC = boto3.client(NAME)\n"
            ),
        },
    )
    with pytest.raises(lean_package.BuildError, match=r"app\.py:3: .*string literal"):
        lean_package.client_services(tmp_path)


def test_modules_that_can_never_import_are_not_followed(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "sir_membership/__init__.py": "",
            "sir_membership/app.py": "import tool\n",
            "tool/__init__.py": "from tool import core\n",
            "tool/core.py": (
                "def to_dict(model):\n"
                "    from tool.web.compat import dump\n"  # needs pydantic: never loads
                "    return dump(model)\n"
                "def rare():\n"
                "    import tool.rare\n"
            ),
            "tool/rare.py": "import json\n",
            "tool/web/__init__.py": "from tool.web import routes\n",
            "tool/web/routes.py": "",
            "tool/web/compat.py": "from pydantic import BaseModel\n",
            "tool/unused.py": "",
        },
    )
    kept = lean_package.reachable_modules(
        tmp_path, "sir_membership.app", ("sir_membership", "tool")
    )
    assert kept == {"sir_membership", "sir_membership.app", "tool", "tool.core", "tool.rare"}
    removed = lean_package.prune_modules(tmp_path, "sir_membership.app", ("sir_membership", "tool"))
    assert removed.files == 4  # web/__init__, web/routes, web/compat, unused
    assert not (tmp_path / "tool" / "web").exists()
    assert (tmp_path / "tool" / "rare.py").is_file()


def test_botocore_data_keeps_shared_files_and_the_newest_version_of_used_services(
    tmp_path: Path,
) -> None:
    data = "botocore/data/"
    _write(
        tmp_path,
        {
            **{data + name: "{}" for name in lean_package.BOTOCORE_SHARED_DATA},
            data + "dynamodb/2011-12-05/service-2.json.gz": "old",
            data + "dynamodb/2012-08-10/service-2.json.gz": "new",
            data + "dynamodb/2012-08-10/endpoint-rule-set-1.json.gz": "rules",
            data + "dynamodb/2012-08-10/examples-1.json": "docs",
            data + "dynamodb/2012-08-10/waiters-2.json": "{}",
            data + "s3/2006-03-01/service-2.json.gz": "unused",
        },
    )
    lean_package.prune_botocore_data(tmp_path, ["dynamodb"])
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(
        [
            *(data + name for name in lean_package.BOTOCORE_SHARED_DATA),
            data + "dynamodb/2012-08-10/endpoint-rule-set-1.json.gz",
            data + "dynamodb/2012-08-10/service-2.json.gz",
            data + "dynamodb/2012-08-10/waiters-2.json",
        ]
    )
    with pytest.raises(lean_package.BuildError, match="no model for \\['lambda'\\]"):
        lean_package.prune_botocore_data(tmp_path, ["lambda"])


_NAMES = st.lists(
    st.text(alphabet="abcdef_", min_size=1, max_size=6).map(lambda s: s + ".py"),
    min_size=1,
    max_size=6,
    unique=True,
)


@settings(max_examples=25, deadline=None)
@given(names=_NAMES, order=st.randoms(), mtimes=st.lists(st.integers(10**9, 2 * 10**9)))
def test_the_zip_depends_on_the_files_only(
    tmp_path_factory: pytest.TempPathFactory, names: list[str], order: object, mtimes: list[int]
) -> None:
    first, second = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    shuffled = list(names)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    for root, sequence in ((first, names), (second, shuffled)):
        for i, name in enumerate(sequence):
            path = root / "pkg" / name
            path.parent.mkdir(exist_ok=True)
            path.write_text(f"# {name}\n", encoding="utf-8")
            stamp = mtimes[i % len(mtimes)] if mtimes and root == second else 10**9
            os.utime(path, (stamp, stamp))
    a = lean_package.write_zip(first, first.with_suffix(".zip"), epoch=315532800)
    b = lean_package.write_zip(second, second.with_suffix(".zip"), epoch=315532800)
    assert a == b
    assert first.with_suffix(".zip").read_bytes() == second.with_suffix(".zip").read_bytes()
    with zipfile.ZipFile(first.with_suffix(".zip")) as archive:
        listed = archive.namelist()
        assert listed == sorted(f"pkg/{n}" for n in names)
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.external_attr >> 16 for i in archive.infolist()} == {0o100644}


def test_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert lean_package.source_date_epoch() == lean_package.DEFAULT_EPOCH
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert lean_package.source_date_epoch() == 1700000000
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(lean_package.BuildError, match="SOURCE_DATE_EPOCH"):
        lean_package.source_date_epoch()


def test_models_lose_their_documentation_and_endpoints_keep_the_used_services(
    tmp_path: Path,
) -> None:
    data = tmp_path / "botocore" / "data"
    model = {
        "metadata": {"endpointPrefix": "dynamodb", "documentation": "x" * 100},
        "documentation": "The service.",
        "operations": {"GetItem": {"name": "GetItem", "documentation": "Reads.", "input": {}}},
        "shapes": {
            "Key": {"type": "string", "pattern": "^k$", "documentation": "A key."},
            "Page": {
                "type": "structure",
                "members": {"documentation": {"shape": "Key", "documentation": "A field."}},
            },
        },
    }
    (data / "dynamodb" / "2012-08-10").mkdir(parents=True)
    (data / "dynamodb" / "2012-08-10" / "service-2.json.gz").write_bytes(
        gzip.compress(json.dumps(model).encode())
    )
    partition = {"partition": "aws", "regions": {"us-east-1": {}}, "services": {}}
    partition["services"] = {"dynamodb": {"endpoints": {}}, "s3": {"endpoints": {}}}
    (data / "endpoints.json").write_text(json.dumps({"partitions": [partition], "version": 3}))
    lean_package.slim_botocore_data(tmp_path)
    assert not (data / "dynamodb" / "2012-08-10" / "service-2.json.gz").exists()
    slim = json.loads((data / "dynamodb" / "2012-08-10" / "service-2.json").read_text())
    assert slim == {
        "metadata": {"endpointPrefix": "dynamodb"},
        "operations": {"GetItem": {"name": "GetItem", "input": {}}},
        "shapes": {
            "Key": {"type": "string", "pattern": "^k$"},
            "Page": {"type": "structure", "members": {"documentation": {"shape": "Key"}}},
        },
    }
    endpoints = json.loads((data / "endpoints.json").read_text())
    assert endpoints["version"] == 3
    assert endpoints["partitions"][0]["regions"] == {"us-east-1": {}}
    assert list(endpoints["partitions"][0]["services"]) == ["dynamodb"]


HOOK_MODULE = "sir_membership.guardrails.hook"


def test_the_guardrails_hook_is_not_in_the_providers_package() -> None:
    src = ROOT / "src"
    provider = lean_package.reachable_modules(
        src, lean_package.HANDLER_MODULE, ("sir_membership",), installed=False
    )
    assert [m for m in provider if m.startswith("sir_membership.guardrails")] == []
    hook = lean_package.reachable_modules(src, HOOK_MODULE, ("sir_membership",), installed=False)
    assert {
        HOOK_MODULE,
        "sir_membership.guardrails.rules",
        "sir_membership.properties",
        "sir_membership.plan",
        "sir_membership.preview.template",
    } <= hook
    assert [m for m in hook if m.startswith(("sir_membership.app", "sir_membership.cli"))] == []
    assert [m for m in hook if m.startswith("sir_membership.commands")] == []
    # The hook's clients: GetMembership and (for deletions) GetTemplate, nothing else.
    assert lean_package.client_services(src, HOOK_MODULE) == ["cloudformation", "security-ir"]


def test_the_hooks_requirements_are_the_providers_pins_and_pyyaml() -> None:
    def pins(path: Path) -> dict[str, str]:
        lines = path.read_text().splitlines()
        return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))

    hook = pins(ROOT / "src" / "requirements-guardrails.txt")
    provider = pins(ROOT / "src" / "requirements.txt")
    dev = pins(ROOT / "requirements-dev.txt")
    assert {k: v for k, v in hook.items() if k in provider} == {
        k: provider[k] for k in hook if k in provider
    }
    assert hook["PyYAML"] == dev["PyYAML"]
    assert "crhelper" not in hook
    assert "aws-lambda-powertools" not in hook
    makefile = (ROOT / "src" / "Makefile").read_text()
    assert f"--entry {HOOK_MODULE} --requirements requirements-guardrails.txt" in makefile


def test_a_package_without_powertools_prunes_cleanly(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "sir_membership/__init__.py": "",
            "sir_membership/guardrails/__init__.py": "",
            "sir_membership/guardrails/hook.py": "import yaml\n",
            "yaml/__init__.py": "",
        },
    )
    removed = lean_package.prune_modules(tmp_path, HOOK_MODULE, lean_package.PRUNED_TO_IMPORTS)
    assert removed.files == 0
    assert (tmp_path / "yaml" / "__init__.py").is_file()
