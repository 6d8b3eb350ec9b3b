#!/usr/bin/env bash
# Prove the deployable artifact works with only src/requirements.txt:
#   1. `sam build` the function (python3.13, arm64) into .aws-sam/build
#      (src/Makefile: scripts/lean_package.py, pruned, bytecode compiled);
#   2. in a fresh, empty python3.13 virtualenv (no pip, no packages), import
#      sir_membership.app from the built directory alone and check that
#      `handler` is callable, that every dependency came from the artifact,
#      from its shipped unchecked-hash bytecode, and that botocore's CA bundle
#      is there;
#      and that its slimmed botocore data resolves the same endpoints, signing
#      names and regions as the full botocore of the development venv;
#   3. play a whole stack lifecycle (create, update, an invalid update, a
#      failure part-way and its rollback, delete) through that handler, on a
#      bare python3.13 -S -B, against the local stand-ins
#      (local/sirlocal/artifact_check.py);
#   4. build again into a scratch directory and check the two packages give
#      the same zip, byte for byte (scripts/lean_package.py zip).
#
# Usage: scripts/check-artifact.sh [SAM] [PYTHON] [DEV_PYTHON]
#   SAM         sam executable (default: sam on PATH)
#   PYTHON      a Python 3.13 interpreter (default: python3.13 on PATH, then pyenv's 3.13)
#   DEV_PYTHON  the development venv's python, with moto (default: .venv/bin/python)
# Env: FUNCTION_ID (default MembershipFunction), BUILD_DIR (default .aws-sam/build),
#      TEMPLATE (default template.yaml).
set -euo pipefail

SAM=${1:-sam}
PYTHON=${2:-python3.13}
DEV_PYTHON=${3:-.venv/bin/python}
FUNCTION_ID=${FUNCTION_ID:-MembershipFunction}
BUILD_DIR=${BUILD_DIR:-.aws-sam/build}
TEMPLATE=${TEMPLATE:-template.yaml}

die() {
    echo "check-artifact: $*" >&2
    exit 1
}

