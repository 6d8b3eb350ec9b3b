# One entry point for everything a developer or CI does.
# `make test` sets up from nothing (virtualenvs from pinned requirements) and
# runs every check. Python 3.13 (the Lambda runtime) is preferred; pyenv's
# 3.13 is found when it is not on PATH.

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
BIN := $(VENV)/bin
TBIN := $(TOOLS)/bin

.PHONY: test setup lint typecheck cfn-lint sam-validate workflow-lint artifact unit demo reliability bench clean

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

setup: $(BIN)/.installed $(TBIN)/.installed

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

cfn-lint: $(TBIN)/.installed
	$(TBIN)/cfn-lint template.yaml examples/*.yaml

sam-validate: $(TBIN)/.installed
	SAM_CLI_TELEMETRY=0 $(TBIN)/sam validate --lint --template-file template.yaml

# The CI example against GitHub's workflow schema (vendored in check-jsonschema: offline).
workflow-lint: $(BIN)/.installed
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows examples/ci/github-actions.yml

artifact: $(TBIN)/.installed
	SAM_CLI_TELEMETRY=0 bash scripts/check-artifact.sh $(TBIN)/sam $(PYTHON)

unit: $(BIN)/.installed
	$(BIN)/pytest

test: lint typecheck cfn-lint sam-validate workflow-lint artifact unit

# A readable stack story against the local emulator (no AWS account needed).
demo: $(BIN)/.installed
	PYTHONPATH=src:local $(BIN)/python -m sirlocal.demo

# Every end-to-end scenario and invalid declaration; writes docs/reliability.md.
reliability: $(BIN)/.installed
	PYTHONPATH=src:local $(BIN)/python -m sirlocal.reliability

# Benchmarks; writes bench/results.md and bench/results.json.
bench: $(BIN)/.installed $(TBIN)/.installed
	PYTHONPATH=src:local $(BIN)/python bench/run.py --sam $(TBIN)/sam

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache .coverage
