"""Build the Lambda package lean and reproducibly (``sam build`` runs it via src/Makefile).

Why: the function is a custom resource, so every cold start is time a stack
waits for. A plain ``sam build`` ships 439 botocore service models for the
few services the function calls, and no bytecode, so Lambda (whose
/var/task is read-only) compiles every module from source at each cold
start. This tool:

1. installs ``requirements.txt`` into the package for Lambda's platform
   (arm64, CPython 3.13; wheels only, no bytecode from pip);
2. copies the handler's package (``sir_membership``), only the modules the
   handler can import;
3. prunes what the function cannot use: botocore models of services no
   reachable code makes a client for (derived from the code, see
   :func:`model_services`; older API versions and examples of the kept
   ones too), boto3's resource and example data, Powertools modules the
   handler cannot import, ``.pyi`` stubs, scripts, ``RECORD`` files;
4. compiles bytecode (``unchecked-hash``: Lambda never writes
   ``__pycache__`` and never needs to check a source's mtime);
5. normalises what would differ between two builds of the same inputs
   (mtimes from ``SOURCE_DATE_EPOCH``, permissions, the source paths in the
   bytecode, the hash seed), so the zip from :func:`write_zip` is the same
   byte for byte.

Stdlib only: it runs on the build machine's python3.13, outside any venv.

Usage::

    python3.13 scripts/lean_package.py build --source src --out DIR [--plain]
    python3.13 scripts/lean_package.py zip DIR OUT.zip
    python3.13 scripts/lean_package.py services --source src
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Lambda's handler module (template.yaml's ``Handler`` without the function).
HANDLER_MODULE = "sir_membership.app"
#: Packages pruned to the modules reachable from the handler by static imports.
#: Only those whose imports are all plain ``import`` statements on the paths the
#: handler uses (Powertools' string imports are in parser/auth_alpha, unused).
PRUNED_TO_IMPORTS = ("sir_membership", "aws_lambda_powertools")
#: Files in ``botocore/data`` (not in a service directory) botocore reads for every
#: client: endpoints, partitions, SDK defaults and retry config. All are kept.
BOTOCORE_SHARED_DATA = (
    "_retry.json",
    "endpoints.json",
    "partitions.json",
    "sdk-default-configuration.json",
)
#: Per-service files a client can read: the model, its endpoint rules, and
#: ``get_paginator``/``get_waiter``'s definitions. (``examples-1.json`` is
#: documentation only.)
BOTOCORE_SERVICE_FILES = (
    "service-2.json",
    "endpoint-rule-set-1.json",
    "paginators-1.json",
    "waiters-2.json",
)
#: The Lambda platform (template.yaml: python3.13, arm64).
PIP_PLATFORM = (
    "--platform", "manylinux2014_aarch64", "--only-binary=:all:",
    "--python-version", "3.13", "--implementation", "cp",
)  # fmt: skip
#: Keys of a botocore model only docstrings and ``help()`` read.
DOC_KEYS = frozenset({"documentation", "documentationUrl"})
#: dist-info files that only pip uses (RECORD would also list pruned files).
DIST_INFO_DROPPED = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")
#: Where Lambda puts the package: the bytecode's source paths say so.
TASK_ROOT = "/var/task"
#: 1980-01-01 00:00:00 UTC, the earliest time a zip entry can hold.
DEFAULT_EPOCH = 315532800


class BuildError(Exception):
    """The package cannot be built as asked (the message says why and what to do)."""


# --------------------------------------------------------------------------- what the handler reaches


def _module_file(root: Path, name: str) -> Path | None:
    """The source of module ``name`` under ``root`` (a package's __init__), if any."""
    base = root.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(tree: ast.Module, name: str, is_package: bool) -> Iterator[str]:
    """Every module an ``import`` in ``tree`` may load (also inside functions)."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            yield target
            for alias in node.names:  # ``from pkg import module``
                yield f"{target}.{alias.name}"


def _unconditional_roots(tree: ast.Module) -> Iterator[str]:
    """Top-level packages the module body imports without a ``try`` or an ``if`` around."""
    for node in tree.body:
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module.split(".")[0]


def _importable(root: Path, tree: ast.Module) -> bool:
    """False when the module body needs a package that is neither stdlib nor under ``root``.

    Powertools' pydantic and X-Ray helpers import ``pydantic``/``aws_xray_sdk``
    at the top: not installed, they can never be imported, so what only they
    import is not reachable either.
    """
    return all(
        name in sys.stdlib_module_names
        or name in sys.builtin_module_names
        or name == "__future__"
        or (root / name).is_dir()
        or (root / f"{name}.py").is_file()
        for name in _unconditional_roots(tree)
    )


def reachable_modules(
    root: Path, entry: str, packages: Sequence[str], *, installed: bool = True
) -> set[str]:
    """Modules of ``packages`` under ``root`` that ``entry`` can import, transitively.

    Static: every ``import`` statement counts, wherever it is (a function's
    body, a ``TYPE_CHECKING`` block), so a module imported only on a rare
    path is kept too, unless the imported module itself can never load
    (:func:`_importable`; only checked when ``root`` holds the ``installed``
    dependencies, not for the source tree). Parents of a kept module are kept (importing
    ``a.b.c`` runs ``a`` and ``a.b``).
    """
    trees: dict[str, ast.Module | None] = {}

    def tree_of(module: str) -> ast.Module | None:
        if module not in trees:
            path = _module_file(root, module)
            trees[module] = (
                None if path is None else ast.parse(path.read_text(encoding="utf-8"), str(path))
            )
        return trees[module]

    seen: set[str] = set()
    todo = [entry]
    while todo:
        parts = todo.pop().split(".")
        if parts[0] not in packages:
            continue
        chain = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        chain = [m for m in chain if tree_of(m) is not None]
        if installed and any(not _importable(root, t) for m in chain if (t := tree_of(m))):
            continue  # this import statement always fails: nothing on it runs
        for module in chain:
            if module not in seen:
                seen.add(module)
                tree = tree_of(module)
                assert tree is not None
                is_package = _module_file(root, module) == root.joinpath(
                    *module.split("."), "__init__.py"
                )
                todo.extend(_imported_names(tree, module, is_package))
    return seen


def _module_strings(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "literal"`` constants, so ``load_service_model(SERVICE_NAME, ...)`` counts."""
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


#: Calls whose first argument names a botocore model the code needs: a client's,
#: or one the code loads itself (the validation rules read the service's model).
_MODEL_CALLS = ("client", "load_service_model")


def _client_calls(
    tree: ast.Module, path: Path, calls: Sequence[str] = ("client",)
) -> Iterator[str]:
    """Service names of ``<anything>.client("name", ...)`` (and the other ``calls``)."""
    constants = _module_strings(tree)
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in calls
        ):
            continue
        named = [k.value for k in node.keywords if k.arg == "service_name"]
        argument = node.args[0] if node.args else (named[0] if named else None)
        if isinstance(argument, ast.Name) and argument.id in constants:
            yield constants[argument.id]
        elif isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            yield argument.value
        else:
            raise BuildError(
                f"{path}:{node.lineno}: a client or model whose service is not a string "
                "literal or a module constant; write the service name literally (the "
                "package keeps only the botocore models of services named in the code)"
            )


