# One entry point for everything a developer or CI does.
# `make test` sets up from nothing (virtualenvs from pinned requirements) and
# runs every check. Python 3.13 (the Lambda runtime) is preferred; pyenv's
# 3.13 is found when it is not on PATH. docs/development.md says how long it takes.

SHELL := /bin/bash
.DEFAULT_GOAL := test

# pyenv's real binary first: its shim loops when no 3.13 is selected.
PY313 := $(shell for p in $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13 $$(command -v python3.13); do \
	[ -x "$$p" ] && timeout 20 "$$p" -c '' 2>/dev/null && { echo "$$p"; break; }; done)
PYTHON ?= $(if $(PY313),$(PY313),python3)
# sam build looks for python3.13 on PATH.
export PATH := $(if $(PY313),$(dir $(PY313)):,)$(PATH)

VENV := .venv
TOOLS := .venv-tools
SCAN := .venv-scan
MINI := .venv-ministack
DEMO := .venv-demo
BIN := $(VENV)/bin
TBIN := $(TOOLS)/bin
SBIN := $(SCAN)/bin
MBIN := $(MINI)/bin
DBIN := $(DEMO)/bin

# `make test` runs its parts side by side: the three virtualenvs build at once,
# then the checks run beside the tests; each part's output is printed in one
# block when it ends, and any failure fails the build. The tests mostly wait
# (on timeouts the scenarios inject), so pytest runs in more processes than
# there are cores. `make test JOBS=1 PYTEST_WORKERS=0` runs everything in turn;
# PYTEST_ARGS adds to pytest's arguments (e.g. PYTEST_ARGS=--durations=30).
JOBS ?= 4
PYTEST_WORKERS ?= 4
PYTEST_PARALLEL := $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist worksteal,-p no:xdist)
CHECKS := lint typecheck cfn-lint sam-validate checkov workflow-lint artifact unit

.PHONY: test checks setup lint typecheck cfn-lint sam-validate checkov workflow-lint artifact unit stateful demo reliability bench iam-tables iam-matrix clean

$(BIN)/.installed: requirements-dev.txt src/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

$(TBIN)/.installed: requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TBIN)/python -m pip install --quiet --upgrade pip
	$(TBIN)/python -m pip install --quiet -r requirements-tools.txt
	touch $@

# checkov pins a boto3 that aws-sam-cli's pin excludes: it gets a venv of its own.
$(SBIN)/.installed: requirements-scan.txt
	$(PYTHON) -m venv $(SCAN)
	$(SBIN)/python -m pip install --quiet --upgrade pip
	$(SBIN)/python -m pip install --quiet -r requirements-scan.txt
	touch $@

# ministack (the local AWS of `make demo` and the ministack end-to-end tests)
# pins an older botocore than the function's: a venv of its own, whose
# interpreter also runs the function's Lambda processes (docs/local.md).
$(MBIN)/.installed: requirements-ministack.txt
	$(PYTHON) -m venv $(MINI)
	$(MBIN)/python -m pip install --quiet --upgrade pip
	$(MBIN)/python -m pip install --quiet -r requirements-ministack.txt
	touch $@

# What `make demo` drives the story with: the package's runtime set, no dev toolchain.
$(DBIN)/.installed: requirements-demo.txt src/requirements.txt
	$(PYTHON) -m venv $(DEMO)
	$(DBIN)/python -m pip install --quiet --upgrade pip
	$(DBIN)/python -m pip install --quiet -r requirements-demo.txt
	touch $@

setup:
	@$(MAKE) --no-print-directory -j4 --output-sync=target $(BIN)/.installed $(TBIN)/.installed $(SBIN)/.installed $(MBIN)/.installed

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

cfn-lint: $(TBIN)/.installed
	$(TBIN)/cfn-lint template.yaml guardrails.yaml examples/*.yaml

sam-validate: $(TBIN)/.installed
	SAM_CLI_TELEMETRY=0 $(TBIN)/sam validate --lint --template-file template.yaml
	SAM_CLI_TELEMETRY=0 $(TBIN)/sam validate --lint --template-file guardrails.yaml

# IaC security scan: every failed check fails the build; suppressions are
# inline in the templates (checkov:skip=ID:reason), each with its reason.
checkov: $(SBIN)/.installed
	$(SBIN)/checkov --quiet --compact --framework cloudformation --skip-download \
		--file template.yaml --file guardrails.yaml $(addprefix --file ,$(wildcard examples/*.yaml))

artifact: $(TBIN)/.installed $(BIN)/.installed
	SAM_CLI_TELEMETRY=0 bash scripts/check-artifact.sh $(TBIN)/sam $(PYTHON) $(BIN)/python

# The CI example against GitHub's workflow schema (vendored in check-jsonschema: offline).
workflow-lint: $(BIN)/.installed
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows examples/ci/github-actions.yml


# The ministack end-to-end tests use ministack's venv and SAM (sam build, sam deploy).
unit: $(BIN)/.installed $(MBIN)/.installed $(TBIN)/.installed
	SIR_MINISTACK_PYTHON=$(MBIN)/python SIR_SAM=$(TBIN)/sam $(BIN)/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

checks: $(CHECKS)

test:
	@$(MAKE) --no-print-directory -j$(JOBS) --output-sync=target checks

# A readable stack story on ministack (a local AWS) and the Security IR
# emulator: no AWS account, no Docker (docs/local.md).
demo: $(DBIN)/.installed $(MBIN)/.installed $(TBIN)/.installed
	SIR_MINISTACK_PYTHON=$(MBIN)/python PYTHONPATH=src:local $(DBIN)/python -m sirlocal.ministack_demo --sam $(TBIN)/sam

# The stateful property test with a large example budget; writes docs/stateful.json,
# which `make reliability` quotes in docs/reliability.md.
stateful: $(BIN)/.installed
	SIR_STATEFUL_EXAMPLES=$${SIR_STATEFUL_EXAMPLES:-1500} SIR_STATEFUL_REPORT=docs/stateful.json \
		$(BIN)/pytest tests/test_stateful.py -p no:cacheprovider --no-cov -q

# Every end-to-end scenario and invalid declaration; writes docs/reliability.md.
reliability: $(BIN)/.installed $(TBIN)/.installed $(MBIN)/.installed
	SIR_SAM=$(TBIN)/sam PYTHONPATH=src:local $(BIN)/python -m sirlocal.reliability

# Benchmarks; writes bench/results.md and bench/results.json.
bench: $(BIN)/.installed $(TBIN)/.installed
	PYTHONPATH=src:local $(BIN)/python bench/run.py --sam $(TBIN)/sam

# The least-privilege matrix of the provider's four roles, played on ministack
# (IAM enforced); rewrites its section of docs/local.md.
iam-matrix: $(BIN)/.installed $(MBIN)/.installed $(TBIN)/.installed
	SIR_MINISTACK_PYTHON=$(MBIN)/python PYTHONPATH=src:local $(BIN)/python -m sirlocal.ministack_matrix --write --sam $(TBIN)/sam

# The IAM action tables of docs/security.md and README.md, from template.yaml
# (tests/test_iam_tables.py fails while they differ).
iam-tables: $(BIN)/.installed
	$(BIN)/python scripts/iam_tables.py --write

clean:
	rm -rf $(VENV) $(TOOLS) $(SCAN) $(MINI) $(DEMO) .aws-sam .pytest_cache .mypy_cache .ruff_cache .coverage
