# Monitoring: Elasticsearch templates, MLflow export, drift, host agent, prediction shipper,
# Kibana, local ES.
ES_PORT ?= 9200
DRIFT_ARGS ?=
AGENT_ARGS ?=
SHIP_ARGS ?=
BENCH_DRIFT_ARGS ?=

.PHONY: monitoring-setup
monitoring-setup: $(STAMP) ## Install the ES index/component templates (SQLite tables when ES_URL is unset)
	$(CLI) monitoring setup

.PHONY: export-mlflow
export-mlflow: $(STAMP) ## Sync MLflow runs, metrics and step curves into Elasticsearch (idempotent)
	$(CLI) monitoring export-mlflow

.PHONY: drift
drift: $(STAMP) ## Drift tests of recent predictions vs the champion reference, 5 % false alarms (DRIFT_ARGS="--csv f.csv --retrain")
	$(CLI) monitoring drift $(DRIFT_ARGS)

.PHONY: bench-drift
bench-drift: $(STAMP) ## Drift false-alarm rate + power at n=50..1000, CBPE error on the holdout (BENCH_DRIFT_ARGS="--windows 200"); last line JSON
	$(PY) scripts/bench_drift.py $(BENCH_DRIFT_ARGS)

.PHONY: agent
agent: $(STAMP) ## Run the host metrics agent in the foreground (AGENT_ARGS="--interval 5")
	$(CLI) monitoring agent $(AGENT_ARGS)

.PHONY: ship
ship: $(STAMP) ## Ship stored predictions to Elasticsearch (ES_URL), niced, until Ctrl-C (SHIP_ARGS="--once")
	$(CLI) serve shipper $(SHIP_ARGS)

.PHONY: kibana-import
kibana-import: $(STAMP) ## Import the Kibana data views and dashboards (KIBANA_URL)
	$(CLI) monitoring kibana-import

.PHONY: kibana-render
kibana-render: $(DEV_STAMP) ## Regenerate deploy/kibana/*.ndjson from the panel specs in core/monitoring/kibana.py
	$(PY) -c "from core.monitoring.kibana import write_all; print(*write_all(), sep='\n')"

.PHONY: es-start
es-start: ## Start a local test Elasticsearch (Maven Central integ-test zip) on ES_PORT in var/es
	bash scripts/es.sh start $(ES_PORT)

.PHONY: es-stop
es-stop: ## Stop the local test Elasticsearch
	bash scripts/es.sh stop