def _named_services(source: Path, entry: str, calls: Sequence[str]) -> list[str]:
    package = entry.split(".", maxsplit=1)[0]
    services: set[str] = set()
    for module in sorted(reachable_modules(source, entry, (package,), installed=False)):
        path = _module_file(source, module)
        assert path is not None
        tree = ast.parse(path.read_text(encoding="utf-8"))
        services.update(_client_calls(tree, path, calls))
    return sorted(services)


def client_services(source: Path, entry: str = HANDLER_MODULE) -> list[str]:
    """The AWS services the handler's code makes clients for, sorted.

    Read from the code the handler can reach (``boto3.client("dynamodb")``,
    ``session.client(service_name=...)``), so a new client in any reachable
    module keeps its model in the package without a list to update. The
    development CLI (``python -m sir_membership``) is not reachable from the
    handler, so its clients do not count. These are the services its role must grant.
    """
    return _named_services(source, entry, ("client",))


def model_services(source: Path, entry: str = HANDLER_MODULE) -> list[str]:
    """The botocore models the package must keep: its clients' and those it loads itself.

    The dispatcher validates properties against the ``security-ir`` model
    (``loader.load_service_model``) without making a client of it.
    """
    return _named_services(source, entry, _MODEL_CALLS)


# --------------------------------------------------------------------------- build steps


