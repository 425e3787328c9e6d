# Automation: distinct pipelines, each a chain of gates that stops at the first failure,
# run through core.automation (times each step, keeps its log under var/pipelines/, notifies at the
# end); `make watch` runs the matching pipeline on every change; CI files, pre-commit, SonarQube.
# Each pipeline's steps are make targets listed in one variable, so `make -n pipeline-code` shows them.

PIPELINE_CODE ?= gates test-fast
PIPELINE_DATA ?= validate-data test-data data-drift
PIPELINE_TRAIN ?= train evaluate
PIPELINE_DEPLOY ?= docker-check docker-build docker-push deploy smoke
# pipeline-all = code, data, train; DEPLOY=1 appends the deploy pipeline (it needs a Docker engine
# and registry credentials, so it is a release decision, not part of every run).
PIPELINE_ALL ?= $(PIPELINE_CODE) $(PIPELINE_DATA) $(PIPELINE_TRAIN) \
  $(if $(filter 1 yes true,$(DEPLOY)),$(PIPELINE_DEPLOY))
# EMAIL=auto (all + failures) | always | never; NOTIFY_ARGS=--no-desktop to skip the pop-up.
EMAIL ?= auto
NOTIFY_ARGS ?=
# A plain `make` (not $(MAKE)), so `make -n pipeline-x` only prints the runner's command line.
PIPELINE_MAKE ?= make
PIPELINE_RUN = $(CLI) pipeline run --make '$(PIPELINE_MAKE)' --email $(EMAIL) $(NOTIFY_ARGS)

DATA_CSV ?= data/raw/churn.csv
# Drift of new data is reported (and alerted by core.monitoring), not a failure: drifted data is
# the reason to retrain, which pipeline-train does next. DRIFT_FAIL=1 makes it a gate (exit 3).
DRIFT_FAIL ?=
# Code tests: every test folder but the data tests (pipeline-data) and the browser e2e suite
# (`make test` runs everything), so a new folder such as tests/core/monitoring is included by default.
TEST_CODE_PATHS ?= tests --ignore=tests/data --ignore=tests/e2e
TEST_DATA_PATHS ?= tests/data

WATCH_COMMAND ?= $(MAKE) pipeline-{name}
WATCH_DEBOUNCE ?= 1.5

