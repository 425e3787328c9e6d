# churnops — run `make` (or `make help`) for the list of targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON_VERSION ?= 3.11
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
VENV := .venv
PY := $(VENV)/bin/python
RUN := $(VENV)/bin
SRC := core api ui ops
CLI := $(RUN)/churnops
# Two installs from the same uv.lock: what running churnops needs (make run, serve, train...), and
# the developer tools on top (make test, lint, watch...). The second never removes the first.
# Both write the bytecode of every installed module (as the images do): with PYTHONDONTWRITEBYTECODE
# set, nothing is cached on first import, and each process (each test worker) compiled mlflow,
# sklearn, streamlit... again, ~10 s of every test run's collection.
STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

export PYTHONPATH := $(CURDIR)

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_.-]+:.*?## ' $(MAKEFILE_LIST) | sort -u \
	  | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

# --- install ---------------------------------------------------------------------------------------
$(STAMP): pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --user uv
	$(UV) sync --frozen --no-dev --inexact --compile-bytecode --python $(PYTHON_VERSION)
	@touch $@

$(DEV_STAMP): pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --user uv
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON_VERSION)
	@touch $@ $(STAMP)

.PHONY: install
install: $(DEV_STAMP) ## Create .venv from uv.lock with the developer tools (uv installed with pip if missing)

.PHONY: install-run
install-run: $(STAMP) ## Create .venv from uv.lock with only what running churnops needs

# --- quality gates ---------------------------------------------------------------------------------
.PHONY: format
format: $(DEV_STAMP) ## Format the code with black
	$(RUN)/black $(SRC) tests scripts

.PHONY: format-check
format-check: $(DEV_STAMP) ## Check formatting (black --check)
	$(RUN)/black --check --diff $(SRC) tests scripts

.PHONY: lint
lint: $(DEV_STAMP) ## Lint with pylint (10.00 required) and flake8
	$(RUN)/pylint --fail-under=10 $(SRC) scripts
	$(RUN)/flake8 $(SRC) tests scripts

.PHONY: typecheck
typecheck: $(DEV_STAMP) ## Type-check core, api and ui with mypy --strict
	$(RUN)/mypy $(SRC)

.PHONY: security
security: bandit audit ## Security gates: bandit and pip-audit

.PHONY: bandit
bandit: $(DEV_STAMP) ## Static security scan of our code (fails on medium/high findings)
	$(RUN)/bandit -q -c pyproject.toml -r $(SRC) scripts --severity-level medium

.PHONY: audit
audit: $(DEV_STAMP) ## pip-audit of every locked dependency against PyPI's advisory data
	@mkdir -p var
	$(UV) export --frozen --all-groups --format requirements-txt --no-emit-project > var/requirements-audit.txt
	$(PY) scripts/audit.py var/requirements-audit.txt

# Test runs write the bytecode of core, api, ui and the tests (__pycache__, ignored, removed by
# make clean) even where PYTHONDONTWRITEBYTECODE is set: else each test process (each xdist worker,
# each CLI a test starts) compiles them all again, ~8 s of its start here.
test test-fast: export PYTHONDONTWRITEBYTECODE :=

.PHONY: test
test: $(DEV_STAMP) ## Run every test (unit, data, model, api, ui, integration, e2e) with the coverage gate
	@mkdir -p var
	$(RUN)/pytest --cov --cov-report=term --cov-report=xml:var/coverage.xml --durations=40 $(PYTEST_ARGS)

# The quality gates, listed once: make ci, make pipeline-code (make watch), .ci/run, GitHub
# Actions (code.yml) and Jenkins all run `make gates`.
GATES := format-check lint typecheck security lint-ci

.PHONY: gates
gates: $(GATES) ## The quality gates: format-check, lint, typecheck, security, lint-ci

# The fast subset: no test marked slow, integration, e2e, es or stack (make watch's code pipeline).
FAST_TESTS := -m "not slow and not integration and not e2e and not es and not stack"

.PHONY: test-fast
test-fast: $(DEV_STAMP) ## The fast tests only (no slow/integration/e2e/es/stack), one process per CPU, no coverage gate
	$(RUN)/pytest -n auto $(FAST_TESTS) $(PYTEST_ARGS)

.PHONY: ci
ci: gates test ## All gates in order, then every test, stopping at the first failure

.PHONY: clean
clean: ## Remove generated state (var/, caches); keeps .venv
	rm -rf var .pytest_cache .mypy_cache .coverage coverage.xml htmlcov
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

-include mk/*.mk