@dataclass(frozen=True)
class Removed:
    """What pruning took out, for the build log."""

    files: int
    bytes: int


def _remove(paths: Iterable[Path]) -> Removed:
    files = size = 0
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            for file in path.rglob("*"):
                if file.is_file():
                    files += 1
                    size += file.stat().st_size
            shutil.rmtree(path)
        elif path.exists():
            files += 1
            size += path.stat().st_size
            path.unlink()
    return Removed(files, size)


def pip_install(requirements: Path, target: Path, python: str) -> None:
    """Install the pinned requirements for Lambda's platform, without bytecode."""
    argv = [
        python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-compile", "--no-warn-script-location", "--root-user-action=ignore",
        "--target", str(target), *PIP_PLATFORM, "-r", str(requirements),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise BuildError(
            f"pip install -r {requirements} failed (exit {done.returncode}): "
            f"{done.stderr.strip()[-1500:]}"
        )


def copy_handler_package(source: Path, out: Path, entry: str, *, plain: bool) -> None:
    """Copy the handler's package (only its reachable modules unless ``plain``)."""
    package = entry.split(".", maxsplit=1)[0]
    keep = reachable_modules(source, entry, (package,), installed=False)
    for path in sorted((source / package).rglob("*")):
        if "__pycache__" in path.parts or path.suffix == ".pyc" or not path.is_file():
            continue
        relative = path.relative_to(source)
        if not plain and path.suffix == ".py":
            module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
            if module not in keep:
                continue
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out / relative)


def prune_botocore_data(out: Path, services: Sequence[str]) -> Removed:
    """Keep the shared data and, per used service, its newest API version's client files."""
    data = out / "botocore" / "data"
    missing = [s for s in services if not (data / s).is_dir()]
    if missing:
        raise BuildError(f"botocore has no model for {missing}: check the service names")
    doomed: list[Path] = []
    for entry in sorted(data.iterdir()):
        if entry.is_file():
            if entry.name not in BOTOCORE_SHARED_DATA:
                doomed.append(entry)
            continue
        if entry.name not in services:
            doomed.append(entry)
            continue
        versions = sorted(p for p in entry.iterdir() if p.is_dir())
        doomed += versions[:-1]  # botocore loads the newest API version
        doomed += [p for p in entry.iterdir() if p.is_file()]
        for file in versions[-1].iterdir():
            if file.name.removesuffix(".gz") not in BOTOCORE_SERVICE_FILES:
                doomed.append(file)
    return _remove(doomed)


def _strip_documentation(value: object, *, names: bool = False) -> object:
    """``value`` without documentation keys; ``names``: a map of member names, all kept."""
    if isinstance(value, dict):
        return {
            k: _strip_documentation(v, names=k == "members" and not names)
            for k, v in value.items()
            if names or k not in DOC_KEYS
        }
    if isinstance(value, list):
        return [_strip_documentation(v) for v in value]
    return value


