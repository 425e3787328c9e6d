# churnops — run `make` (or `make help`) for the list of targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON_VERSION ?= 3.11
UV ?= uv
VENV := .venv
PY := $(VENV)/bin/python
RUN := $(VENV)/bin
SRC := core api ui
STAMP := $(VENV)/.installed

export PYTHONPATH := $(CURDIR)

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_.-]+:.*?## ' $(MAKEFILE_LIST) | sort -u \
	  | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

# --- install ---------------------------------------------------------------------------------------
$(STAMP): pyproject.toml uv.lock
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet --user uv
	$(UV) sync --frozen --python $(PYTHON_VERSION)
	@touch $@

.PHONY: install
install: $(STAMP) ## Create .venv from uv.lock (uv is installed with pip if missing)

# --- quality gates ---------------------------------------------------------------------------------
.PHONY: format
format: $(STAMP) ## Format the code with black
	$(RUN)/black $(SRC) tests scripts

.PHONY: format-check
format-check: $(STAMP) ## Check formatting (black --check)
	$(RUN)/black --check --diff $(SRC) tests scripts

.PHONY: lint
lint: $(STAMP) ## Lint with pylint (10.00 required) and flake8
	$(RUN)/pylint --fail-under=10 $(SRC) scripts
	$(RUN)/flake8 $(SRC) tests scripts

.PHONY: typecheck
typecheck: $(STAMP) ## Type-check core, api and ui with mypy --strict
	$(RUN)/mypy $(SRC)

.PHONY: security
security: $(STAMP) ## bandit (no medium/high) and pip-audit on the locked dependencies
	$(RUN)/bandit -q -c pyproject.toml -r $(SRC) scripts --severity-level medium
	$(UV) export --frozen --format requirements-txt --no-emit-project --no-hashes > var/requirements-audit.txt
	$(RUN)/pip-audit --strict --disable-pip --no-deps -r var/requirements-audit.txt

.PHONY: test
test: $(STAMP) ## Run every test (unit, data, model, api, ui, integration, e2e) with the coverage gate
	@mkdir -p var
	$(RUN)/pytest --cov --cov-report=term --cov-report=xml:var/coverage.xml $(PYTEST_ARGS)

.PHONY: ci
ci: format-check lint typecheck security test ## All gates in order, stopping at the first failure

.PHONY: clean
clean: ## Remove generated state (var/, caches); keeps .venv
	rm -rf var .pytest_cache .mypy_cache .coverage coverage.xml htmlcov
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

-include mk/*.mk