TOOLS_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/churnops/tools
ACTIONLINT_VERSION ?= v1.7.12
ACTIONLINT := $(TOOLS_DIR)/actionlint-$(ACTIONLINT_VERSION)/actionlint
SONAR_SCANNER ?= npx --yes sonarqube-scanner@5.0.1
WORKFLOWS := $(wildcard .github/workflows/*.yml)

# --- pipelines -------------------------------------------------------------------------------------
.PHONY: pipeline-code
pipeline-code: $(DEV_STAMP) ## Code pipeline: the quality gates (make gates), then the fast tests (make test-fast)
	$(PIPELINE_RUN) code $(PIPELINE_CODE)

.PHONY: pipeline-data
pipeline-data: $(DEV_STAMP) ## Data pipeline: validate data/ against the schema, data tests, drift vs champion
	$(PIPELINE_RUN) data $(PIPELINE_DATA)

.PHONY: pipeline-train
pipeline-train: $(DEV_STAMP) ## Training pipeline: train, evaluate, register and gate (make train), evaluate
	$(PIPELINE_RUN) train $(PIPELINE_TRAIN)

.PHONY: pipeline-deploy
pipeline-deploy: $(DEV_STAMP) ## Deploy pipeline: docker-build, docker-push, deploy, smoke (needs Docker)
	$(PIPELINE_RUN) deploy $(PIPELINE_DEPLOY)

.PHONY: pipeline-all
pipeline-all: $(DEV_STAMP) ## Code, data and train pipelines in one run, emailed at the end (DEPLOY=1 adds deploy)
	$(PIPELINE_RUN) all $(PIPELINE_ALL)

# --- pipeline steps owned here ---------------------------------------------------------------------
.PHONY: test-code
test-code: $(DEV_STAMP) ## Unit + functional tests (all of tests/ but data/ and e2e/), no coverage gate
	$(RUN)/pytest $(TEST_CODE_PATHS) $(PYTEST_ARGS)

.PHONY: test-data
test-data: $(DEV_STAMP) ## Data tests (tests/data)
	$(RUN)/pytest $(TEST_DATA_PATHS) $(PYTEST_ARGS)

.PHONY: data-drift
data-drift: $(DEV_STAMP) ## Drift of DATA_CSV vs the champion's training reference (DRIFT_FAIL=1: a gate)
	@$(MAKE) drift DRIFT_ARGS="--csv $(DATA_CSV)$(if $(filter 1 yes true,$(DRIFT_FAIL)), --fail-on-drift)"

.PHONY: docker-check
docker-check: ## Fail with a clear message unless a Docker engine answers (first deploy gate)
	@command -v $(firstword $(DOCKER)) >/dev/null || { \
	  echo "make $(or $(MAKECMDGOALS),docker-check) needs Docker: the docker CLI is not installed." >&2; exit 1; }
	@timeout 30 $(DOCKER) info >/dev/null 2>&1 || { \
	  echo "make $(or $(MAKECMDGOALS),docker-check) needs a running Docker engine: '$(DOCKER) info' failed." >&2; \
	  echo "Start Docker (or run it where Docker runs: CI's docker.yml, the Jenkins Deploy stage)." >&2; exit 1; }

.PHONY: model-version
model-version: $(STAMP) ## Print the champion's registered model version (tags the images)
	@$(CLI) pipeline model-version

# --- watch, notifications --------------------------------------------------------------------------
.PHONY: watch
watch: $(DEV_STAMP) ## Watch the project; on each change run the matching pipeline (Ctrl-C stops)
	$(CLI) watch --root . --debounce $(WATCH_DEBOUNCE) --command '$(WATCH_COMMAND)'

.PHONY: notify-flush
notify-flush: $(STAMP) ## Send the emails kept in var/outbox (SMTP was down or unset when they failed)
	$(CLI) notify flush

# --- git hooks, CI files ---------------------------------------------------------------------------
.PHONY: hooks
hooks: $(DEV_STAMP) ## Install the pre-commit hooks (black, flake8, mypy, bandit on staged files)
	$(RUN)/pre-commit install

$(ACTIONLINT):
	@command -v go >/dev/null || { \
	  echo "actionlint is built from its Go module: install Go (golang) first." >&2; exit 1; }
	GOBIN=$(dir $@) go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

.PHONY: tools
tools: $(ACTIONLINT) ## Install actionlint (ACTIONLINT_VERSION, from its Go module) under TOOLS_DIR

.PHONY: lint-ci
lint-ci: $(DEV_STAMP) $(ACTIONLINT) ## Lint the GitHub workflows (actionlint + the workflow JSON schema)
	$(ACTIONLINT) $(WORKFLOWS)
	$(RUN)/check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)

# --- SonarQube -------------------------------------------------------------------------------------
.PHONY: sonar-reports
sonar-reports: $(DEV_STAMP) ## Write the pylint/flake8/bandit reports SonarQube imports (var/reports/)
	@mkdir -p var/reports
	$(RUN)/pylint --exit-zero --output-format=parseable $(SRC) > var/reports/pylint.txt
	$(RUN)/flake8 --exit-zero --output-file=var/reports/flake8.txt $(SRC) tests scripts
	$(RUN)/bandit -q -c pyproject.toml -r $(SRC) scripts -f json -o var/reports/bandit.json \
	  --exit-zero

.PHONY: sonar
sonar: ## Send coverage + reports to SonarQube (SONAR_HOST_URL, SONAR_TOKEN); skipped when unset
	@if [ -z "$${SONAR_HOST_URL:-}" ]; then \
	  echo "sonar: skipped: SONAR_HOST_URL is not set (no SonarQube server configured)."; \
	  echo "sonar: set SONAR_HOST_URL and SONAR_TOKEN to send the analysis; this is not a gate."; \
	  exit 0; fi; \
	test -f var/coverage.xml || $(MAKE) test; \
	$(MAKE) sonar-reports; \
	$(SONAR_SCANNER) -Dsonar.host.url="$$SONAR_HOST_URL"