def slim_botocore_data(out: Path) -> Removed:
    """Models without their documentation; ``endpoints.json`` for the kept services only.

    Both are parsed at every cold start: a client parses its whole model
    (dynamodb's is 556 kB of JSON, four fifths of it documentation, which
    only docstrings and ``help()`` read), and the first client parses
    ``endpoints.json`` (1.2 MB, every service in every partition). The
    partitions' own data (regions, defaults) is kept whole. Written as
    compact ``.json`` (botocore reads ``.json`` before ``.json.gz``), which
    the zip compresses.
    """
    data = out / "botocore" / "data"
    before = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    prefixes = set()
    for model in sorted(data.glob("*/*/service-2.json*")):
        if model.suffix == ".gz":
            document = json.loads(gzip.decompress(model.read_bytes()))
            model.unlink()
        else:
            document = json.loads(model.read_bytes())
        slim = _strip_documentation(document)
        assert isinstance(slim, dict)
        prefixes.add(slim["metadata"].get("endpointPrefix", model.parent.parent.name))
        model.with_name("service-2.json").write_text(
            json.dumps(slim, separators=(",", ":")), encoding="utf-8"
        )
    endpoints = data / "endpoints.json"
    document = json.loads(endpoints.read_bytes())
    for partition in document["partitions"]:
        partition["services"] = {k: v for k, v in partition["services"].items() if k in prefixes}
    endpoints.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
    after = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    return Removed(0, before - after)


def prune_modules(out: Path, entry: str, packages: Sequence[str]) -> Removed:
    """Drop the modules of ``packages`` the handler cannot import (its own are copied so)."""
    keep = reachable_modules(out, entry, packages)
    doomed = []
    for package in packages[1:]:
        for path in (out / package).rglob("*.py"):
            module = ".".join(path.relative_to(out).with_suffix("").parts)
            if module.removesuffix(".__init__") not in keep:
                doomed.append(path)
    removed = _remove(doomed)
    leftovers = []  # what is left of a dropped sub-package (its data files)
    for package in packages[1:]:
        for directory in sorted((out / package).rglob("*")):
            if directory.is_dir() and not any(directory.rglob("*.py")):
                leftovers.append(directory)
    more = _remove(leftovers)
    return Removed(removed.files + more.files, removed.bytes + more.bytes)


def prune_unused_files(out: Path) -> Removed:
    """Files no code path of a Lambda function reads."""
    doomed: list[Path] = [out / "bin"]  # console scripts (jp.py)
    doomed += out.rglob("*.pyi")
    doomed += out.rglob("py.typed")
    doomed += [p for p in out.rglob("__pycache__") if p.is_dir()]
    for info in out.glob("*.dist-info"):
        doomed += [info / name for name in DIST_INFO_DROPPED]
    # boto3's resource models and docs examples: only boto3.resource() reads them.
    data = out / "boto3" / "data"
    doomed += list(data.iterdir()) if data.is_dir() else []
    doomed.append(out / "boto3" / "examples")
    # dateutil's bundled tz database: only dateutil.zoneinfo reads it (botocore
    # uses tzutc/tzlocal), and it warns rather than fails when it is missing.
    doomed += (out / "dateutil" / "zoneinfo").glob("*.tar.gz")
    # urllib3 in a browser (Pyodide): never on Lambda.
    doomed.append(out / "urllib3" / "contrib" / "emscripten")
    return _remove(doomed)