# A working Python 3.13: the one given, else python3.13 on PATH, else pyenv's.
# Each candidate is probed under a timeout: a pyenv shim without a selected
# 3.13 fails, and one reached through a PATH entry pyenv does not recognise
# (e.g. ".../shims/" with a trailing slash) re-executes itself forever.
probe() {
    timeout 20 "$1" -c 'import os, sys
if sys.version_info[:2] == (3, 13):
    exe = os.path.join(sys.base_prefix, "bin", "python3.13")
    print(exe if os.access(exe, os.X_OK) else sys.executable)' 2>/dev/null
}
PYTHON313=""
shopt -s nullglob
pyenv_313=("${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13)
shopt -u nullglob
for candidate in "$PYTHON" "$(command -v python3.13 || true)" "${pyenv_313[@]}"; do
    [[ -n "$candidate" ]] || continue
    if PYTHON313=$(probe "$candidate") && [[ -n "$PYTHON313" ]]; then
        break
    fi
    PYTHON313=""
done
[[ -n "$PYTHON313" ]] ||
    die "no working python3.13 found (tried '$PYTHON', python3.13 on PATH, pyenv versions); sam build needs python3.13 for Runtime python3.13: install Python 3.13"
[[ "$PYTHON313" == "$PYTHON" ]] || echo "check-artifact: using $PYTHON313 (not '$PYTHON')"
# sam build resolves the runtime "python3.13" by that name on PATH: put the
# working interpreter's directory first.
PATH="$(dirname "$PYTHON313"):$PATH"
export PATH
PYTHON=$PYTHON313
command -v "$SAM" >/dev/null 2>&1 || die "sam executable not found: $SAM"
[[ -f "$TEMPLATE" ]] || die "template not found: $TEMPLATE (run from the repository root)"

echo "check-artifact: sam build ($("$SAM" --version))"
SAM_CLI_TELEMETRY=0 "$SAM" build --template-file "$TEMPLATE" --build-dir "$BUILD_DIR" ||
    die "sam build failed"

artifact="$BUILD_DIR/$FUNCTION_ID"
[[ -f "$artifact/sir_membership/app.py" ]] ||
    die "$artifact/sir_membership/app.py missing: is the function's logical id $FUNCTION_ID?"
artifact=$(cd "$artifact" && pwd -P)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv --without-pip "$tmp/venv" || die "cannot create a virtualenv with $PYTHON"

cat >"$tmp/check_import.py" <<'PY'
import importlib
import importlib.metadata
import os
import sys

artifact = os.environ["ARTIFACT"]
sys.path.insert(0, artifact)
site = [p for p in sys.path if p.endswith("site-packages")]
leftovers = [n for p in site if os.path.isdir(p) for n in os.listdir(p)]
if leftovers:
    sys.exit(f"the empty venv is not empty: {leftovers}")

app = importlib.import_module("sir_membership.app")
if not callable(getattr(app, "handler", None)):
    sys.exit("sir_membership.app.handler is missing or not callable")
print(f"sir_membership.app.handler: {app.handler!r}")

outside = []
for name in ("sir_membership", "boto3", "botocore", "crhelper", "aws_lambda_powertools"):
    module = sys.modules.get(name)
    if module is None:
        print(f"  {name}: not imported")
        continue
    path = os.path.realpath(module.__file__ or "")
    if not path.startswith(artifact + os.sep):
        outside.append(f"{name} from {path}")
    dist = {"sir_membership": None, "aws_lambda_powertools": "aws-lambda-powertools"}.get(name, name)
    try:
        version = importlib.metadata.version(dist) if dist else "-"
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    print(f"  {name} {version}: {os.path.relpath(path, artifact)}")
if outside:
    sys.exit(f"imported from outside the artifact: {outside}")
third_party = sorted(
    {m.split(".")[0] for m, mod in list(sys.modules.items())
     if getattr(mod, "__file__", None) and os.path.realpath(mod.__file__).startswith(artifact + os.sep)}
)
print(f"top-level modules loaded from the artifact: {', '.join(third_party)}")

# Bytecode shipped: every module came from an unchecked-hash pyc of the artifact
# (flags 0b01 in the pyc header), so Lambda compiles nothing at a cold start.
uncompiled = []
for name, mod in list(sys.modules.items()):
    origin = os.path.realpath(getattr(mod, "__file__", None) or "")
    if not origin.startswith(artifact + os.sep):
        continue
    cached = getattr(mod, "__cached__", None)
    if not cached or not os.path.isfile(cached):
        uncompiled.append(name)
        continue
    with open(cached, "rb") as pyc:
        header = pyc.read(8)
    if int.from_bytes(header[4:8], "little") != 0b01:
        uncompiled.append(f"{name} (not unchecked-hash)")
if uncompiled:
    sys.exit(f"modules without shipped unchecked-hash bytecode: {sorted(uncompiled)}")
from botocore.httpsession import get_cert_path
if not os.path.isfile(get_cert_path(True)):
    sys.exit(f"botocore's CA bundle is missing: {get_cert_path(True)}")
PY

# -I: isolated mode (ignores PYTHONPATH, user site and the current directory),
# so nothing but the empty venv's stdlib and the artifact can be imported.
# Dummy credentials and region; no network is needed to import.
if ! env -i PATH="/usr/bin:/bin" HOME="$tmp" \
    AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE \
    AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY \
    AWS_EC2_METADATA_DISABLED=true \
    IDEMPOTENCY_TABLE_NAME=x \
    POWERTOOLS_SERVICE_NAME=sir-membership POWERTOOLS_LOG_LEVEL=INFO \
    ARTIFACT="$artifact" \
    "$tmp/venv/bin/python" -I "$tmp/check_import.py"; then
    die "the built artifact does not import with only src/requirements.txt"
fi

[[ -x "$DEV_PYTHON" ]] || die "development python not found: $DEV_PYTHON (run make setup)"

# The package keeps endpoints.json for its own services only and its models
# without documentation: each client must resolve what the full botocore does,
# in every partition (no endpoint overrides here, unlike the lifecycle below).
cat >"$tmp/endpoints.py" <<'PY'
import json
import sys
import boto3
out = {}
for service in sys.argv[1:]:  # the services the package keeps models for
    for region in ("us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "cn-north-1"):
        client = boto3.client(service, region_name=region)
        operation = client.meta.service_model.operation_names[0]
        resolved = client._ruleset_resolver.construct_endpoint(
            operation_model=client.meta.service_model.operation_model(operation),
            call_args={}, request_context={},
        )
        out[f"{service} {region}"] = [
            client.meta.endpoint_url, resolved.url,
            client.meta.service_model.signing_name, client._request_signer.region_name,
        ]
print(json.dumps(out, indent=0, sort_keys=True))
PY
probe_env=(env -i PATH="/usr/bin:/bin" HOME="$tmp" AWS_DEFAULT_REGION=us-east-1
    AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
    AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
    IDEMPOTENCY_TABLE_NAME=x)
mapfile -t services < <("$PYTHON" scripts/lean_package.py services --source src)
"${probe_env[@]}" PYTHONPATH="$artifact" "$tmp/venv/bin/python" -S "$tmp/endpoints.py" "${services[@]}" >"$tmp/endpoints-artifact.json" ||
    die "endpoint probe failed on the artifact"
"${probe_env[@]}" "$DEV_PYTHON" "$tmp/endpoints.py" "${services[@]}" >"$tmp/endpoints-full.json" ||
    die "endpoint probe failed in the development venv"
diff "$tmp/endpoints-full.json" "$tmp/endpoints-artifact.json" >&2 ||
    die "the artifact's botocore data resolves other endpoints than the full botocore (above: full < > artifact)"
echo "check-artifact: endpoints, signing names and regions as the full botocore's (${services[*]}; $(grep -c '": \[' "$tmp/endpoints-full.json") service/region pairs)"
echo "check-artifact: stack lifecycle through the built handler"
PYTHONPATH=local "$DEV_PYTHON" -m sirlocal.artifact_check --artifact "$artifact" --python "$PYTHON" ||
    die "the stack lifecycle failed on the built artifact ($artifact): a file the function needs is missing?"

echo "check-artifact: second build (reproducibility)"
LEAN=scripts/lean_package.py
make --no-print-directory -C src build-MembershipFunction ARTIFACTS_DIR="$tmp/second" PYTHON313="$PYTHON" \
    >"$tmp/second.log" 2>&1 || { cat "$tmp/second.log" >&2; die "the second build failed"; }
"$PYTHON" "$LEAN" zip "$artifact" "$tmp/first.zip" >/dev/null
"$PYTHON" "$LEAN" zip "$tmp/second" "$tmp/second.zip" >/dev/null
if ! cmp -s "$tmp/first.zip" "$tmp/second.zip"; then
    diff <(cd "$artifact" && find . -type f -exec sha256sum {} + | sort -k2) \
        <(cd "$tmp/second" && find . -type f -exec sha256sum {} + | sort -k2) | head -20 >&2 || true
    die "two builds of the same inputs gave different zips"
fi
zipped=$(stat -c %s "$tmp/first.zip")
echo "check-artifact: two builds, the same zip: $zipped bytes, sha256 $(sha256sum "$tmp/first.zip" | cut -c1-16)"
(( zipped <= 3000000 )) || echo "check-artifact: WARNING: the zipped package is over the 3 MB goal ($zipped bytes)"
echo "check-artifact: artifact size $(du -sh "$artifact" | cut -f1) unzipped ($artifact)"
echo "check-artifact: OK"
