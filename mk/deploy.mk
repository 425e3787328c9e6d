# Containers and Docker Swarm: images, Docker Hub (or any registry), stack deploy, smoke test.
# DOCKERHUB_USER is the images' namespace: a Docker Hub user, or host[:port]/namespace of another
# registry (docker's rule: a first component with a dot or a colon, or localhost, is a registry).
# Settings come from deploy/stack.env (copy deploy/stack.env.example): the environment and the
# make command line win over the file. Secrets are files in SECRETS_DIR (`make secrets`).
# `docker-build`, `docker-push`, `deploy`, `undeploy`, `stack-status`, `smoke` need a Docker engine;
# `stack-config` and `hadolint` run anywhere (the docker CLI validates a stack offline).

DOCKER ?= docker
STACK ?= churnops
STACK_FILE ?= stack.yml
STACK_ENV ?= $(firstword $(wildcard deploy/stack.env) deploy/stack.env.example)
SECRETS_DIR ?= ./secrets
SECRET_NAMES := es_password es_writer_password kibana_password kibana_encryption_key api_key \
  writer_key reader_key smtp_password db_password
GIT_SHA = $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
SOURCE_URL ?= $(shell git config --get remote.origin.url 2>/dev/null || echo unknown)
BUILD_DATE = $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
# The champion's version in the registry MLFLOW_TRACKING_URI points at (embedded store by
# default); `none` when there is no champion yet. It becomes an image label and a `model-vN` tag.
MODEL_VERSION ?= $(shell $(CLI) pipeline model-version 2>/dev/null | tail -n 1 \
  | grep -E '^[0-9]+$$' || echo none)
# The tag `make deploy` deploys: the one `docker-build` just made.
DEPLOY_TAG ?= $(GIT_SHA)
# Extra `docker build` options, e.g. the base images where no image registry is reachable:
# DOCKER_BUILD_ARGS="--build-arg PYTHON_IMAGE=... --build-arg UV_IMAGE=... --network=host"
DOCKER_BUILD_ARGS ?=
# DOCKERHUB_USER of deploy/stack.env.example: fine to build and deploy on one node, not to push
PLACEHOLDER_USER := your-dockerhub-user
# The stack's own images: churnops-api (also mlflow, setup, shipper, exporter, agent), churnops-ui
# and churnops-db (PostgreSQL from Debian, deploy/postgres/).
IMAGE_KINDS := api ui db

# Export KEY=VALUE lines of $(STACK_ENV) that the environment does not already set.
define load_stack_env
	if [ -f "$(STACK_ENV)" ]; then \
	  while IFS= read -r line || [ -n "$$line" ]; do \
	    case "$$line" in [A-Za-z_]*=*) ;; *) continue ;; esac; \
	    key=$${line%%=*}; [ -n "$${!key+x}" ] || export "$$line"; \
	  done < "$(STACK_ENV)"; \
	fi; \
	export SECRETS_DIR="$${SECRETS_DIR:-$(SECRETS_DIR)}"; \
	: "$${DOCKERHUB_USER:?set DOCKERHUB_USER (Docker Hub namespace) in $(STACK_ENV) or the environment}"
endef

.PHONY: hadolint
hadolint: $(DEV_STAMP) ## Lint the Dockerfiles (api, ui, db) with hadolint (ignores justified inline)
	$(RUN)/hadolint Dockerfile.api Dockerfile.ui deploy/postgres/Dockerfile

.PHONY: stack-config
stack-config: ## Validate stack.yml offline with the docker CLI (variables from STACK_ENV)
	@$(load_stack_env); export IMAGE_TAG="$${IMAGE_TAG:-$(GIT_SHA)}"; \
	  $(DOCKER) stack config -c $(STACK_FILE) >/dev/null \
	  && echo "$(STACK_FILE): valid (env: $(STACK_ENV), images: $$DOCKERHUB_USER/churnops-*:$$IMAGE_TAG)"