def compile_bytecode(out: Path, python: str) -> None:
    """``compileall`` with unchecked-hash pycs whose source paths are Lambda's."""
    env = dict(os.environ, PYTHONHASHSEED="0")  # set/frozenset constants in a fixed order
    argv = [
        python, "-I", "-m", "compileall", "-q", "-f", "--invalidation-mode", "unchecked-hash",
        "-s", str(out), "-p", TASK_ROOT, str(out),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    if done.returncode != 0:
        raise BuildError(f"compileall failed: {(done.stdout + done.stderr).strip()[-1500:]}")


def source_date_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` (reproducible-builds.org), else 1980-01-01."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value:
        return DEFAULT_EPOCH
    if not value.isdigit():
        raise BuildError(f"SOURCE_DATE_EPOCH must be seconds since 1970, not {value!r}")
    return max(int(value), DEFAULT_EPOCH)


def normalise(out: Path, epoch: int) -> None:
    """Same permissions and mtimes for every file and directory."""
    for path in [*out.rglob("*"), out]:
        path.chmod(0o755 if path.is_dir() else 0o644)
        os.utime(path, (epoch, epoch), follow_symlinks=False)


def build(
    source: Path,
    out: Path,
    python: str,
    *,
    plain: bool = False,
    entry: str = HANDLER_MODULE,
    requirements_file: str = "requirements.txt",
) -> list[str]:
    """The whole package into ``out`` (emptied first); returns the services kept.

    ``entry`` and ``requirements_file`` build another function from the same
    source (the guardrails hook: ``sir_membership.guardrails.hook`` and
    ``requirements-guardrails.txt``), with only the modules its handler reaches.
    """
    requirements = source / requirements_file
    if not requirements.is_file():
        raise BuildError(f"{requirements} not found: --source must be the function's CodeUri")
    services = model_services(source, entry)
    out.mkdir(parents=True, exist_ok=True)
    _remove(sorted(out.iterdir()))
    pip_install(requirements, out, python)
    copy_handler_package(source, out, entry, plain=plain)
    if not plain:
        steps = {
            f"botocore models (kept: {', '.join(services)})": prune_botocore_data(out, services),
            "botocore model documentation, endpoints of other services": slim_botocore_data(out),
            "modules the handler cannot import": prune_modules(out, entry, PRUNED_TO_IMPORTS),
            "stubs, scripts, boto3 resource data, pip records": prune_unused_files(out),
        }
        for what, removed in steps.items():
            print(f"lean_package: pruned {removed.files} files, {removed.bytes:,} bytes: {what}")
        compile_bytecode(out, python)
    normalise(out, source_date_epoch())
    return services


def write_zip(root: Path, target: Path, epoch: int | None = None) -> int:
    """``root`` as a deflated zip with sorted entries and fixed times; returns its size."""
    stamp = source_date_epoch() if epoch is None else epoch
    date_time = time.gmtime(stamp)[:6]
    files = sorted(p for p in root.rglob("*") if p.is_file())
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=date_time)
            info.create_system = 3  # Unix, so Lambda reads the permissions
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=9)
    return target.stat().st_size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="build the package into --out")
    make.add_argument("--source", type=Path, required=True, help="the CodeUri (src/)")
    make.add_argument("--out", type=Path, required=True, help="ARTIFACTS_DIR")
    make.add_argument("--python", default=sys.executable, help="python3.13 with pip")
    make.add_argument("--plain", action="store_true", help="no pruning, no bytecode (as before)")
    make.add_argument("--entry", default=HANDLER_MODULE, help="the handler's module")
    make.add_argument(
        "--requirements", default="requirements.txt", help="requirements file in --source"
    )
    pack = commands.add_parser("zip", help="a reproducible zip of a built package")
    pack.add_argument("root", type=Path)
    pack.add_argument("target", type=Path)
    listing = commands.add_parser("services", help="print the services the handler calls")
    listing.add_argument("--source", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            services = build(
                args.source,
                args.out,
                args.python,
                plain=args.plain,
                entry=args.entry,
                requirements_file=args.requirements,
            )
            print(f"lean_package: built {args.out} (botocore models: {', '.join(services)})")
        elif args.command == "zip":
            size = write_zip(args.root, args.target)
            print(f"lean_package: {args.target} {size:,} bytes")
        else:
            print("\n".join(client_services(args.source)))
    except BuildError as error:
        print(f"lean_package: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
