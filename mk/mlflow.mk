# MLflow: hyper-parameter search, manual promotion/rollback, and the tracking UI.
# The embedded store is var/mlflow.db with artifacts under var/mlartifacts (core.settings); the UI
# serves that same store, so runs logged without a server show up in it.

MLFLOW_PORT ?= 5000
MLFLOW_HOST ?= 127.0.0.1
MLFLOW_DB ?= $(CURDIR)/var/mlflow.db
MLFLOW_ARTIFACTS ?= $(CURDIR)/var/mlartifacts
TRIALS ?= 8
REASON ?= via make

.PHONY: tune
tune: $(STAMP) ## Hyper-parameter search (TRIALS=8) as nested MLflow runs; best goes through the gate
	@mkdir -p var
	$(CLI) tune --trials $(TRIALS)

.PHONY: promote
promote: $(STAMP) ## Force VERSION=n of churn-model to champion (recorded on the version and run)
	@test -n "$(VERSION)" || { echo "usage: make promote VERSION=<n> [REASON='...']" >&2; exit 2; }
	$(CLI) promote $(VERSION) --reason "$(REASON)"

.PHONY: rollback
rollback: $(STAMP) ## Move champion back to the previous champion (recorded)
	$(CLI) rollback --reason "$(REASON)"

.PHONY: champion
champion: $(STAMP) ## Show the champion and every version of churn-model (JSON)
	$(CLI) champion

.PHONY: mlflow-ui
mlflow-ui: $(STAMP) ## MLflow UI + tracking server on MLFLOW_PORT (5000) over the embedded var/ store
	@mkdir -p var/mlartifacts
	@$(CLI) prepare >/dev/null  # the store is created/migrated under churnops' lock, not by the server
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(RUN)/mlflow server --host $(MLFLOW_HOST) --port $(MLFLOW_PORT) --workers 1 \
	  --backend-store-uri sqlite:///$(MLFLOW_DB) \
	  --serve-artifacts --artifacts-destination $(MLFLOW_ARTIFACTS)

# MLflow 3 sends anonymous usage telemetry by default; churnops never phones home.
export MLFLOW_DISABLE_TELEMETRY ?= true
