#!/usr/bin/env bash
# Prove the deployable artifact works with only src/requirements.txt:
#   1. `sam build` the function (python3.13, arm64) into .aws-sam/build;
#   2. in a fresh, empty python3.13 virtualenv (no pip, no packages), import
#      sir_membership.app from the built directory alone and check that
#      `handler` is callable, and that every dependency came from the artifact.
#
# Usage: scripts/check-artifact.sh [SAM] [PYTHON]
#   SAM     sam executable (default: sam on PATH)
#   PYTHON  a Python 3.13 interpreter (default: python3.13 on PATH, then pyenv's 3.13)
# Env: FUNCTION_ID (default MembershipFunction), BUILD_DIR (default .aws-sam/build),
#      TEMPLATE (default template.yaml).
set -euo pipefail

SAM=${1:-sam}
PYTHON=${2:-python3.13}
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

echo "check-artifact: artifact size $(du -sh "$artifact" | cut -f1) ($artifact)"
echo "check-artifact: OK"
