#!/usr/bin/env bash
# Smoke test of a deployed churnops stack: what a user runs after `make deploy` to see it works.
#
#   scripts/smoke.sh            (or `make smoke`)
#
# Waits (up to SMOKE_TIMEOUT seconds) for the API to be ready, then checks, printing one line each:
#   API /health and /ready (ready, or degraded = serving the cached champion), POST /predict with the
#   documented churner (core.schema.EXAMPLE_CHURNER), UI /_stcore/health, MLflow /health,
#   Elasticsearch cluster health (as `elastic`, password from SECRETS_DIR), Kibana /api/status, and
#   that the prediction reached the churnops-predictions data stream.
# Exit status 0 only when every check passed. URLs default to this host's published ports; MLflow
# and Elasticsearch are not published, so they are checked from inside an API task of the stack
# STACK (docker exec, on this node) at their service names.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
API_URL=${SMOKE_API_URL:-http://localhost:8000}
UI_URL=${SMOKE_UI_URL:-http://localhost:8501}
STACK=${STACK:-churnops}
DOCKER=${DOCKER:-docker}
MLFLOW_URL=http://mlflow:5000
ES_URL=http://elasticsearch:9200
KIBANA_URL=${SMOKE_KIBANA_URL:-http://localhost:5601}
SECRETS_DIR=${SECRETS_DIR:-$ROOT/secrets}
TIMEOUT=${SMOKE_TIMEOUT:-300}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

failures=0
ok() { printf 'ok    %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*" >&2; failures=$((failures + 1)); }

# json FIELD: print a top-level field of the JSON document on stdin ('' when absent).
json() {
  "$PYTHON" -c 'import json, sys; v = json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1"
}

# wait_for URL SECONDS: poll until the URL answers 2xx; prints the last body. While it waits, a
# line on stderr every 30 s says what it waits for and the last answer (a stack not deployed, a
# task still starting), so a wait is never silent.
wait_for() {
  local url=$1 started=$SECONDS deadline=$((SECONDS + $2)) body="" said=$SECONDS
  while :; do
    if body=$(curl -fsS --max-time 5 "$url" 2>/dev/null); then
      printf '%s' "$body"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      curl -sS --max-time 5 "$url" 2>&1 || true
      return 1
    fi
    if ((SECONDS - said >= 30)); then
      said=$SECONDS
      echo "   waiting for $url: $((SECONDS - started)) s of $2 s ($(curl -sS --max-time 5 -o /dev/null -w 'HTTP %{http_code}' "$url" 2>&1 | tail -n 1))" >&2
    fi
    sleep 5
  done
}

echo "== churnops smoke test (API $API_URL, timeout ${TIMEOUT}s)"

# --- API ------------------------------------------------------------------------------------------
if wait_for "$API_URL/health" "$TIMEOUT" >/dev/null; then ok "API /health"; else fail "API /health"; fi

if ready=$(wait_for "$API_URL/ready" "$TIMEOUT"); then
  ok "API /ready: $(json status <<<"$ready") (model version $(json model_version <<<"$ready"))"
else
  fail "API /ready: ${ready:-no answer}"
  echo "      no champion yet? train one: make stack-train (POST /retrain with the API key)" >&2
fi

example=$(PYTHONPATH=$ROOT "$PYTHON" -c \
  'import json; from core.schema import EXAMPLE_CHURNER; print(json.dumps(EXAMPLE_CHURNER))')
if answer=$(curl -fsS --max-time 10 -H 'Content-Type: application/json' -d "$example" \
  "$API_URL/predict"); then
  probability=$(json churn_probability <<<"$answer")
  label=$(json label <<<"$answer")
  ok "API /predict (documented churner): probability $probability, label $label," \
    "model version $(json model_version <<<"$answer")"
  [ "$label" = yes ] || echo "      note: the documented churner was scored '$label'" >&2
else
  fail "API /predict: $(curl -sS --max-time 10 -H 'Content-Type: application/json' \
    -d "$example" "$API_URL/predict" 2>&1 || true)"
fi

# --- UI and MLflow --------------------------------------------------------------------------------
if wait_for "$UI_URL/_stcore/health" 60 >/dev/null; then ok "UI $UI_URL"; else fail "UI $UI_URL"; fi

# inside URL [USER:PASSWORD on stdin]: GET URL from an API task of the stack (internal services);
# the credentials go through stdin, never argv.
task=$("$DOCKER" ps -q --filter "label=com.docker.swarm.service.name=${STACK}_api" | head -n 1)
inside() {
  [ -n "$task" ] || return 1
  "$DOCKER" exec -i "$task" python -c '
import base64, sys, urllib.request
credentials = sys.stdin.read()
headers = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
request = urllib.request.Request(sys.argv[1], headers=headers if credentials else {})
print(urllib.request.urlopen(request, timeout=40).read().decode())' "$1"
}
if [ -z "$task" ]; then
  fail "no running task of ${STACK}_api on this node: MLflow and Elasticsearch not checked"
elif inside "$MLFLOW_URL/health" </dev/null >/dev/null; then ok "MLflow $MLFLOW_URL (internal)"
else fail "MLflow $MLFLOW_URL/health (from ${STACK}_api)"; fi

# --- Elasticsearch and Kibana ---------------------------------------------------------------------
es() { # es PATH: GET as `elastic`, from inside the stack
  printf 'elastic:%s' "$(cat "$SECRETS_DIR/es_password")" | inside "$ES_URL$1"
}
if [ -r "$SECRETS_DIR/es_password" ]; then
  if health=$(es '/_cluster/health?wait_for_status=yellow&timeout=30s'); then
    ok "Elasticsearch (internal): cluster $(json status <<<"$health")"
  else
    fail "Elasticsearch $ES_URL/_cluster/health"
  fi
  count=0
  deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)); do
    count=$(es "/churnops-predictions/_count" 2>/dev/null | json count 2>/dev/null || echo 0)
    [ "${count:-0}" -gt 0 ] 2>/dev/null && break
    sleep 5
  done
  if [ "${count:-0}" -gt 0 ] 2>/dev/null; then
    ok "Elasticsearch: churnops-predictions holds $count prediction events"
  else
    fail "Elasticsearch: no prediction event in churnops-predictions after 60 s"
  fi
else
  fail "Elasticsearch: cannot read $SECRETS_DIR/es_password (set SECRETS_DIR)"
fi

if status=$(wait_for "$KIBANA_URL/api/status" "$TIMEOUT") \
  && grep -q '"level":"available"' <<<"$status"; then
  ok "Kibana $KIBANA_URL: available (dashboards: $KIBANA_URL/app/dashboards)"
else
  fail "Kibana $KIBANA_URL/api/status: ${status:-no answer}"
fi

if ((failures)); then
  echo "== smoke test FAILED: $failures check(s)" >&2
  exit 1
fi
echo "== smoke test passed: UI $UI_URL · API docs $API_URL/docs · Kibana $KIBANA_URL"
