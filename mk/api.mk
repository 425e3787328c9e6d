# API: serve it alone, benchmark it against `mlflow models serve` (issue 4).
# uvicorn[standard] (httptools + uvloop). Batch scoring (sklearn's HGB) uses OpenMP: 2 threads that
# spin only briefly before sleeping (GOMP_SPINCOUNT): libgomp's default long spin made batches up to
# 10x slower when the other worker was busy; PASSIVE cost 35 % more when idle.

API_HOST ?= 127.0.0.1
API_PORT ?= 8000
API_WORKERS ?= 2
API_OMP_THREADS ?= 2
BENCH_ARGS ?=
# The test Elasticsearch shares the API's cores here: it runs at low priority like the shipper, as
# monitoring on a serving box should (BENCH_ES_NICE=0 measures it at equal priority).
BENCH_ES_NICE ?= 19

.PHONY: serve
serve: $(STAMP) ## Serve the API alone in the foreground (API_PORT=8000, API_WORKERS=2, API_HOST)
	@mkdir -p var
	OMP_NUM_THREADS=$(API_OMP_THREADS) GOMP_SPINCOUNT=10000 exec $(RUN)/uvicorn api.main:create_app --factory \
	  --host $(API_HOST) --port $(API_PORT) --workers $(API_WORKERS) \
	  --loop uvloop --http httptools --no-access-log --timeout-graceful-shutdown 30

.PHONY: bench
bench: $(STAMP) ## Benchmark /predict vs mlflow models serve vs /health (wrk, c=1/8), 10k batch, ES shipper on/off + catch-up; last line JSON
	@mkdir -p var
	port=$$($(PY) -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	ES_NICE=$(BENCH_ES_NICE) ES_STATE=$(CURDIR)/var/bench-es bash scripts/es.sh start $$port >&2; \
	trap 'ES_STATE=$(CURDIR)/var/bench-es bash scripts/es.sh stop >&2' EXIT; \
	$(PY) scripts/bench.py --es-url http://127.0.0.1:$$port --es-nice $(BENCH_ES_NICE) $(BENCH_ARGS)