.PHONY: docker-build
docker-build: docker-check ## Build the API, UI and db images, tagged <git sha>, latest and model-v<champion version>
	@$(load_stack_env); \
	  model="$(MODEL_VERSION)"; \
	  for kind in $(IMAGE_KINDS); do \
	    image="$$DOCKERHUB_USER/churnops-$$kind"; \
	    tags=(-t "$$image:$(GIT_SHA)" -t "$$image:latest"); \
	    [ "$$model" = none ] || tags+=(-t "$$image:model-v$$model"); \
	    if [ $$kind = db ]; then context=(-f deploy/postgres/Dockerfile deploy/postgres); \
	    else context=(-f Dockerfile.$$kind .); fi; \
	    echo "== building $$image ($(GIT_SHA), champion: $$model)"; \
	    DOCKER_BUILDKIT=1 $(DOCKER) build "$${tags[@]}" \
	      --build-arg SOURCE_URL="$(SOURCE_URL)" --build-arg VCS_REF="$(GIT_SHA)" \
	      --build-arg BUILD_DATE="$(BUILD_DATE)" --build-arg MODEL_VERSION="$$model" \
	      $(DOCKER_BUILD_ARGS) "$${context[@]}" || exit 1; \
	  done

# The token is checked before docker-push's recipe is expanded: its champion lookup (MODEL_VERSION)
# starts the churnops CLI, seconds a missing token should not cost.
# What the login needs, checked before anything slow (the champion lookup that names a tag): a
# token, and a namespace that is not the example file's placeholder.
.PHONY: docker-token
docker-token:
	@$(load_stack_env); \
	  : "$${DOCKERHUB_TOKEN:?set DOCKERHUB_TOKEN (a Docker Hub access token) in the environment}"; \
	  if [ "$$DOCKERHUB_USER" = "$(PLACEHOLDER_USER)" ]; then \
	    echo "DOCKERHUB_USER is the placeholder of deploy/stack.env.example ($(PLACEHOLDER_USER)):" \
	      "set your Docker Hub user, or host[:port]/namespace, in deploy/stack.env or the environment" >&2; \
	    exit 1; \
	  fi

.PHONY: docker-push
docker-push: docker-check docker-token ## Log in to the registry of DOCKERHUB_USER (token in env DOCKERHUB_TOKEN) and push all tags (the images side by side)
	@$(load_stack_env); \
	  namespace=$$DOCKERHUB_USER; registry=; user=$$namespace; first=$${namespace%%/*}; \
	  if [ "$$first" != "$$namespace" ] && [[ $$first == *[.:]* || $$first == localhost ]]; then \
	    registry=$$first; user=$${namespace#*/}; \
	  fi; \
	  echo "== docker login $${registry:-Docker Hub} as $$user"; \
	  printf '%s' "$$DOCKERHUB_TOKEN" \
	    | $(DOCKER) login $$registry --username "$$user" --password-stdin >/dev/null; \
	  model="$(MODEL_VERSION)"; pids=(); \
	  for kind in $(IMAGE_KINDS); do \
	    image="$$namespace/churnops-$$kind"; \
	    ( for tag in $(GIT_SHA) latest $$([ "$$model" = none ] || echo "model-v$$model"); do \
	        $(DOCKER) push --quiet "$$image:$$tag" || exit 1; \
	      done ) & pids+=($$!); \
	  done; \
	  failed=0; for pid in "$${pids[@]}"; do wait $$pid || failed=1; done; exit $$failed

.PHONY: secrets
secrets: ## Create missing secret files in SECRETS_DIR with random values (SMTP_PASSWORD from env)
	@umask 077; mkdir -p "$(SECRETS_DIR)"; \
	  for name in $(SECRET_NAMES); do \
	    file="$(SECRETS_DIR)/$$name"; \
	    [ -s "$$file" ] && continue; \
	    if [ "$$name" = smtp_password ]; then value="$${SMTP_PASSWORD:-unused}"; \
	    else value=$$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))'); fi; \
	    printf '%s' "$$value" > "$$file"; echo "created $$file"; \
	  done

