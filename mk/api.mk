# API: serve it alone, benchmark it against BentoML, LitServe and `mlflow models serve`.
# How the API starts (uvicorn[standard], workers, OpenMP threads and spin) is defined once, in
# ops/services.py; `make serve`, `make run`, the benchmark, Dockerfile.api and stack.yml all use it.

BENCH_ARGS ?=
# The test Elasticsearch shares the API's cores here: it runs at low priority like the shipper, as
# monitoring on a serving box should (BENCH_ES_NICE=0 measures it at equal priority).
BENCH_ES_NICE ?= 19

.PHONY: serve
serve: $(STAMP) ## Serve the API alone in the foreground (API_PORT=8000, API_WORKERS=2, API_HOST)
	exec $(CLI) serve api

.PHONY: bench
bench: $(DEV_STAMP) ## Benchmark /predict (wrk): c=1/8, /health, 10k batch, ES shipper on/off; vs BentoML, LitServe, mlflow serve at c=8/32 on SQLite and PostgreSQL; last line JSON
	@mkdir -p var
	port=$$($(PY) -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	trap 'ES_STATE=$(CURDIR)/var/bench-es bash scripts/es.sh stop >&2' EXIT; \
	ES_NICE=$(BENCH_ES_NICE) ES_STATE=$(CURDIR)/var/bench-es bash scripts/es.sh start $$port >&2; \
	UV='$(UV)' $(PY) scripts/bench.py --es-url http://127.0.0.1:$$port --es-nice $(BENCH_ES_NICE) $(BENCH_ARGS)