.PHONY: swarm-init
swarm-init: docker-check ## Make this engine a Swarm manager if it is not one, and label it as the storage node
	@state=$$($(DOCKER) info --format '{{.Swarm.LocalNodeState}}'); \
	  if [ "$$state" != active ]; then \
	    echo "== docker swarm init"; $(DOCKER) swarm init $(SWARM_INIT_ARGS); fi
	@if [ -z "$$($(DOCKER) node ls --filter node.label=churnops.storage=true -q)" ]; then \
	  echo "== labelling this node churnops.storage=true (volumes of api, mlflow, elasticsearch)"; \
	  $(DOCKER) node update --label-add churnops.storage=true \
	    "$$($(DOCKER) info --format '{{.Swarm.NodeID}}')"; fi

.PHONY: deploy
deploy: docker-check swarm-init secrets docker-build ## Init Swarm if needed, build the images, deploy the stack (STACK=churnops)
	@$(load_stack_env); export IMAGE_TAG="$(DEPLOY_TAG)"; \
	  echo "== docker stack deploy $(STACK) ($$DOCKERHUB_USER/churnops-*:$$IMAGE_TAG)"; \
	  $(DOCKER) stack deploy --with-registry-auth --detach=true -c $(STACK_FILE) $(STACK); \
	  echo "== deployed; follow with 'make stack-status', then 'make smoke'" 

.PHONY: undeploy
undeploy: ## Remove the stack (named volumes and Swarm secrets of other stacks are kept)
	$(DOCKER) stack rm $(STACK)

.PHONY: stack-status
stack-status: ## Services, replicas and the tasks that are not running well
	$(DOCKER) stack services $(STACK)
	$(DOCKER) stack ps $(STACK) --no-trunc \
	  --format 'table {{.Name}}\t{{.Node}}\t{{.CurrentState}}\t{{.Error}}'

.PHONY: stack-scale
stack-scale: ## Scale the API (REPLICAS=n; same node while the predictions DB is SQLite)
	@test -n "$(REPLICAS)" || { echo "usage: make stack-scale REPLICAS=<n>" >&2; exit 2; }
	$(DOCKER) service scale $(STACK)_api=$(REPLICAS)

.PHONY: stack-rollback
stack-rollback: ## Roll the API and UI back to their previous image/spec
	$(DOCKER) service rollback $(STACK)_api
	$(DOCKER) service rollback $(STACK)_ui

.PHONY: smoke
smoke: $(STAMP) ## After a deploy: /ready, /predict with the documented churner, UI, MLflow, Elasticsearch, Kibana
	PYTHON=$(PY) SECRETS_DIR=$(SECRETS_DIR) STACK=$(STACK) DOCKER=$(DOCKER) scripts/smoke.sh

STACK_API_URL ?= http://localhost:8000
.PHONY: stack-train
stack-train: ## Train a champion inside the stack: POST /retrain (API key from SECRETS_DIR), wait for the gate
	@down="stack-train: the API at $(STACK_API_URL) did not answer; is the stack deployed and healthy? (make stack-status)"; \
	  started=$$(printf 'X-API-Key: %s\n' "$$(cat "$(SECRETS_DIR)/api_key")" \
	    | curl -fsS -X POST -H @- "$(STACK_API_URL)/retrain") || { echo "$$down" >&2; exit 1; }; \
	  job=$$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["job_id"])' "$$started"); \
	  echo "== retrain job $$job"; \
	  while :; do \
	    answer=$$(printf 'X-API-Key: %s\n' "$$(cat "$(SECRETS_DIR)/api_key")" \
	      | curl -fsS -H @- "$(STACK_API_URL)/retrain/$$job") || { echo "$$down" >&2; exit 1; }; \
	    status=$$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["status"])' "$$answer"); \
	    echo "   $$status"; \
	    case "$$status" in succeeded) echo "$$answer"; break ;; failed) echo "$$answer" >&2; exit 1 ;; esac; \
	    sleep 5; \
	  done

.PHONY: stack-test
stack-test: $(DEV_STAMP) ## Live Swarm test: engine, local registry, build, deploy, smoke, faults (root; times in docs/deploy.md)
	@mkdir -p var
	@echo "== make stack-test: 18-40 min (docs/deploy.md); each phase prints a [stack figure] line as it ends"
	trap 'bash scripts/stack.sh down' EXIT; \
	  $(RUN)/pytest -m stack tests/stack -p no:cacheprovider -v -s $(PYTEST_ARGS)
